"""A trained reward model as an RL reward: ``rewards: {reward_model: w}`` with ``reward_model=<folder>`` scores each
completion with the folder's scorer, exactly as ``load_reward_model(folder).completions`` does, and the two settings
only go together."""
from __future__ import annotations

import json

import pytest

from mmalign.config import load_config
from mmalign.errors import ConfigError
from mmalign.models.load import ModelConfig
from mmalign.reward.model import RewardModel
from mmalign.reward.score import load_reward_model
from mmalign.rl.config import RLConfig, shipped_base
from mmalign.rl.trainer import reward_functions, run_rl
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example


@pytest.fixture(scope="module")
def rm_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("rm")
    model, processor = RewardModel.build(ModelConfig(path=shipped_base()), seed=3)
    model.save_pretrained(folder, processor)
    return folder


def test_the_reward_model_reward_is_the_folders_score(rm_folder):
    cfg = load_config(RLConfig, None, [f"reward_model={rm_folder}", "rewards={reward_model: 1.0, count_accuracy: 0.5}"])
    rewards = reward_functions(cfg)
    examples = [make_example(WorldConfig(), "count", "val", i) for i in range(4)]
    completions = ["1", "2", "3", "many"]
    expected = load_reward_model(rm_folder).completions(completions, examples)
    got = rewards["reward_model"](completions, examples)
    assert got == pytest.approx(expected, abs=1e-6)
    assert len(set(round(v, 6) for v in got)) == 4      # a real score per completion, not a constant
    assert rewards["count_accuracy"](completions, examples) == [float(c == e["answer"]) for c, e in
                                                               zip(completions, examples)]


def test_an_rl_run_logs_the_reward_models_score(tmp_path, rm_folder):
    cfg = load_config(RLConfig, None, [
        f"train.output_dir={tmp_path}", f"reward_model={rm_folder}", "rewards={reward_model: 1.0}",
        "rollout.prompts=2", "rollout.group_size=4", "rollout.max_new_tokens=4", "train.max_steps=1",
        "train.batch_size=8", "train.threads=1", "eval.n_per_task=0"])
    run_rl(cfg)
    rec = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[-1])
    assert rec["reward"] == pytest.approx(rec["reward/reward_model"]) and rec["reward"] != 0.0


@pytest.mark.parametrize("overrides, message", [
    (["rewards={reward_model: 1.0}"], "go together"),
    (["reward_model=/some/folder"], "go together"),
    (["rewards={reward_model: 1.0}", "reward_model=/x", "reward_settings={reward_model: {a: 1}}"], "no settings"),
])
def test_reward_model_settings_are_checked(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RLConfig, None, overrides)

"""Online DPO: the mixing ratio of online and offline pairs in every batch and over a run, online pairs sampled
from the policy as it is at that step (the same pairs again for the same weights and batch, others once the
weights move) and labelled by the scorer, and the settings it refuses."""
from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import pytest
import torch

from mmalign.config import load_config
from mmalign.construct.scorers import make_scorer
from mmalign.construct.scorers.choice import ScorerConfig, build_scorer
from mmalign.errors import ConfigError
from mmalign.models.load import ModelConfig, load_model
from mmalign.train.online import OnlineConfig, OnlinePairs, online_samples, online_share
from mmalign.train.preference import SHIPPED_BASE, PreferenceConfig, run_preference
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example, prompt_example

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("fraction", [0.0, 0.25, 0.3, 1 / 3, 1.0])
def test_online_share_is_the_fraction_and_the_offline_stream_is_contiguous(fraction):
    bs, total_online, offline = 8, 0, 0
    for k in range(50):
        n, first = online_share(k, bs, fraction)
        assert first == offline                                  # offline pairs read on where the last batch stopped
        assert n in (math.floor(bs * fraction), math.ceil(bs * fraction))
        total_online, offline = total_online + n, offline + bs - n
    assert total_online == math.floor(50 * bs * fraction + 1e-9)


@pytest.fixture(scope="module")
def base():
    return load_model(ModelConfig(path=SHIPPED_BASE))


def online(model, processor, **kw) -> OnlinePairs:
    cfg = OnlineConfig(fraction=0.5, **kw)
    cfg.sampling.n, cfg.sampling.batch_size = 3, 32
    return OnlinePairs(cfg, WorldConfig(), model, processor, seed=0)


def test_online_pairs_follow_the_current_weights(base):
    model, processor = copy.deepcopy(base[0]), base[1]
    stream = online(model, processor)
    first = stream.pairs(5, 4)
    again = stream.pairs(5, 4)
    assert [(r.id, r.chosen, r.rejected) for r in first] == [(r.id, r.chosen, r.rejected) for r in again]
    assert len(first) == 4 and all(r.id.startswith("online-0000005-") and r.meta["online"]["micro_batch"] == 5
                                   for r in first)
    with torch.no_grad():                                         # the policy moves: its samples move with it
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    moved = stream.pairs(5, 4)
    assert [(r.chosen, r.rejected) for r in moved] != [(r.chosen, r.rejected) for r in first]


def test_online_pairs_are_labelled_by_the_scorer(base):
    pairs = online(*base).pairs(3, 6)
    oracle = make_scorer("oracle")
    for r in pairs:
        index = int(r.id.split("-")[3])           # online-<k>-train-<scene>-<task>-<w>-<l>
        example = prompt_example(WorldConfig(), "train", OnlineConfig().tasks, index)
        chosen, rejected = oracle(example, [r.chosen, r.rejected]).values
        assert chosen > rejected and r.scores == {"chosen": chosen, "rejected": rejected}


def run_online(tmp_path, fraction: float, *extra: str) -> list[dict]:
    cfg = load_config(PreferenceConfig, CONFIGS / "dpo.yaml", [
        f"train.output_dir={tmp_path}", f"cache_dir={tmp_path}/cache", "eval_scenes=0", "train.threads=1",
        "train.max_steps=3", "train.batch_size=8", "train.log_every=1", "train.eval_every=0", "data.lab.n=32",
        "data.val_size=8", f"online.fraction={fraction}", "online.sampling.n=3", *extra])
    run_preference(cfg)
    return [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]


def test_the_mixing_ratio_is_honoured_in_training(tmp_path):
    logs = run_online(tmp_path, 0.25)
    assert [m["online/fraction"] for m in logs] == [0.25, 0.25, 0.25]        # 2 of 8 pairs per batch
    assert all(m["online/chosen_score"] > m["online/rejected_score"] for m in logs)
    assert logs[0]["delta/chosen"] == pytest.approx(0.0, abs=1e-5)             # the live reference is the start
    cost = online_samples(tmp_path / "online.jsonl")                           # what the labeller was asked
    assert cost["pairs"] == 6 and cost["prompts"] >= 6 * 3 and 0 < cost["scored_samples"] <= cost["prompts"] * 3


def test_offline_training_logs_no_online_share(tmp_path):
    assert all("online/fraction" not in m for m in run_online(tmp_path, 0.0))


def test_online_settings_checked():
    with pytest.raises(ConfigError, match="online.fraction"):
        load_config(PreferenceConfig, None, ["online.fraction=1.5"])
    with pytest.raises(ConfigError, match="KL view"):
        load_config(PreferenceConfig, CONFIGS / "kto.yaml", ["online.fraction=0.5"])
    with pytest.raises(ConfigError, match="reward_model"):
        load_config(PreferenceConfig, None, ["online.fraction=0.5", "online.scorer.name=reward_model"])
    with pytest.raises(ConfigError, match="hallucination_weight"):
        load_config(PreferenceConfig, None, ["online.scorer.name=lab_judge", "online.scorer.hallucination_weight=2"])
    caption = make_example(WorldConfig(), "caption", "val", 0)
    absent = next(c for c in WorldConfig().categories if c not in caption["meta"]["objects"])
    assert build_scorer(ScorerConfig(hallucination_weight=3.0))(caption, [f"a {absent} ."]).values == [-3.0]
    assert build_scorer(ScorerConfig("lab_judge"))(make_example(WorldConfig(), "exist", "val", 0), ["yes", "no"]).values \
        in ([10.0, 1.0], [1.0, 10.0])


def test_prompts_ask_existence_with_every_pope_negative():
    exist = [prompt_example(WorldConfig(), "train", {"caption": 0.5, "exist": 0.5}, i) for i in range(40)]
    exist = [e for e in exist if e["task"] == "exist"]
    assert {e["meta"]["pope_split"] for e in exist} == {"random", "popular", "adversarial"}
    assert all(e["meta"]["pope_split"] == ("random", "popular", "adversarial")[int(e["id"].split("-")[1]) % 3]
               for e in exist)

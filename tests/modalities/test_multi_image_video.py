"""Several images per prompt and video as frames, through the preference trainer (packed and concatenated) for
LLaVA-style interleaved images and Qwen2-VL, and through SFT, the reward model and RL on the lab. Qwen2-VL's own
video grids need its video processor, which imports torchvision (not importable beside the CPU torch build), so
its videos train as frames here too."""
from __future__ import annotations

import pytest
import torch

from mmalign.data.collate import collate_preference
from mmalign.data.preference import PreferenceRecord, write_preference_file
from mmalign.models import FAMILIES
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.logprobs import preference_logps
from mmalign.train.loop import TrainConfig
from mmalign.train.preference import LossConfig, PreferenceConfig, PreferenceDataConfig, run_preference
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

WORLD = WorldConfig()
WRONG = {"first": "second", "second": "first", "yes": "no", "no": "yes", "left": "right", "right": "left",
         "up": "down", "down": "up"}


def records(n: int = 4) -> list[PreferenceRecord]:
    """Lab multi-image (two scenes) and video (frames) questions, the wrong answer rejected."""
    out = []
    for task in ("multi_image", "video"):
        for i in range(n):
            ex = make_example(WORLD, task, "train", i)
            out.append(PreferenceRecord(id=ex["id"], prompt=ex["prompt"], images=ex["images"], chosen=ex["answer"],
                                        rejected=WRONG[ex["answer"]], task=task))
    return out


def margins(model, processor, recs) -> torch.Tensor:
    with torch.no_grad():
        out = preference_logps(model.eval(), collate_preference(processor, recs))
    return out.chosen.sum - out.rejected.sum


@pytest.mark.parametrize("family", ["llava", "qwen2_vl"])
@pytest.mark.parametrize("packed", [True, False])
def test_multi_image_and_video_records_train(tmp_path, family, packed):
    model, processor = FAMILIES[family]()
    model.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    recs = records()
    assert {len(r.images) for r in recs} == {2, WORLD.video_frames}
    cfg = PreferenceConfig(
        model=ModelConfig(path=str(tmp_path / "base")), cache_dir=str(tmp_path / "cache"), eval_scenes=0,
        loss=LossConfig(name="dpo", nll_weight=0.0),
        data=PreferenceDataConfig(source=str(write_preference_file(recs, tmp_path / "p.jsonl")), val_size=2,
                                  packed=packed),
        train=TrainConfig(output_dir=str(tmp_path / "out"), max_steps=4, batch_size=3, lr=2e-3, warmup_steps=0,
                          log_every=1, eval_every=0, threads=1))
    run_preference(cfg)
    trained, _ = load_model(ModelConfig(path=str(tmp_path / "out" / "model")))
    before, after = margins(model, processor, recs[:6]), margins(trained, processor, recs[:6])
    assert after.mean() > before.mean() + 0.5, (before, after)


def test_sft_reward_and_rl_trainers_take_several_images(tmp_path):
    """The other trainers on the lab's multi-image and video tasks (2 images, 4 frames) from the shipped base: each
    runs its steps and saves a model that loads."""
    from mmalign.config import load_config
    from mmalign.reward.train import RewardConfig, train_reward_model
    from mmalign.rl.config import RLConfig
    from mmalign.rl.trainer import run_rl
    from mmalign.train.preference import SHIPPED_BASE
    from mmalign.train.sft import SFTConfig, run_sft

    common = ["train.max_steps=2", "train.batch_size=4", "train.eval_every=0", "train.threads=1"]
    run_sft(load_config(SFTConfig, None, [*common, f"model.path={SHIPPED_BASE}",
                                          "data.mix={multi_image: 1, video: 1}", f"train.output_dir={tmp_path / 'sft'}"]))
    pairs = write_preference_file(records(6), tmp_path / "p.jsonl")
    train_reward_model(load_config(RewardConfig, None, [*common, f"data.source={pairs}", "data.val_size=4",
                                                        "data.test_size=0", f"train.output_dir={tmp_path / 'rm'}"]))
    run_rl(load_config(RLConfig, None, [*common, "tasks={multi_image: 1, video: 1}", "rewards={lab_accuracy: 1}",
                                        "rollout.prompts=4", "rollout.group_size=2", "rollout.max_new_tokens=4",
                                        "eval.n_per_task=0", f"train.output_dir={tmp_path / 'rl'}"]))
    for name in ("sft", "rm", "rl"):
        load_model(ModelConfig(path=str(tmp_path / name / "model")))

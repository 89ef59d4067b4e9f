"""``train_reward_model`` on a tiny lab LLaVA: it learns, logs, resumes exactly, wires the margin, and rejects bad
data with the project's error."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmalign.config import load_config
from mmalign.data.collate import view_examples
from mmalign.errors import MMAlignError
from mmalign.models.load import ModelConfig
from mmalign.reward.model import RewardModel
from mmalign.reward.score import RewardScorer, load_reward_model
from mmalign.reward.train import (
    RewardConfig,
    RewardDataConfig,
    RewardLossConfig,
    RewardStep,
    train_reward_model,
)
from mmalign.train.loop import TrainConfig
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def cfg(folder, out, *, source: str = "lab", n: int = 16, loss: RewardLossConfig | None = None,
        **train) -> RewardConfig:
    t = {"output_dir": str(out), "max_steps": 4, "batch_size": 8, "lr": 3e-3, "warmup_steps": 0, "log_every": 1,
         "eval_every": 2, "threads": 1}
    return RewardConfig(model=ModelConfig(path=str(folder)), loss=loss or RewardLossConfig(),
                        data=RewardDataConfig(source=source, lab=LabPairsConfig(n=n), val_size=8, test_size=8),
                        train=TrainConfig(**(t | train)))


def read_metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_training_raises_pairwise_accuracy(lab_folder, tmp_path):
    pairs = lab_pairs(WorldConfig(), LabPairsConfig(n=16))            # the training pairs (n=16 from the config)
    untrained = RewardScorer(*RewardModel.build(ModelConfig(path=str(lab_folder))), batch_size=16)
    before = untrained.pairwise_accuracy(pairs)["accuracy"]
    result = train_reward_model(cfg(lab_folder, tmp_path, max_steps=30, eval_every=15, log_every=5))
    after = load_reward_model(tmp_path / "model", device="cpu").pairwise_accuracy(pairs)
    # from chance to >= 0.75: a few pairs differ only in the image (the same two captions, or yes/no, preferred
    # either way by what is drawn), which a random-weight vision tower cannot tell apart in 30 steps
    assert before <= 0.6 and after["accuracy"] >= 0.75, (before, after)
    assert after["margin"] > 0.5

    logs = read_metrics(tmp_path)
    train_logs = [r for r in logs if "loss" in r]
    for key in ("loss", "accuracy", "reward/chosen", "reward/rejected", "margin", "grad_norm", "lr"):
        assert key in train_logs[0], key
    assert train_logs[-1]["loss"] < train_logs[0]["loss"]
    assert [r["step"] for r in logs if "val/accuracy" in r] == [15, 30]
    assert result["test"]["n"] == 8 and 0 <= result["test"]["accuracy"] <= 1
    assert json.loads((tmp_path / "test_accuracy.json").read_text()) == result["test"]


def test_resume_continues_exactly(lab_folder, tmp_path):
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    train_reward_model(cfg(lab_folder, whole, save_every=2))
    shutil.copytree(whole / "checkpoints" / "step-0000002", resumed / "checkpoints" / "step-0000002")
    train_reward_model(cfg(lab_folder, resumed, resume="latest"))
    for name in ("reward_head.safetensors", "model.safetensors"):
        a, b = load_file(whole / "model" / name), load_file(resumed / "model" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    logs = read_metrics(resumed)
    assert [r["step"] for r in logs if "loss" in r] == [3, 4]


def test_margin_and_centering_enter_the_loss(lab_folder, tmp_path):
    c = cfg(lab_folder, tmp_path, loss=RewardLossConfig(margin_scale=2.0, center_coef=0.5))
    model, processor = RewardModel.build(c.model, seed=1)
    records = lab_pairs(WorldConfig(), LabPairsConfig(n=4))           # every lab pair has reward_margin = 1
    with torch.no_grad():
        loss, metrics = RewardStep(c, processor)(model.eval(), records)     # one forward over 8 rows
        scorer = RewardScorer(model, processor)                             # each view scored on its own
        r_w = torch.tensor(scorer.batch(view_examples(records, "chosen")))
        r_l = torch.tensor(scorer.batch(view_examples(records, "rejected")))
    expected = (-torch.nn.functional.logsigmoid(r_w - r_l - 2.0) + 0.5 * (r_w + r_l) ** 2).mean()
    assert float(loss) == pytest.approx(float(expected), abs=1e-5)
    assert metrics["margin"] == pytest.approx(float((r_w - r_l).mean()), abs=1e-5)
    assert metrics["reward/chosen"] == pytest.approx(float(r_w.mean()), abs=1e-5)


def test_margin_needs_margins_on_every_record(lab_folder, tmp_path):
    records = lab_pairs(WorldConfig(), LabPairsConfig(n=12))
    rows = [{"id": r.id, "prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in records]
    path = tmp_path / "pairs.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    with pytest.raises(MMAlignError, match=r"needs a reward_margin on every record; 12 have none"):
        train_reward_model(cfg(lab_folder, tmp_path / "out", source=str(path),
                               loss=RewardLossConfig(margin_scale=1.0)))
    assert not (tmp_path / "out" / "metrics.jsonl").exists()          # said before training


def test_bad_data_file_is_a_clear_error(lab_folder, tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps({"prompt": "is there a star ?", "chosen": "yes"}) + "\n"
                    + "{not json\n"
                    + json.dumps({"prompt": "p", "chosen": "yes", "rejected": "no", "colour": "red"}) + "\n")
    with pytest.raises(MMAlignError) as err:
        train_reward_model(cfg(lab_folder, tmp_path / "out", source=str(path)))
    message = str(err.value)
    assert f"{path}:1: field 'rejected': missing" in message
    assert f"{path}:2: invalid JSON" in message
    assert f"{path}:3: field 'colour': unknown" in message
    with pytest.raises(MMAlignError, match="data file not found"):
        train_reward_model(cfg(lab_folder, tmp_path / "out", source=str(tmp_path / "missing.jsonl")))


def test_shipped_config_loads():
    c = load_config(RewardConfig, CONFIGS / "reward" / "lab.yaml")
    assert c.data.source == "lab" and c.train.output_dir == "runs/reward"
    with pytest.raises(MMAlignError, match="must not be negative"):
        load_config(RewardConfig, None, ["loss.center_coef=-1"])

"""SFT on a tiny lab model: the loss falls, and a resumed run ends bit-for-bit where an uninterrupted one does."""
import json

import pytest
import torch
from safetensors.torch import load_file

from mmalign.train.loop import TrainConfig
from mmalign.train.sft import SFTConfig, SFTDataConfig, run_sft
from mmalign.world.model import LabModelConfig

TINY = LabModelConfig(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                      text_hidden=32, text_layers=1, text_heads=2, text_mlp=64)


def cfg(out, **train) -> SFTConfig:
    t = dict(output_dir=str(out), max_steps=10, batch_size=4, lr=3e-3, warmup_steps=2, log_every=1, threads=1)
    return SFTConfig(lab_model=TINY, data=SFTDataConfig(mix={"caption": 0.5, "exist": 0.5}),
                     train=TrainConfig(**(t | train)))


def losses(out):
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_sft_loss_falls(tmp_path):
    run_sft(cfg(tmp_path, max_steps=40, batch_size=8, log_every=10))
    first, *_, last = losses(tmp_path)
    assert last < 0.7 * first


def test_resume_continues_from_the_saved_step_exactly(tmp_path):
    full, part = tmp_path / "full", tmp_path / "part"
    run_sft(cfg(full, save_every=5))
    run_sft(cfg(part, resume=str(full / "checkpoints" / "step-0000005")))
    steps = [json.loads(line)["step"] for line in (part / "metrics.jsonl").read_text().splitlines()]
    assert steps == list(range(6, 11))                      # it picked up at step 6
    assert losses(part) == pytest.approx(losses(full)[5:], rel=1e-5)
    a = load_file(full / "model" / "model.safetensors")
    b = load_file(part / "model" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_resume_latest_finds_the_newest_checkpoint(tmp_path):
    run_sft(cfg(tmp_path, max_steps=4, save_every=2))
    run_sft(cfg(tmp_path, max_steps=6, resume="latest"))
    steps = [json.loads(line)["step"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4, 5, 6]

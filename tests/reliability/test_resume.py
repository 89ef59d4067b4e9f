"""Exact resume: checkpoints are written under a temporary name and renamed, half-written or truncated ones are
never picked up, a resumed run restores model, optimiser, scheduler, RNG states, registered state and data
position, and a training process killed with SIGKILL mid-run resumes to the weights of an uninterrupted run."""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from accelerate import Accelerator
from safetensors.torch import load_file

from mmalign.config import load_config
from mmalign.errors import MMAlignError
from mmalign.train.checkpoint import latest_checkpoint
from mmalign.train.sft import SFTConfig, run_sft

from .conftest import TINY_OVERRIDES, train_linear

CHILD = Path(__file__).with_name("child.py")


class NoisyCounted:
    """A loss that draws from torch's global RNG and shifts with its own call count, kept in ``state_dict``: a
    resume that lost either would change the weights."""

    def __init__(self, die_at: int = 0):
        self.calls, self.die_at = 0, die_at

    def __call__(self, model, batch):
        self.calls += 1
        if self.calls == self.die_at:
            raise KeyboardInterrupt                                       # the run stops here, mid-step
        x, y = batch
        noise = 0.3 * torch.randn(y.shape)
        return ((model(x) + noise + 0.1 * self.calls - y) ** 2).mean(), {}

    def state_dict(self) -> dict:
        return {"calls": self.calls}

    def load_state_dict(self, state: dict) -> None:
        self.calls = state["calls"]


def weights(model: torch.nn.Module) -> dict:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def steps(out: Path) -> list[int]:
    return [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_resume_restores_rng_and_registered_state(tmp_path):
    _, full = train_linear(tmp_path / "full", NoisyCounted())
    with pytest.raises(KeyboardInterrupt):
        train_linear(tmp_path / "part", NoisyCounted(die_at=6))           # inside step 6, after checkpoint 4
    _, resumed = train_linear(tmp_path / "part", NoisyCounted(), resume="latest")
    assert all(torch.equal(a, b) for a, b in zip(weights(full).values(), weights(resumed).values()))
    assert steps(tmp_path / "part") == [1, 2, 3, 4, 5, 6]


def test_half_written_and_truncated_checkpoints_are_never_picked_up(tmp_path):
    with pytest.raises(KeyboardInterrupt):
        train_linear(tmp_path, NoisyCounted(die_at=5))
    ckpts = tmp_path / "checkpoints"
    good = ckpts / "step-0000004"
    shutil.copytree(good, ckpts / "step-0000006.tmp")                   # killed before the rename
    shutil.copytree(good, ckpts / "step-0000005")                       # a file cut short afterwards
    model_file = ckpts / "step-0000005" / "model.safetensors"
    model_file.write_bytes(model_file.read_bytes()[:40])
    shutil.copytree(good, ckpts / "step-0000007")                       # no trainer_state.json
    (ckpts / "step-0000007" / "trainer_state.json").unlink()
    assert latest_checkpoint(tmp_path) == good
    with pytest.raises(MMAlignError, match=r"step-0000005 is incomplete: model.safetensors is missing or not the"):
        train_linear(tmp_path, NoisyCounted(), resume=str(ckpts / "step-0000005"))
    with pytest.raises(MMAlignError, match=r"step-0000007 has no trainer_state.json"):
        train_linear(tmp_path, NoisyCounted(), resume=str(ckpts / "step-0000007"))
    train_linear(tmp_path, NoisyCounted(), resume="latest")
    assert steps(tmp_path) == [1, 2, 3, 4, 5, 6]


def test_a_save_cut_short_leaves_only_a_temporary_folder(tmp_path, monkeypatch):
    real = Accelerator.save_state

    def dies_at_step_4(self, output_dir, **kw):
        real(self, output_dir, **kw)
        if output_dir.endswith("step-0000004.tmp"):
            raise KeyboardInterrupt                                       # after writing, before the rename
    monkeypatch.setattr(Accelerator, "save_state", dies_at_step_4)
    with pytest.raises(KeyboardInterrupt):
        train_linear(tmp_path, NoisyCounted())
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["step-0000002", "step-0000004.tmp"]
    assert latest_checkpoint(tmp_path).name == "step-0000002"
    monkeypatch.setattr(Accelerator, "save_state", real)
    _, resumed = train_linear(tmp_path, NoisyCounted(), resume="latest")
    _, full = train_linear(tmp_path / "full", NoisyCounted())
    assert all(torch.equal(a, b) for a, b in zip(weights(full).values(), weights(resumed).values()))
    assert "step-0000004.tmp" not in {p.name for p in (tmp_path / "checkpoints").iterdir()}


def sft_args(out: Path) -> list[str]:
    return ["sft", f"train.output_dir={out}", "train.max_steps=6", "train.save_every=2", "train.batch_size=2",
            "train.log_every=1", "train.warmup_steps=1", "train.lr=3e-3", "data.mix={caption: 0.5, exist: 0.5}",
            *TINY_OVERRIDES]


def run_cli_args(args: list[str], *more: str) -> dict:
    return run_sft(load_config(SFTConfig, None, args[1:] + list(more)))


def test_sigkill_mid_run_then_resume_gives_the_uninterrupted_weights(tmp_path):
    out, marker = tmp_path / "killed", tmp_path / "stalled"
    env = os.environ | {"OMP_NUM_THREADS": "1", "STALL_AT": "4", "STALL_MARKER": str(marker)}
    child = subprocess.Popen([sys.executable, str(CHILD), json.dumps([sft_args(out)])], env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    deadline = time.time() + 240
    while not marker.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert marker.exists(), child.stderr.read().decode()[-3000:] if child.poll() is not None else "timed out"
    os.kill(child.pid, signal.SIGKILL)                                    # inside step 4, after checkpoint 2
    assert child.wait() == -signal.SIGKILL
    assert latest_checkpoint(out).name == "step-0000002" and steps(out) == [1, 2, 3]

    run_cli_args(sft_args(out), "train.resume=latest")
    run_cli_args(sft_args(tmp_path / "full"))
    resumed = load_file(out / "model" / "model.safetensors")
    full = load_file(tmp_path / "full" / "model" / "model.safetensors")
    assert resumed.keys() == full.keys()
    assert max(float((resumed[k] - full[k]).abs().max()) for k in full) <= 1e-6
    assert steps(out) == [1, 2, 3, 4, 5, 6]
    logged = [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    expected = [json.loads(line)["loss"] for line in (tmp_path / "full" / "metrics.jsonl").read_text().splitlines()]
    assert logged == pytest.approx(expected, rel=1e-6)

"""The loop's numerical guard on a tiny model whose loss turns NaN (or whose gradient does) at a chosen step: the
run stops naming the step and the last good checkpoint, writes nothing of the bad state, and with
``skip_nonfinite`` skips isolated bad steps (no update) and counts them."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from mmalign.train.checkpoint import latest_checkpoint
from mmalign.train.guards import NonFiniteError

from .conftest import train_linear


class Poisoned:
    """A regression loss that is NaN (``kind="loss"``) or has a NaN gradient with a finite value (``"grad"``) at
    the listed micro-batches (counted from 1)."""

    def __init__(self, bad: set[int], kind: str = "loss"):
        self.bad, self.kind, self.calls = bad, kind, 0

    def __call__(self, model, batch):
        self.calls += 1
        x, y = batch
        loss = ((model(x) - y) ** 2).mean()
        if self.calls in self.bad and self.kind == "loss":
            loss = loss * float("nan")
        elif self.calls in self.bad:
            loss = loss + torch.sqrt(model.weight.sum() * 0.0)   # value 0, gradient 0 * inf = NaN
        return loss, {}


def metrics(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize("kind", ["loss", "grad"])
def test_a_nonfinite_step_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path, kind):
    with pytest.raises(NonFiniteError) as e:
        train_linear(tmp_path, Poisoned({5}, kind))
    message = str(e.value)
    assert message.startswith("step 5: ")
    assert ("loss is not finite" if kind == "loss" else "gradient norm is nan") in message
    assert f"last good checkpoint is {tmp_path / 'checkpoints' / 'step-0000004'}" in message
    assert "train.resume=latest" in message
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step-0000002", "step-0000004"]
    assert not (tmp_path / "model").exists()                            # no final model of the bad state
    assert [m["step"] for m in metrics(tmp_path)] == [1, 2, 3, 4]


def test_a_nonfinite_first_step_says_nothing_was_saved(tmp_path):
    with pytest.raises(NonFiniteError, match="step 1: .* no checkpoint was written before it"):
        train_linear(tmp_path, Poisoned({1}))


def test_skip_nonfinite_skips_isolated_bad_steps_and_counts_them(tmp_path):
    out, model = train_linear(tmp_path, Poisoned({3, 5}), skip_nonfinite=2, save_every=1)
    assert out["step"] == 6 and out["nonfinite_skipped"] == 2
    records = metrics(tmp_path)
    assert [r["nonfinite_skipped"] for r in records] == [0, 0, 1, 1, 2, 2]
    assert "loss" not in records[2] and all(torch.isfinite(torch.tensor(r["loss"])) for r in records if "loss" in r)
    ckpt = tmp_path / "checkpoints"
    before, after = (load_file(ckpt / f"step-000000{s}" / "model.safetensors") for s in (2, 3))
    assert all(torch.equal(before[k], after[k]) for k in before)        # the skipped step changed nothing
    assert all(torch.isfinite(p).all() for p in model.parameters())
    assert json.loads((latest_checkpoint(tmp_path) / "trainer_state.json").read_text())["nonfinite_skipped"] == 2


def test_skip_budget_runs_out(tmp_path):
    with pytest.raises(NonFiniteError, match="step 4: the loss is not finite"):
        train_linear(tmp_path, Poisoned({2, 4}), skip_nonfinite=1)


def test_a_skip_spends_the_whole_accumulated_step(tmp_path):
    out, _ = train_linear(tmp_path, Poisoned({3}), skip_nonfinite=1, grad_accum=2, max_steps=3)
    assert out["nonfinite_skipped"] == 1
    assert "loss" not in metrics(tmp_path)[1]                          # micro-batches 3 and 4 are step 2

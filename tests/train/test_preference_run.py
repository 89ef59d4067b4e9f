"""``run_preference`` end to end on a tiny lab LLaVA saved to a folder: outputs, validation, early stopping."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from safetensors.torch import load_file

from mmalign.models.load import ModelConfig, load_model
from mmalign.train.loop import TrainConfig
from mmalign.train.preference import (
    EarlyStopConfig,
    LossConfig,
    PreferenceConfig,
    PreferenceDataConfig,
    run_preference,
)
from mmalign.world.model import LabModelConfig, build_lab_model
from mmalign.world.preference import LabPairsConfig

TINY = LabModelConfig(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                      text_hidden=32, text_layers=1, text_heads=2, text_mlp=64)


@pytest.fixture(scope="module")
def base_folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("tiny-lab-base")
    model, processor = build_lab_model(TINY, 64)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def cfg(base, tmp_path, *, loss: str = "dpo", nll_weight: float = 1.0, early_stop: EarlyStopConfig | None = None,
        **train) -> PreferenceConfig:
    t = dict(output_dir=str(tmp_path / "out"), max_steps=4, batch_size=4, lr=1e-3, warmup_steps=0, log_every=1,
             eval_every=2, threads=1)
    return PreferenceConfig(model=ModelConfig(path=str(base)), cache_dir=str(tmp_path / "cache"), eval_scenes=0,
                            loss=LossConfig(name=loss, nll_weight=nll_weight),
                            data=PreferenceDataConfig(lab=LabPairsConfig(n=32), val_size=16),
                            early_stop=early_stop or EarlyStopConfig(), train=TrainConfig(**(t | train)))


def read_metrics(out) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


def test_run_writes_model_and_metrics(base_folder, tmp_path):
    result = run_preference(cfg(base_folder, tmp_path))
    out = tmp_path / "out"
    assert "stopped" not in result["last"] and result["last"]["step"] == 4
    recs = read_metrics(out)
    train_steps = [r["step"] for r in recs if "loss" in r]
    assert train_steps == [1, 2, 3, 4]
    val = [r for r in recs if "val/loss" in r]
    assert [r["step"] for r in val] == [2, 4]
    for key in ("val/loss", "val/accuracy", "val/margin", "val/delta/chosen", "val/logp/chosen", "val/len/chosen"):
        assert key in val[0], key
    assert all(k.startswith("val/") or k == "step" for r in val for k in r)
    for key in ("delta/chosen", "delta/rejected", "kl_proxy", "accuracy", "grad_norm", "lr"):
        assert key in recs[0], key
    assert recs[0]["delta/chosen"] == pytest.approx(0.0, abs=1e-4)      # step 1: the policy is the reference
    assert len(list((tmp_path / "cache").glob("ref-*.safetensors"))) == 1

    model, _ = load_model(ModelConfig(path=str(out / "model")))          # a plain folder that reloads
    assert (out / "model" / "preprocessor_config.json").exists() or (out / "model" / "processor_config.json").exists()
    trained = load_file(out / "model" / "model.safetensors")
    base = load_file(base_folder / "model.safetensors")
    lm = [k for k in base if "language_model" in k or "lm_head" in k]
    assert lm and any(not torch.equal(trained[k], base[k]) for k in lm)  # it trained
    vision = [k for k in base if "vision_tower" in k]
    assert vision and any(not torch.equal(trained[k], base[k]) for k in vision)   # the tower trains by default


def test_freeze_vision_keeps_the_tower(base_folder, tmp_path):
    c = cfg(base_folder, tmp_path, max_steps=2, eval_every=0)
    run_preference(dataclasses.replace(c, freeze_vision=True))
    trained = load_file(tmp_path / "out" / "model" / "model.safetensors")
    base = load_file(base_folder / "model.safetensors")
    vision = [k for k in base if "vision_tower" in k]
    assert vision and all(torch.equal(trained[k], base[k]) for k in vision)
    assert any(not torch.equal(trained[k], base[k]) for k in base if "language_model" in k)


def test_collapse_guard_stops_training(base_folder, tmp_path):
    guard = EarlyStopConfig(max_chosen_drop=1e-3)
    result = run_preference(cfg(base_folder, tmp_path, nll_weight=0.0, lr=0.1, max_steps=8, eval_every=0,
                                early_stop=guard))
    assert "collapsing" in result["last"].get("stopped", ""), result["last"]
    assert 1 < result["last"]["step"] < 8
    drops = [-r["delta/chosen"] for r in read_metrics(tmp_path / "out")]
    assert drops[-1] > 1e-3 and all(d <= 1e-3 for d in drops[:-1])      # it stopped at the first drop past the guard
    assert (tmp_path / "out" / "model" / "config.json").exists()           # the stopped model is still saved


def test_patience_stops_training(base_folder, tmp_path):
    patience = EarlyStopConfig(metric="val/loss", patience=1, min_delta=1e9)   # no evaluation can improve enough
    result = run_preference(cfg(base_folder, tmp_path, eval_every=1, early_stop=patience))
    assert "has not improved for 1 evaluations" in result["last"]["stopped"]
    assert result["last"]["step"] == 2
    assert [r["step"] for r in read_metrics(tmp_path / "out") if "val/loss" in r] == [1, 2]


@pytest.mark.parametrize("loss", ["bco", "hadpo"])
def test_resume_restores_the_trainer_state(base_folder, tmp_path, loss):
    """BCO's running reward mean and HA-DPO's place in its SFT stream are checkpointed with the run."""
    full, part = tmp_path / "full", tmp_path / "part"
    run_preference(cfg(base_folder, full, loss=loss, eval_every=0, save_every=2))
    resumed = cfg(base_folder, part, loss=loss, eval_every=0, resume=str(full / "out" / "checkpoints" / "step-0000002"))
    run_preference(resumed)
    a, b = read_metrics(full / "out"), read_metrics(part / "out")
    assert [r["step"] for r in b] == [3, 4]
    for x, y in zip(a[2:], b):
        assert x["loss"] == pytest.approx(y["loss"], rel=1e-5)

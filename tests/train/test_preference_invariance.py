"""Invariances of the preference trainer on a tiny LLaVA: gradient accumulation, padding, the reference cache, the
adapters-disabled reference, and one step of every registry loss through ``Step``."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch
from peft import get_peft_model
from PIL import Image
from safetensors.torch import load_file

from mmalign.data.collate import collate_preference
from mmalign.data.preference import PreferenceRecord
from mmalign.losses import PREFERENCE_LOSSES
from mmalign.models.load import LoraSettings, lora_config
from mmalign.models.logprobs import preference_logps
from mmalign.models.tiny import build_llava
from mmalign.train import reference as reference_module
from mmalign.train.loop import TrainConfig, train
from mmalign.train.preference import (
    collate_settings,
    make_reference,
    validate,
    views_for,
)
from mmalign.train.reference import (
    data_fingerprint,
    frozen_copy,
    logps_path,
    model_fingerprint,
)

from .conftest import make_step, partners_of, perturb, pref_cfg


def close(a, b, tol):
    torch.testing.assert_close(a, b, rtol=tol, atol=tol)


# ---- gradient accumulation ------------------------------------------------------------------------------------

def sgd_step_delta(tmp_path, monkeypatch, records, bs: int, accum: int) -> tuple[dict, float]:
    """One optimiser step of the real loop (``train`` + ``Step`` + a live DPO reference) with the loop's AdamW
    swapped for plain SGD at lr 1, no clipping and no weight decay: the weight change is then exactly the
    accumulated gradient. (AdamW's first step is ~lr * sign(g), blind to how the gradient was scaled.)"""
    monkeypatch.setattr(torch.optim, "AdamW", lambda groups, lr, **_: torch.optim.SGD(groups, lr=lr))
    model, processor = build_llava()
    out = tmp_path / f"bs{bs}x{accum}"
    cfg = pref_cfg(out, batch_size=bs)
    step = make_step(cfg, model, processor, records)
    perturb(model)

    def batches(start):
        k = start
        while True:
            yield records[k * bs:(k + 1) * bs]
            k += 1

    before = {k: v.clone() for k, v in model.state_dict().items()}
    tc = TrainConfig(output_dir=str(out), max_steps=1, batch_size=bs, grad_accum=accum, lr=1.0, warmup_steps=0,
                     max_grad_norm=0.0, weight_decay=0.0, log_every=1)
    train(model, [{"params": [p for p in model.parameters() if p.requires_grad]}], step, batches, tc)
    loss = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])["loss"]
    return {k: before[k] - v for k, v in model.state_dict().items()}, loss


def test_gradient_accumulation_invariance(tmp_path, monkeypatch, lab8):
    g8, loss8 = sgd_step_delta(tmp_path, monkeypatch, lab8, bs=8, accum=1)
    g1, loss1 = sgd_step_delta(tmp_path, monkeypatch, lab8, bs=1, accum=8)
    assert loss8 != pytest.approx(math.log(2), abs=1e-3)           # the policy is not the reference
    assert loss1 == pytest.approx(loss8, rel=1e-6)                  # the logged loss is the mean of the micro-batches
    norm = math.sqrt(sum(float(g.pow(2).sum()) for g in g8.values()))
    assert norm > 1e-3                                             # a real gradient, not zeros
    for k in g8:
        close(g1[k], g8[k], 1e-5)

    # ... and the batch-8 step is the plain gradient of Step's loss, the mean of the per-example losses
    model, processor = build_llava()
    step = make_step(pref_cfg(tmp_path), model, processor, lab8)
    perturb(model)
    loss, _ = step(model, lab8)
    singles = [float(step(model, [r])[0]) for r in lab8]
    assert float(loss) == pytest.approx(sum(singles) / 8, rel=1e-6)
    assert float(loss) == pytest.approx(loss8, rel=1e-6)
    loss.backward()
    for k, p in model.named_parameters():
        close(p.grad if p.grad is not None else torch.zeros_like(p), g8[k], 1e-5)


# ---- padding ----------------------------------------------------------------------------------------------------

def test_logps_do_not_depend_on_the_batch_partner(lab8):
    model, processor = build_llava()
    short = PreferenceRecord(id="short", prompt="is there a star in the image ?", images=lab8[0].images,
                             chosen="yes", rejected="no", corrupt_images=lab8[0].corrupt_images)
    words = "a red circle and a blue star and a green square and a yellow triangle ."
    long = PreferenceRecord(id="long", prompt="describe the image . " * 6, images=[Image.new("RGB", (64, 64))],
                            chosen=" ".join([words] * 5), rejected=" ".join([words] * 4),
                            corrupt_images=[Image.new("RGB", (64, 64), "white")])
    views = ("chosen", "rejected", "chosen_corrupt")
    with torch.no_grad():
        alone = preference_logps(model, collate_preference(processor, [short], views), noise=True)
        for batch, row in (([short, long], 0), ([long, short], 1)):
            collated = collate_preference(processor, batch, views)
            assert collated.labels.shape[1] > 3 * (collated.labels[row] != -100).sum()   # heavily padded
            mixed = preference_logps(model, collated, noise=True)
            for view in (*views, "noise"):
                close(getattr(mixed, view).sum[row:row + 1], getattr(alone, view).sum, 1e-5)
                assert getattr(mixed, view).count[row] == getattr(alone, view).count[0]


# ---- the reference: cached, live, adapters ----------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["dpo", "kto", "povid", "ddpo"])
def test_cached_reference_equals_live(tmp_path, lab8, loss):
    model, processor = build_llava()
    live = make_step(pref_cfg(tmp_path, loss), model, processor, lab8)
    cached = make_step(pref_cfg(tmp_path, loss, ref_cache=True, batch_size=3), model, processor, lab8)
    perturb(model)                      # the policy moves on; both references stay at the initial weights
    batch = [lab8[5], lab8[2], lab8[7], lab8[0]]          # not the cache's order or batching
    loss_live, m_live = live(model, batch)
    loss_cached, m_cached = cached(model, batch)
    assert float(loss_live) != pytest.approx(math.log(2), abs=1e-3) or loss != "dpo"   # not the trivial value
    assert float(loss_cached) == pytest.approx(float(loss_live), rel=1e-6, abs=1e-6)
    for k in m_live:
        assert m_cached[k] == pytest.approx(m_live[k], rel=1e-5, abs=1e-5), k
    _, _, ref_live = live.logps(model, batch)
    _, _, ref_cached = cached.logps(model, batch)
    for view in views_for(PREFERENCE_LOSSES[loss]) + (("noise",) if loss == "povid" else ()):
        close(getattr(ref_cached, view).sum, getattr(ref_live, view).sum, 1e-5)


def test_a_reference_cache_cut_short_while_written_is_never_read(tmp_path, lab8, monkeypatch):
    """The cache is written under a temporary name and renamed into place: a write that dies half way leaves
    nothing under the cache's name, and the next run computes the file afresh."""
    model, processor = build_llava()
    cfg = pref_cfg(tmp_path, ref_cache=True, batch_size=4)
    spec, partners = PREFERENCE_LOSSES["dpo"], partners_of(lab8)

    def killed(table, filename, metadata=None):
        Path(filename).write_bytes(b"the first half of a safetensors file")
        raise KeyboardInterrupt
    monkeypatch.setattr(reference_module, "save_file", killed)
    with pytest.raises(KeyboardInterrupt):
        make_reference(cfg, model, processor, spec, lab8, partners)
    assert not list((tmp_path / "cache").glob("*.safetensors"))
    monkeypatch.undo()
    ref = make_reference(cfg, model, processor, spec, lab8, partners)
    [written] = (tmp_path / "cache").glob("*")                            # the file, and no temporary left
    batch = collate_preference(processor, lab8[:2], ("chosen", "rejected"))
    assert torch.equal(ref(batch).chosen.sum, load_file(str(written))["chosen.sum"][:2])


def test_reference_cache_file_is_reused(tmp_path, lab8, monkeypatch):
    model, processor = build_llava()
    cfg = pref_cfg(tmp_path, ref_cache=True, batch_size=4)
    spec, partners = PREFERENCE_LOSSES["dpo"], partners_of(lab8)
    first = make_reference(cfg, model, processor, spec, lab8, partners)
    files = list((tmp_path / "cache").glob("*.safetensors"))
    assert len(files) == 1
    mtime = files[0].stat().st_mtime_ns

    def fail(*a, **k):
        raise AssertionError("the reference was recomputed although its cache file exists")
    monkeypatch.setattr(reference_module, "compute_reference", fail)
    second = make_reference(cfg, model, processor, spec, lab8, partners)
    assert list((tmp_path / "cache").glob("*.safetensors")) == files and files[0].stat().st_mtime_ns == mtime
    batch = collate_preference(processor, lab8[:3], ("chosen", "rejected"))
    assert torch.equal(first(batch).chosen.sum, second(batch).chosen.sum)

    # another image (or other weights) is another key: a new file is computed
    monkeypatch.undo()
    changed = copy.copy(lab8)
    img = lab8[3].images[0].copy()
    img.putpixel((0, 0), tuple(255 - c for c in img.getpixel((0, 0))))
    changed[3] = dataclasses.replace(lab8[3], images=[img])
    make_reference(cfg, model, processor, spec, changed, partners_of(changed))
    assert len(list((tmp_path / "cache").glob("*.safetensors"))) == 2


def test_fingerprints(lab8):
    views, settings = ("chosen", "rejected", "chosen_corrupt"), {"gamma": None, "noise": False, "max_length": None}
    base = data_fingerprint(lab8, views, settings)
    assert data_fingerprint(lab8, views, settings) == base

    def with_images(i, **images):
        recs = copy.copy(lab8)
        recs[i] = dataclasses.replace(lab8[i], **images)
        return data_fingerprint(recs, views, settings)

    img = lab8[1].images[0].copy()
    img.putpixel((5, 5), (0, 0, 0) if img.getpixel((5, 5)) != (0, 0, 0) else (1, 1, 1))
    assert with_images(1, images=[img]) != base
    assert with_images(1, corrupt_images=[img]) != base
    # same pixel bytes, other shape: a 32x64 image is not its 64x32 reshaping
    wide = Image.frombytes("RGB", (64, 32), bytes(range(256)) * 24)
    tall = Image.frombytes("RGB", (32, 64), wide.tobytes())
    assert with_images(1, images=[wide]) != with_images(1, images=[tall])
    assert data_fingerprint(lab8, views, settings | {"gamma": 5.0}) != base
    assert data_fingerprint(lab8, ("chosen", "rejected"), settings) != base

    model, _ = build_llava()
    before = model_fingerprint(model)
    with torch.no_grad():
        model.lm_head.weight[0, 0] += 1e-3
    assert model_fingerprint(model) != before
    # a model with a scalar (0-dim) buffer or parameter can be fingerprinted too
    model.register_buffer("scale", torch.tensor(2.0))
    assert model_fingerprint(model) != model_fingerprint(build_llava()[0])


@pytest.mark.parametrize("ref_cache", [False, True])
def test_adapters_reference_equals_frozen_base(tmp_path, lab8, ref_cache):
    base, processor = build_llava()
    frozen = frozen_copy(base)                                        # the base weights, before LoRA wraps them
    model = get_peft_model(base, lora_config(base, LoraSettings(enabled=True, r=4)))
    with torch.no_grad():                                             # adapters that change the outputs
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    cfg = pref_cfg(tmp_path, reference="adapters", lora=True, ref_cache=ref_cache)
    spec = PREFERENCE_LOSSES["mdpo"]
    ref = make_reference(cfg, model, processor, spec, lab8, partners_of(lab8))
    collate, score = logps_path(cfg.data.packed)                      # the trainer's batches, packed or not
    batch = collate(processor, lab8[:4], views_for(spec), **collate_settings(cfg, spec), kl_partners=lab8[1:5])
    with torch.no_grad():
        expect = score(frozen, batch)
        got = ref(batch)
        policy = score(model, batch)                                  # adapters are back on afterwards
    for view in views_for(spec):
        close(getattr(got, view).sum, getattr(expect, view).sum, 1e-5)
    assert (policy.chosen.sum - expect.chosen.sum).abs().max() > 1e-2


def test_adapters_reference_needs_lora(tmp_path, lab8):
    model, processor = build_llava()
    with pytest.raises(Exception, match="lora"):
        make_reference(pref_cfg(tmp_path, reference="adapters"), model, processor, PREFERENCE_LOSSES["dpo"], lab8,
                       partners_of(lab8))


# ---- every registry loss, one step --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(PREFERENCE_LOSSES))
def test_every_loss_runs_one_step(tmp_path, lab8, name):
    model, processor = build_llava()
    step = make_step(pref_cfg(tmp_path, name, batch_size=2), model, processor, lab8)
    perturb(model)
    records = lab8[:4]
    loss, metrics = step(model, records)
    assert loss.ndim == 0 and torch.isfinite(loss), name
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0
    assert all(math.isfinite(v) for v in metrics.values()), metrics
    assert ("delta/chosen" in metrics) == PREFERENCE_LOSSES[name].needs_reference


def test_kto_uses_the_kl_view(tmp_path, lab8):
    model, processor = build_llava()
    cfg = pref_cfg(tmp_path, "kto")
    cfg.data.packed = False            # reads the concatenated batch's rows (tests/models/test_packed.py: the same values)
    step = make_step(cfg, model, processor, lab8)
    perturb(model)
    records = lab8[2:6]
    batch, policy, ref = step.logps(model, records)
    assert "kl" in batch.views and policy.kl is not None and ref.kl is not None
    # the kl rows pair each prompt with its fixed partner's chosen answer (whatever the batch)
    alone = collate_preference(processor, [records[0]], ("kl",), kl_partners=[lab8[3]])
    torch.testing.assert_close(batch.labels[batch.views["kl"]][0, :alone.labels.shape[1]], alone.labels[0])
    extra = step.data_inputs(model, batch, policy, ref)
    close(extra["kl_logratio"], (policy.kl.sum - ref.kl.sum).detach(), 0)
    assert not extra["kl_logratio"].requires_grad and extra["kl_logratio"].abs().max() > 0


def test_bco_running_mean(tmp_path, lab8):
    model, processor = build_llava()
    step = make_step(pref_cfg(tmp_path, "bco"), model, processor, lab8)
    perturb(model)
    _, m1 = step(model, lab8[:2])
    assert m1["reward_mean"] == 0.0                                    # the first step sees delta = 0
    first = step.running.mean
    assert step.running.count == 2 and first != 0.0
    _, m2 = step(model, lab8[2:4])
    assert m2["reward_mean"] == pytest.approx(first, rel=1e-6)         # the second sees the first batch's mean
    assert step.running.count == 4
    # evaluation reads the running mean but does not feed it
    state = step.running.state_dict()
    model.eval()
    validate(step, model, lab8[4:])
    model.train()
    assert step.running.state_dict() == state

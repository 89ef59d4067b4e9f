"""The prefix-shared packed path (``collate_packed`` + ``packed_logps``) against the concatenated one
(``collate_preference`` + ``preference_logps``, itself checked against per-example forwards in test_logprobs.py),
for each tiny family: per-token log-probs of every view, the mask and positions, losses and gradients, the
trainer switch and the reference cache.

    .venv/bin/python -m pytest -q -p no:cacheprovider tests/models/test_packed.py
"""
from __future__ import annotations

import copy
import dataclasses
import json

import pytest
import torch
from peft import get_peft_model

from mmalign.data.collate import collate_preference
from mmalign.data.pack import collate_packed
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import MMAlignError
from mmalign.losses import PREFERENCE_LOSSES
from mmalign.models.load import (
    LoraSettings,
    ModelConfig,
    lora_config,
    vision_params,
    vision_tower,
)
from mmalign.models.logprobs import preference_logps, token_logps
from mmalign.models.packed import (
    block_mask,
    packed_forward,
    packed_logps,
    packed_token_logps,
    view_mask,
)
from mmalign.models.tiny import build_llava
from mmalign.train.loop import TrainConfig, train
from mmalign.train.preference import (
    LossConfig,
    PreferenceConfig,
    PreferenceDataConfig,
    Step,
    make_reference,
)
from mmalign.train.reference import compute_reference
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig

from .conftest import random_image
from .test_logprobs import records

TOL = {"rtol": 1e-5, "atol": 1e-5}
GAMMA = 5.0
VIEWS = ("chosen", "rejected", "chosen_corrupt", "kl")
SEQ_FIELDS = ("sum", "count", "weighted", "weight_sum")


def both(model, processor, recs, views=VIEWS, *, noise=False, **kw):
    """``(concatenated, packed)`` PreferenceLogps of the same records and settings."""
    plain = preference_logps(model, collate_preference(processor, recs, views, **kw), noise=noise)
    packed = packed_logps(model, collate_packed(processor, recs, views, **kw), noise=noise)
    return plain, packed


def assert_same(plain, packed, views, tol=TOL):
    for view in views:
        a, b = getattr(plain, view), getattr(packed, view)
        for f in SEQ_FIELDS:
            x, y = getattr(a, f), getattr(b, f)
            assert (x is None) == (y is None), (view, f)
            if x is not None:
                torch.testing.assert_close(y, x, **tol, msg=f"{view}.{f}")


# ---- log-probs -------------------------------------------------------------------------------------------------

def test_per_token_logps_equal_the_concatenated_path(family):
    """Token by token, every view: the same tokens scored and the same log-probs (multi-image, unequal lengths)."""
    _, model, processor = family
    recs = records()
    plain_batch = collate_preference(processor, recs, VIEWS)
    packed_batch = collate_packed(processor, recs, VIEWS)
    with torch.no_grad():
        plain, mask = token_logps(model(**plain_batch.inputs).logits, plain_batch.labels)
        packed = packed_token_logps(*packed_forward(model, packed_batch), packed_batch)
    for view in VIEWS:
        rows, m = plain_batch.views[view], mask[plain_batch.views[view]]
        where, pm = packed_batch.views[view][0], view_mask(packed_batch, view)
        assert pm.sum(1).tolist() == m.sum(1).tolist(), view
        assert packed_batch.labels[where][pm].tolist() == plain_batch.labels[rows][:, 1:][m].tolist(), view
        torch.testing.assert_close(packed[where][pm], plain[rows][m], **TOL, msg=view)


@pytest.mark.parametrize("corrupt_eot", [True, False])
def test_reductions_equal_with_token_weights_and_noise(family, corrupt_eot):
    """Sums, counts, DDPO-weighted sums, POVID's y_noise (needs the end-of-turn aligned) and chosen_nll."""
    _, model, processor = family
    with torch.no_grad():
        plain, packed = both(model, processor, records(), noise=corrupt_eot, token_weight_gamma=GAMMA,
                             corrupt_eot=corrupt_eot)
    assert_same(plain, packed, VIEWS + (("noise",) if corrupt_eot else ()))
    torch.testing.assert_close(packed.chosen_nll, plain.chosen_nll, **TOL)
    assert packed.chosen.weight_sum[0] > packed.chosen.count[0]     # the spans did weigh some tokens


def test_truncation_and_text_only_records(family):
    """``max_length`` cuts each answer as the concatenated batch does; records without images pack too."""
    _, model, processor = family
    recs = records()
    full = collate_packed(processor, recs, VIEWS)
    room = int((full.branch == 0).sum(1).max()) + 3                    # every prompt fits, long answers do not
    with torch.no_grad():
        plain, packed = both(model, processor, recs, max_length=room, corrupt_eot=False)
    assert_same(plain, packed, VIEWS)
    assert view_mask(full, "chosen").sum() > packed.chosen.count.sum()   # something was cut
    with pytest.raises(MMAlignError, match="max_length"):
        collate_packed(processor, recs, VIEWS, max_length=8)
    text_only = [dataclasses.replace(r, images=[], corrupt_images=[]) for r in recs]
    with torch.no_grad():
        assert_same(*both(model, processor, text_only, ("chosen", "rejected", "kl")), ("chosen", "rejected", "kl"))


def test_adapters_and_eager_attention(tiny_models):
    """A peft-wrapped model (M-RoPE reached through the wrapper) and eager attention, which adds the float mask."""
    model, processor = tiny_models["qwen2_vl"]
    base = copy.deepcopy(model)
    lora = get_peft_model(base, lora_config(base, LoraSettings(r=4)))
    with torch.no_grad():
        for name, p in lora.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
        plain, packed = both(lora, processor, records())
        assert_same(plain, packed, VIEWS)
        assert (plain.chosen.sum - preference_logps(model, collate_preference(processor, records())).chosen.sum
                ).abs().max() > 1e-2                                   # the adapters are in play
    eager, processor = build_llava()
    eager.set_attn_implementation("eager")
    with torch.no_grad():
        assert_same(*both(eager, processor, records()), VIEWS)


def test_other_attention_implementations_are_refused(tiny_models):
    model, processor = tiny_models["llava"]
    batch = collate_packed(processor, records(), ("chosen", "rejected"))
    config = model.config.get_text_config()
    before, config._attn_implementation = config._attn_implementation, "flash_attention_2"
    try:
        with pytest.raises(MMAlignError, match="4-D attention mask"):
            packed_logps(model, batch)
    finally:
        config._attn_implementation = before


# ---- the layout: mask, positions, one vision pass ---------------------------------------------------------------

def test_block_mask_by_hand():
    branch = torch.tensor([[0, 0, 1, 1, 2, 2, -1]])
    allowed = [[1, 0, 0, 0, 0, 0, 0],
               [1, 1, 0, 0, 0, 0, 0],
               [1, 1, 1, 0, 0, 0, 0],
               [1, 1, 1, 1, 0, 0, 0],
               [1, 1, 0, 0, 1, 0, 0],      # the rejected branch sees the prefix, not the chosen one
               [1, 1, 0, 0, 1, 1, 0],
               [1, 1, 0, 0, 0, 0, 1]]      # padding sees the prefix and itself: no fully masked row
    mask = block_mask(branch, torch.float32)
    assert mask.shape == (1, 1, 7, 7) and mask.dtype == torch.float32
    assert (mask[0, 0] == 0).int().tolist() == allowed
    assert mask.min() == torch.finfo(torch.float32).min


def test_rows_hold_the_prefix_once_and_each_answer_as_its_own_sequence(family):
    name, _, processor = family
    recs = records()
    plain = collate_preference(processor, recs, ("chosen", "rejected"))
    packed = collate_packed(processor, recs, ("chosen", "rejected"))
    assert packed.labels.shape[0] == len(recs)                            # one row per pair
    for i in range(len(recs)):
        for view, b in (("chosen", 1), ("rejected", 2)):
            row = plain.views[view].start + i
            n = int(plain.inputs["attention_mask"][row].sum())
            alone = plain.inputs["input_ids"][row, :n]                   # [prompt | answer] as one sequence
            on = (packed.branch[i] == 0) | (packed.branch[i] == b)
            assert packed.inputs["input_ids"][i][on].tolist() == alone.tolist(), (name, view)
            assert packed.positions[i][on].tolist() == list(range(n))   # the branch continues the prefix


def test_mrope_positions_equal_the_models_own(tiny_models):
    """Qwen2-VL: each branch's 3-D positions are what the model computes for [prompt | answer] alone."""
    from mmalign.models.packed import position_ids
    model, processor = tiny_models["qwen2_vl"]
    recs = records()
    plain = collate_preference(processor, recs, ("chosen", "rejected"))
    packed = collate_packed(processor, recs, ("chosen", "rejected"))
    expect = model.model.get_rope_index(plain.inputs["input_ids"], plain.inputs["mm_token_type_ids"],
                                        plain.inputs["image_grid_thw"], attention_mask=plain.inputs["attention_mask"])[0]
    got = position_ids(model, packed)
    assert got.shape == (3, *packed.labels.shape)
    for i in range(len(recs)):
        for view, b in (("chosen", 1), ("rejected", 2)):
            row = plain.views[view].start + i
            n = int(plain.inputs["attention_mask"][row].sum())
            on = (packed.branch[i] == 0) | (packed.branch[i] == b)
            assert torch.equal(got[:, i][:, on], expect[:, row, :n]), view
    assert int(got[0, 2].max()) < packed.positions[2].max()             # images compress positions: 3-D, not 1-D


def test_vision_encoder_runs_once_per_pair(tiny_models):
    model, processor = tiny_models["llava"]
    seen = []
    hook = vision_tower(model).register_forward_hook(
        lambda m, args, kwargs, out: seen.append((args[0] if args else kwargs["pixel_values"]).shape[0]),
        with_kwargs=True)
    recs = records()                                                     # 4 images: r2 has two
    try:
        with torch.no_grad():
            preference_logps(model, collate_preference(processor, recs, ("chosen", "rejected", "chosen_corrupt")))
            packed_logps(model, collate_packed(processor, recs, ("chosen", "rejected", "chosen_corrupt")))
    finally:
        hook.remove()
    assert seen == [3 * 4, 2 * 4]          # concatenated: I for y_w, I for y_l, I'; packed: I once, I'


# ---- losses, gradients, the trainer ---------------------------------------------------------------------------

@pytest.mark.parametrize("loss", ["dpo", "mdpo"])
def test_losses_and_gradients_agree(family, loss):
    _, model, processor = family
    spec, recs = PREFERENCE_LOSSES[loss], records()
    views = ("chosen", "rejected", "chosen_corrupt") if spec.needs_corrupt_image else ("chosen", "rejected")
    with torch.no_grad():
        ref = preference_logps(model, collate_preference(processor, recs, views))
    policy = copy.deepcopy(model)
    with torch.no_grad():                                                # a policy away from the reference
        for p in policy.parameters():
            p.add_(0.05 * torch.randn(p.shape, generator=torch.Generator().manual_seed(p.numel())))
    grads, losses = [], []
    for collate, score in ((collate_preference, preference_logps), (collate_packed, packed_logps)):
        policy.zero_grad()
        out = score(policy, collate(processor, recs, views))
        total = spec.fn(out, ref, beta=0.5).loss.mean() + out.chosen_nll.mean()
        total.backward()
        losses.append(float(total.detach()))
        grads.append({k: p.grad.clone() for k, p in policy.named_parameters() if p.grad is not None})
    assert losses[1] == pytest.approx(losses[0], rel=1e-6, abs=1e-6)
    tower = {n for n, p in policy.named_parameters() if any(p is q for q in vision_params(policy))}
    assert grads[0].keys() == grads[1].keys() and tower & grads[0].keys()   # the gradient reaches the vision tower
    norm = torch.sqrt(sum(g.pow(2).sum() for g in grads[0].values()))
    diff = torch.sqrt(sum((grads[1][k] - g).pow(2).sum() for k, g in grads[0].items()))
    assert norm > 1e-3 and diff / norm < 1e-5
    for k, g in grads[0].items():
        torch.testing.assert_close(grads[1][k], g, rtol=1e-4, atol=1e-6, msg=k)


@pytest.fixture(scope="module")
def lab6():
    return lab_pairs(WorldConfig(), LabPairsConfig(n=6))


def run_three_steps(tmp_path, lab6, loss: str, packed: bool, ref_cache: bool) -> list[float]:
    model, processor = build_llava()
    out = tmp_path / f"{loss}-{packed}"
    cfg = PreferenceConfig(model=ModelConfig(path="(in memory)"), ref_cache=ref_cache,
                           cache_dir=str(tmp_path / "cache"), loss=LossConfig(name=loss),
                           data=PreferenceDataConfig(packed=packed),
                           train=TrainConfig(output_dir=str(out), max_steps=3, batch_size=2, lr=1e-2,
                                             warmup_steps=0, log_every=1))
    spec = PREFERENCE_LOSSES[loss]
    partners = {r.id: lab6[(i + 1) % len(lab6)] for i, r in enumerate(lab6)}
    step = Step(cfg, spec, processor, make_reference(cfg, model, processor, spec, lab6, partners), partners)
    train(model, [{"params": list(model.parameters())}], step, lambda k: (lab6[2 * j % 6:2 * j % 6 + 2]
                                                                         for j in range(k, k + 99)), cfg.train)
    return [json.loads(line)["loss"] for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("loss", "ref_cache"), [("mdpo", False), ("kto", True)])
def test_three_training_steps_match(tmp_path, lab6, loss, ref_cache):
    """The real loop (AdamW at a large lr, so the steps move the policy) with packing off and on."""
    off = run_three_steps(tmp_path, lab6, loss, packed=False, ref_cache=ref_cache)
    on = run_three_steps(tmp_path, lab6, loss, packed=True, ref_cache=ref_cache)
    assert len(on) == len(off) == 3 and abs(off[2] - off[0]) > 1e-2
    assert on == pytest.approx(off, abs=1e-4)


def test_reference_cache_is_the_same_either_way(tmp_path, lab6):
    """The cached table is equal whichever path computes it, and the switch is not part of the key: a run with
    packing on reuses a cache written with it off."""
    model, processor = build_llava()
    views = ("chosen", "rejected", "chosen_corrupt", "kl")
    kw = {"batch_size": 4, "noise": True, "kl_partners": lab6[1:] + lab6[:1], "token_weight_gamma": None,
          "max_length": None, "corrupt_eot": True}
    plain = compute_reference(model, processor, lab6, views, packed=False, **kw)
    packed = compute_reference(model, processor, lab6, views, packed=True, **kw)
    assert plain.keys() == packed.keys() and "noise.sum" in plain
    for k in plain:
        torch.testing.assert_close(packed[k], plain[k], **TOL, msg=k)

    spec, partners = PREFERENCE_LOSSES["mdpo"], {r.id: lab6[(i + 1) % 6] for i, r in enumerate(lab6)}
    for packed_on in (False, True):
        cfg = PreferenceConfig(ref_cache=True, cache_dir=str(tmp_path / "cache"),
                               data=PreferenceDataConfig(packed=packed_on), loss=LossConfig(name="mdpo"))
        make_reference(cfg, model, processor, spec, lab6, partners)
    assert len(list((tmp_path / "cache").glob("ref-*.safetensors"))) == 1


def test_records_of_other_lengths_in_one_batch(tiny_models):
    """A long pair beside a short one (heavy padding, prefixes of other lengths) changes nothing."""
    model, processor = tiny_models["idefics3"]
    words = "a red circle and a blue star and a green square ."
    short = PreferenceRecord(id="s", prompt="is there a star ?", images=[random_image(5)], chosen="yes", rejected="no")
    long = PreferenceRecord(id="l", prompt="describe the image . " * 4, images=[random_image(6), random_image(7)],
                            chosen=" ".join([words] * 4), rejected=words)
    with torch.no_grad():
        alone = packed_logps(model, collate_packed(processor, [short]))
        mixed = packed_logps(model, collate_packed(processor, [long, short]))
        plain = preference_logps(model, collate_preference(processor, [long, short]))
    for view in ("chosen", "rejected"):
        torch.testing.assert_close(getattr(mixed, view).sum[1:], getattr(alone, view).sum, **TOL)
    assert_same(plain, mixed, ("chosen", "rejected"))

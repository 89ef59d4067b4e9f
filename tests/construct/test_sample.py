"""Sampling: n rows per prompt, deterministic per seed and independent of batching, Gumbel-max draws from the
softmax, temperature 0 and a vanishing top-p equal greedy ``generate``, stopping at the end-of-turn token; next-token
answer probabilities; and self-annotation on the shipped base model giving oracle pairs."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from mmalign.construct.sample import SamplingConfig, self_annotate
from mmalign.construct.scorers import make_scorer
from mmalign.errors import MMAlignError
from mmalign.eval.lab import generate
from mmalign.models.generate import RowGumbelNoise, answer_probs, placeholder_ids, sample_responses
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.tiny import FAMILIES, build_llava
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

torch.set_num_threads(1)
BASE = Path(__file__).resolve().parents[2] / "mmalign" / "assets" / "lab" / "base"
PROMPTS = ["describe the image .", "is there a red circle in the image ?", "how many shapes are there ?"]
SIZE = {"llava": 64, "qwen2_vl": 56, "idefics3": 64}   # Qwen2-VL wants multiples of 28


def image(seed: int, size: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def examples(size: int = 64) -> list[dict]:
    return [{"images": [image(i, size)], "prompt": p} for i, p in enumerate(PROMPTS)]


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, build in FAMILIES.items()}


@pytest.fixture(scope="module")
def stopping():
    """A tiny LLaVA biased towards the end-of-turn token, so that some samples stop early and some do not."""
    model, processor = build_llava()
    model.generation_config.sequence_bias = {(processor.tokenizer.eos_token_id,): 4.0}
    return model, processor


@pytest.fixture(scope="module")
def base():
    return load_model(ModelConfig(path=str(BASE)))


def sample(model, processor, exs, **kw):
    settings = {"n": 3, "temperature": 1.0, "max_new_tokens": 6, "seed": 0, "batch_size": 9, "desc": None} | kw
    return sample_responses(model, processor, exs, **settings)


def hf_greedy(model, processor, example: dict, max_new_tokens: int) -> str:
    inputs = build_inputs(processor, [example], for_generation=True)
    out = model.generate(**inputs, do_sample=False, max_new_tokens=max_new_tokens)
    return processor.tokenizer.decode(out[0, inputs["input_ids"].shape[1]:], skip_special_tokens=True).strip()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_n_rows_per_prompt_deterministic_per_seed_and_independent_of_batching(models, family):
    model, processor = models[family]
    exs = examples(SIZE[family])
    first = sample(model, processor, exs)
    assert [len(t) for t in first.texts] == [3, 3, 3] and [len(t) for t in first.token_ids] == [3, 3, 3]
    assert len({t for row in first.texts for t in row}) > 3            # the rows are different draws
    assert sample(model, processor, exs).texts == first.texts
    assert sample(model, processor, exs, batch_size=2).texts == first.texts
    assert sample(model, processor, exs[:2]).texts == first.texts[:2]  # a prompt's draws ignore later prompts
    assert sample(model, processor, exs, seed=1).texts != first.texts


@pytest.mark.parametrize("family", list(FAMILIES))
def test_temperature_zero_and_a_vanishing_nucleus_are_greedy_generate(models, family):
    model, processor = models[family]
    exs = examples(SIZE[family])
    greedy = [hf_greedy(model, processor, e, 6) for e in exs]
    assert sample(model, processor, exs, temperature=0.0, n=2).texts == [[g, g] for g in greedy]
    # top-p below every token's probability keeps only the most likely token, at any temperature
    assert sample(model, processor, exs, temperature=1.5, top_p=1e-6, n=1).texts == [[g] for g in greedy]


def test_eval_generate_is_the_greedy_sample(models):
    model, processor = models["llava"]
    world = WorldConfig()
    exs = [make_example(world, t, "val", i) for t in ("caption", "count") for i in range(3)]
    # batches of 3 hold one task each, so each runs to its task's answer length
    assert generate(model, processor, exs, batch_size=3) == [
        hf_greedy(model, processor, e, 40 if e["task"] == "caption" else 4) for e in exs]


def test_gumbel_noise_draws_from_the_softmax():
    logits = torch.tensor([[1.0, 0.0, -1.0, 2.0]])
    noise = RowGumbelNoise([torch.Generator().manual_seed(7)])
    draws = torch.stack([noise(None, logits.clone()).argmax(-1) for _ in range(20000)]).flatten()
    freq = torch.bincount(draws, minlength=4) / len(draws)
    torch.testing.assert_close(freq, logits.softmax(-1)[0], atol=0.015, rtol=0)
    top_p_filtered = torch.tensor([[1.0, -float("inf"), -float("inf"), 2.0]])
    assert set(noise(None, top_p_filtered.repeat(500, 1).clone()).argmax(-1).tolist()) <= {0, 3}


def test_generation_stops_at_the_end_of_turn_token(stopping):
    model, processor = stopping
    eos = processor.tokenizer.eos_token_id
    out = sample(model, processor, examples(), n=4)
    flat = [(ids, stop, text) for row in zip(out.token_ids, out.stopped, out.texts) for ids, stop, text in zip(*row)]
    assert {stop for _, stop, _ in flat} == {True, False}               # the bias makes both kinds
    for ids, stop, text in flat:
        assert stop == (eos in ids) and eos not in ids[:-1]             # nothing after the end of turn
        assert len(ids) == 6 or stop
        assert text == processor.tokenizer.decode(ids, skip_special_tokens=True).strip()
    assert out.lengths == [[len(ids) for ids in row] for row in out.token_ids]


def test_stop_strings_end_a_completion_after_the_token_that_spells_them(models):
    """Each row is its unstopped draw cut after the first token whose decoded prefix holds a stop string, and
    counts as stopped; rows that never spell one are unchanged."""
    model, processor = models["llava"]
    tok = processor.tokenizer
    free = sample(model, processor, examples(), n=4, max_new_tokens=8)
    # a word the third token of one draw spells: some rows hold it, some do not
    word = tok.decode(free.token_ids[0][0][2:3], skip_special_tokens=True).strip()
    out = sample(model, processor, examples(), n=4, max_new_tokens=8, stop=[word])
    cut = hit = 0
    for ids, stop, full, full_stop in zip(*(sum(x, []) for x in (out.token_ids, out.stopped, free.token_ids,
                                                                  free.stopped))):
        spelled = [j for j in range(len(full)) if word in tok.decode(full[:j + 1], skip_special_tokens=True)]
        if spelled:
            assert ids == full[:spelled[0] + 1] and stop
            cut += len(ids) < len(full)
            hit += 1
        else:
            assert ids == full and stop == full_stop
    assert hit and cut                                                  # the stop took effect somewhere
    with pytest.raises(MMAlignError, match="stop string is empty"):
        sample(model, processor, examples(), stop=[""])


@pytest.mark.parametrize("family", list(FAMILIES))
def test_placeholder_tokens_are_never_sampled(models, family):
    """A model biased hard towards its image (and video) placeholder tokens still samples none: a completion
    holding one would be expanded into image features when its log-probs are computed."""
    model, processor = models[family]
    ids = placeholder_ids(processor)
    assert processor.tokenizer.convert_tokens_to_ids(processor.image_token) in ids
    model.generation_config.sequence_bias = {(i,): 20.0 for i in ids}
    try:
        out = sample(model, processor, examples(SIZE[family]), n=4)
        greedy = sample(model, processor, examples(SIZE[family]), n=1, temperature=0.0)
    finally:
        model.generation_config.sequence_bias = None
    assert not {i for o in (out, greedy) for row in o.token_ids for t in row for i in t} & set(ids)


def test_bad_settings_are_refused(models):
    model, processor = models["llava"]
    for bad in ({"n": 0}, {"temperature": -1.0}, {"top_p": 0.0}, {"top_p": 1.5}):
        with pytest.raises(MMAlignError):
            sample(model, processor, examples(), **bad)


def test_answer_probs_are_the_next_token_softmax(models):
    model, processor = models["llava"]
    exs = examples()
    tok = processor.tokenizer
    probs = answer_probs(model, processor, exs, {"yes": ["yes", "Yes"], "no": ["no"]}, batch_size=2)
    for e, p in zip(exs, probs):
        inputs = build_inputs(processor, [e], for_generation=True)
        with torch.no_grad():
            ref = model(**inputs).logits[0, -1].softmax(-1)
        # "Yes" lower-cases to "yes": one token, counted once
        assert p["yes"] == pytest.approx(float(ref[tok.convert_tokens_to_ids("yes")]), rel=1e-4)
        assert p["no"] == pytest.approx(float(ref[tok.convert_tokens_to_ids("no")]), rel=1e-4)
    with pytest.raises(MMAlignError, match="single token"):
        answer_probs(model, processor, exs, {"x": ["red circle", "zzz"]})


def test_self_annotate_drops_unfinished_samples(stopping):
    model, processor = stopping
    exs = [{**e, "task": "caption", "meta": {"objects": ["circle"]}} for e in examples()]
    sampling = SamplingConfig(n=4, max_new_tokens=6, batch_size=5)
    records, report = self_annotate(model, processor, exs, make_scorer("oracle"), sampling=sampling, min_margin=1)
    out = sample_responses(model, processor, exs, n=4, temperature=1.0, max_new_tokens=6, desc=None)
    assert report["samples"] == 12 and report["truncated_samples"] == sum(not s for r in out.stopped for s in r) > 0
    finished = {t for texts, stops in zip(out.texts, out.stopped) for t, s in zip(texts, stops) if s}
    assert all({r.chosen, r.rejected} <= finished and r.meta["sampling"]["n"] == 4 for r in records)


def test_sampled_base_model_captions_give_oracle_pairs(base):
    model, processor = base
    world = WorldConfig()
    exs = [make_example(world, "caption", "train", i) for i in range(8)]
    sampling = SamplingConfig(n=4, temperature=1.0, max_new_tokens=40)
    records, report = self_annotate(model, processor, exs, make_scorer("oracle"), sampling=sampling, min_margin=1)
    assert report["truncated_samples"] == 0                             # every caption ends with the end of turn
    assert report["pairs"] >= 1 and report["prompts"] == 8
    assert report["prompts_with_pairs"] + sum(report[k] for k in ("identical_samples", "too_few_scored", "all_tied",
                                                                  "below_margin")) == 8
    for r in records:
        assert r.reward_margin >= 1 and r.scores["chosen"] - r.scores["rejected"] == r.reward_margin
        for side in ("chosen", "rejected"):
            d = r.meta[f"{side}_details"]
            assert r.scores[side] == len(d["covered"]) - d["n_hallucinated_mentions"]

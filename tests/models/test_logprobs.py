"""``preference_logps`` against plain per-example forwards, for each tiny family (LLaVA, Qwen2-VL, Idefics3).

The reference values here never go through ``collate_preference``, ``token_logps`` or ``reduce``: each (images, prompt,
response) is processed alone (no padding), run through the model alone, and its log-probs are read off a
``log_softmax`` by hand at the response positions (response tokens + the closing end-of-turn token).
"""
from __future__ import annotations

import pytest
import torch

from mmalign.data.collate import collate_preference
from mmalign.data.preference import PreferenceRecord
from mmalign.models.inputs import prompt_text
from mmalign.models.logprobs import preference_logps

from .conftest import random_image

TOL = dict(rtol=1e-5, atol=1e-5)
GAMMA = 5.0
VIEWS = ("chosen", "rejected", "chosen_corrupt", "kl")


def records() -> list[PreferenceRecord]:
    """Three pairs of different lengths (so the batch pads), one with two images, spans on some responses."""
    return [
        PreferenceRecord(id="r0", prompt="describe the image .", images=[random_image(0)],
                         chosen="a red circle and a blue star .", rejected="a red circle .",
                         corrupt_images=[random_image(10)], chosen_spans=[[2, 12]], rejected_spans=[[0, 1]]),
        PreferenceRecord(id="r1", prompt="is there a star in the image ?", images=[random_image(1)],
                         chosen="no", rejected="yes", corrupt_images=[random_image(11)]),
        PreferenceRecord(id="r2", prompt="which image has more shapes ?", images=[random_image(2), random_image(3)],
                         chosen="the first image has a green square and a yellow triangle .", rejected="the second",
                         corrupt_images=[random_image(12), random_image(13)], rejected_spans=[[4, 10]]),
    ]


def plain(model, processor, images, prompt, response):
    """One example alone: ``(log_softmax rows predicting each response token, the response token ids)``."""
    eot = processor.tokenizer.eos_token
    ptext = prompt_text(processor, {"images": images, "prompt": prompt})
    full = processor(images=[images], text=[ptext + response + eot], return_tensors="pt")
    n_prompt = len(processor(images=[images], text=[ptext])["input_ids"][0])
    with torch.no_grad():
        logits = model(**full).logits[0].float()
    ids = full["input_ids"][0]
    positions = torch.arange(n_prompt, len(ids))          # the labelled tokens: response + end-of-turn
    return torch.log_softmax(logits[positions - 1], -1), ids[positions]


def plain_sum(model, processor, images, prompt, response) -> tuple[float, int]:
    logp, target = plain(model, processor, images, prompt, response)
    return float(logp.gather(1, target[:, None]).sum()), len(target)



@pytest.fixture
def scored(family):
    name, model, processor = family
    recs = records()
    batch = collate_preference(processor, recs, VIEWS, token_weight_gamma=GAMMA)
    with torch.no_grad():
        out = preference_logps(model, batch, noise=True)
    return model, processor, recs, batch, out


def test_views_equal_plain_forwards(scored):
    model, processor, recs, _, out = scored
    partners = recs[1:] + recs[:1]                          # kl: the next record's chosen answer
    expect = {
        "chosen": [(r.images, r.prompt, r.chosen) for r in recs],
        "rejected": [(r.images, r.prompt, r.rejected) for r in recs],
        "chosen_corrupt": [(r.corrupt_images, r.prompt, r.chosen) for r in recs],
        "kl": [(r.images, r.prompt, p.chosen) for r, p in zip(recs, partners)],
    }
    for view, examples in expect.items():
        sums, counts = zip(*(plain_sum(model, processor, *ex) for ex in examples))
        seq = getattr(out, view)
        torch.testing.assert_close(seq.sum, torch.tensor(sums), **TOL, msg=f"view {view}")
        assert seq.count.tolist() == list(counts), view


def test_counts_are_response_tokens_plus_end_of_turn(scored):
    _, processor, recs, batch, out = scored
    tok = processor.tokenizer
    for view, texts in (("chosen", [r.chosen for r in recs]), ("rejected", [r.rejected for r in recs])):
        n = [len(tok(t, add_special_tokens=False)["input_ids"]) + 1 for t in texts]
        assert getattr(out, view).count.tolist() == n
        labels = batch.labels[batch.views[view]]
        last = [row[row != -100][-1].item() for row in labels]
        assert last == [tok.eos_token_id] * len(recs)       # the closing end-of-turn token is scored


def test_corrupt_view_without_end_of_turn(scored):
    """corrupt_eot=False: the chosen_corrupt sums drop exactly the end-of-turn term; other views are untouched."""
    model, processor, recs, _, out = scored
    batch = collate_preference(processor, recs, VIEWS, token_weight_gamma=GAMMA, corrupt_eot=False)
    with torch.no_grad():
        cut = preference_logps(model, batch)
    for r, got, count in zip(recs, cut.chosen_corrupt.sum, cut.chosen_corrupt.count):
        logp, target = plain(model, processor, r.corrupt_images, r.prompt, r.chosen)
        assert target[-1].item() == processor.tokenizer.eos_token_id
        expect = float(logp.gather(1, target[:, None])[:-1].sum())
        torch.testing.assert_close(got, torch.tensor(expect), **TOL)
        assert count.item() == len(target) - 1
    for view in ("chosen", "rejected", "kl"):
        torch.testing.assert_close(getattr(cut, view).sum, getattr(out, view).sum, **TOL)


def test_token_weights_match_a_hand_computation(scored):
    model, processor, recs, _, out = scored
    tok = processor.tokenizer
    for view in ("chosen", "rejected"):
        weighted, weight_sum = [], []
        for r in recs:
            text, spans = (r.chosen, r.chosen_spans) if view == "chosen" else (r.rejected, r.rejected_spans)
            logp, target = plain(model, processor, r.images, r.prompt, text)
            token_lp = logp.gather(1, target[:, None]).squeeze(1)
            offsets = tok(text, add_special_tokens=False, return_offsets_mapping=True)["offset_mapping"]
            w = [GAMMA if any(a < e and s < b for s, e in spans or ()) else 1.0 for a, b in offsets] + [1.0]
            weighted.append(float((torch.tensor(w) * token_lp).sum()))
            weight_sum.append(sum(w))
        seq = getattr(out, view)
        torch.testing.assert_close(seq.weighted, torch.tensor(weighted), **TOL)
        torch.testing.assert_close(seq.weight_sum, torch.tensor(weight_sum))
    # the spans were non-trivial: r0's chosen "red circle" gets gamma on two tokens
    assert out.chosen.weight_sum[0].item() == out.chosen.count[0].item() + 2 * (GAMMA - 1)
    assert out.chosen_corrupt.weighted is not None          # other views carry weight 1 everywhere
    torch.testing.assert_close(out.chosen_corrupt.weighted, out.chosen_corrupt.sum)


def test_noise_view_is_the_argmax_construction(scored):
    """y_noise: the argmax tokens of y_w teacher-forced on I', scored under the clean-image y_w logits."""
    model, processor, recs, _, out = scored
    sums = []
    for r in recs:
        corrupt_logp, target = plain(model, processor, r.corrupt_images, r.prompt, r.chosen)
        y_noise = corrupt_logp.argmax(-1)
        assert not torch.equal(y_noise, target)             # it is not y_w itself
        clean_logp, _ = plain(model, processor, r.images, r.prompt, r.chosen)
        sums.append(float(clean_logp.gather(1, y_noise[:, None]).sum()))
    torch.testing.assert_close(out.noise.sum, torch.tensor(sums), **TOL)
    assert out.noise.count.tolist() == out.chosen.count.tolist()


def test_chosen_nll_is_minus_token_mean(scored):
    *_, out = scored
    torch.testing.assert_close(out.chosen_nll, -out.chosen.sum / out.chosen.count)
    assert out.rejected is not None and out.kl is not None


def test_gradient_flows_to_the_clean_logits_only(family):
    """The noise view's tokens are argmax ids (no gradient); its log-probs differentiate through the clean rows."""
    _, model, processor = family
    batch = collate_preference(processor, records()[:2], ("chosen", "rejected", "chosen_corrupt"))
    out = preference_logps(model, batch, noise=True)
    assert out.noise.sum.requires_grad and out.chosen.sum.requires_grad

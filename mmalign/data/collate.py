"""Preference records -> one padded batch of *views*, each view a (images, response) pairing of every record.

| view | images | response | used by |
|---|---|---|---|
| ``chosen`` | I | y_w | every loss |
| ``rejected`` | I | y_l | every paired loss |
| ``chosen_corrupt`` | I' | y_w (``corrupt_eot=False``: without its end-of-turn token) | mDPO / Image-DPO's image term; POVID's y_noise (argmax under I') |
| ``kl`` | I | y_w of the next record | KTO's mismatched reference point |

Audio clips A follow the images: every view carries the record's clips, and ``chosen_corrupt`` its corrupted clips
A' (silence or a wrong clip) where it has them, so the mDPO-style conditional term contrasts the audio as it does
the image; a record may corrupt either modality or both.

All views go through ``build_inputs`` in one call, so the model runs once over ``n_views * B`` rows (the
concatenated forward). A packed prefix-shared path can produce the same ``PreferenceBatch`` fields.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from mmalign.data.preference import spans_to_token_weights
from mmalign.errors import MMAlignError
from mmalign.models.inputs import IGNORE_INDEX, build_inputs


@dataclass
class PreferenceBatch:
    inputs: dict                    # model kwargs for all rows (labels removed)
    labels: torch.Tensor            # (rows, T), -100 outside responses
    views: dict[str, slice]         # view name -> its rows
    token_weights: torch.Tensor | None   # (rows, T) aligned with labels, or None
    ids: list[str]
    reward_margin: torch.Tensor | None   # (B,) when every record has one

    def to(self, device) -> PreferenceBatch:
        move = (lambda v: v.to(device) if isinstance(v, torch.Tensor) else v)
        return PreferenceBatch({k: move(v) for k, v in self.inputs.items()}, move(self.labels), self.views,
                               move(self.token_weights), self.ids, move(self.reward_margin))


def view_examples(records: list, view: str, kl_partners: list | None = None) -> list[dict]:
    """The examples of one view; ``kl_partners[i]`` lends its chosen answer to record i's ``kl`` view (default:
    the next record in the batch, as TRL does; the trainer passes fixed dataset-level partners so that cached
    reference values stay valid whatever the batch)."""
    if view == "chosen":
        return [_example(r, r.chosen) for r in records]
    if view == "rejected":
        return [_example(r, r.rejected) for r in records]
    if view == "chosen_corrupt":
        missing = [r.id for r in records if not (r.corrupt_images or r.corrupt_audios)]
        if missing:
            raise MMAlignError(f"records {missing[:5]} have no corrupt_images or corrupt_audios, which this loss needs")
        return [_example(r, r.chosen, corrupt=True) for r in records]
    if view == "kl":
        partners = kl_partners or records[1:] + records[:1]
        return [_example(r, p.chosen) for r, p in zip(records, partners)]
    raise ValueError(f"unknown view {view}")


def _example(r, response: str, corrupt: bool = False) -> dict:
    """One ``build_inputs`` example of record ``r``; ``corrupt``: its I' and A' where it has them."""
    images = r.corrupt_images or r.images if corrupt else r.images
    audios = r.corrupt_audios or r.audios if corrupt else r.audios
    ex = dict(images=images, prompt=r.prompt, response=response)
    return ex | {"audios": audios, "sampling_rate": r.sampling_rate} if audios else ex


def response_token_weights(tokenizer, text: str, spans: list | None, gamma: float, n_labels: int) -> list[float]:
    """DDPO weights for the labelled tokens of one response: ``gamma`` on tokens that overlap a corrected
    span (character offsets), 1 elsewhere and on the closing end-of-turn token."""
    enc = tokenizer(text, return_offsets_mapping=True, add_special_tokens=False)
    weights = spans_to_token_weights(enc["offset_mapping"], spans, gamma)
    if len(weights) + 1 != n_labels:
        raise MMAlignError(f"response tokenises to {len(weights)} tokens alone but {n_labels - 1} in context; "
                           "token weights cannot be aligned")
    return weights + [1.0]


def collate_preference(processor, records: list, views: tuple[str, ...] = ("chosen", "rejected"), *,
                       token_weight_gamma: float | None = None, max_length: int | None = None,
                       kl_partners: list | None = None, corrupt_eot: bool = True) -> PreferenceBatch:
    """``corrupt_eot=False`` leaves the closing end-of-turn token of the ``chosen_corrupt`` rows out of their
    sums. Whether the answer is over does not depend on the image, but an image-conditional term pushing
    log pi(y_w | I') down lowers it along with the content: on the lab, mDPO with it made ~1% of captions run on
    past the final "." with a string of stray objects (docs/alignment.md)."""
    examples, slices = [], {}
    for v in views:
        rows = view_examples(records, v, kl_partners)
        slices[v] = slice(len(examples), len(examples) + len(rows))
        examples += rows
    inputs = dict(build_inputs(processor, examples, max_length=max_length))
    labels = inputs.pop("labels")
    if not corrupt_eot and "chosen_corrupt" in slices:
        rows = torch.arange(slices["chosen_corrupt"].start, slices["chosen_corrupt"].stop)
        last = (labels[rows] != IGNORE_INDEX).long().cumsum(1).argmax(1)  # each row's last labelled position
        labels[rows, last] = IGNORE_INDEX
    weights = None
    if token_weight_gamma is not None:
        weights = torch.ones(labels.shape, dtype=torch.float32)
        for v in ("chosen", "rejected"):
            for j, r in enumerate(records):
                row = slices[v].start + j
                pos = (labels[row] != IGNORE_INDEX).nonzero().squeeze(1)
                text, spans = (r.chosen, r.chosen_spans) if v == "chosen" else (r.rejected, r.rejected_spans)
                w = response_token_weights(processor.tokenizer, text, spans, token_weight_gamma, len(pos))
                weights[row, pos] = torch.tensor(w)
    margins = [r.reward_margin for r in records]
    margin = torch.tensor(margins, dtype=torch.float32) if all(m is not None for m in margins) else None
    return PreferenceBatch(inputs, labels, slices, weights, [r.id for r in records], margin)

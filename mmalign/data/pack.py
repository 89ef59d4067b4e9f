"""Preference records (and RL groups) -> prefix-shared packed rows ``[images + prompt | y_w | y_l | ...]``, one
row per prefix.

The chosen and rejected answers (and KTO's mismatched ``kl`` answer) follow the same images and prompt, and the image
tokens dominate a multimodal sequence. The concatenated batch (``collate.py``) repeats that prefix, vision encoder
included, once per view; here it is processed once per record and the answers follow it as *branches*:

    row:       [ I + x  | y_w       | y_l       | y'      | pad ]
    branch:    [ 0 ...0 | 1 ...   1 | 2 ...   2 | 3 ... 3 | -1  ]
    positions: [ 0..p-1 | p..p+|y_w|| p..p+|y_l|| p..     | 0   ]   (each branch as if it followed the prefix alone)

The model's attention mask is built from ``branch`` (``mmalign.models.packed``): causal, and a branch sees the
prefix and itself only. mDPO's and POVID's ``chosen_corrupt`` view has another image, so it is a second prefix,
``[I' + x | y_w]``, in rows of its own in the same batch.

Token ids equal ``build_inputs``'s: the prefix goes through the processor (image tokens expanded, pixels
processed once), and an answer's ids are what ``prompt + answer + end-of-turn`` adds to the prompt's under the
tokenizer alone, which is valid because image tokens are special tokens the tokenizer never merges across.

RL groups (``pack_responses``) use the same rows with any number of branches: the G sampled completions of a prompt,
``[I + x | y_1 | ... | y_G]``, their ids as sampled (no tokenizer round trip), as ``rollout.teacher_forced_inputs``
places them after the prompt.
"""
from __future__ import annotations

from dataclasses import dataclass, fields

import torch

from mmalign.data.collate import response_token_weights, view_examples
from mmalign.errors import MMAlignError
from mmalign.models.inputs import IGNORE_INDEX, TOKEN_KEYS, prompt_text

# Views that share a prefix, in row order: (I, x) and (I', x). A view's branch number is its place in its group.
PREFIX_GROUPS = (("chosen", "rejected", "kl"), ("chosen_corrupt",))


@dataclass
class PackedBatch:
    """Packed rows and where each view's tokens are; every per-token tensor is ``(rows, L)``.

    inputs:        model kwargs: ``input_ids``, the processor's per-image tensors and, for Qwen2-VL,
                   ``mm_token_type_ids``. No attention mask: the model builds it from ``branch`` in its own dtype.
    branch:        0 on the prefix, k on the k-th answer, -1 on padding.
    positions:     1-D positions; M-RoPE models turn them into 3-D ones (``models.packed.position_ids``).
    labels:        the token scored at each position, -100 where nothing is.
    source:        the position whose logits predict that token: t-1 inside a branch, the prefix's last position
                   for a branch's first token.
    views:         view name -> (its rows, its branch number).
    token_weights: DDPO weights aligned with ``labels`` (1 outside the chosen and rejected answers), or None.
    """

    inputs: dict
    branch: torch.Tensor
    positions: torch.Tensor
    labels: torch.Tensor
    source: torch.Tensor
    views: dict[str, tuple[slice, int]]
    token_weights: torch.Tensor | None
    ids: list[str]
    reward_margin: torch.Tensor | None

    def to(self, device) -> PackedBatch:
        return PackedBatch(**{f.name: _move(getattr(self, f.name), device) for f in fields(self)})


def _move(value, device):
    if isinstance(value, dict):
        return {k: _move(v, device) for k, v in value.items()}
    return value.to(device) if isinstance(value, torch.Tensor) else value


def answer_ids(tokenizer, prompt: str, answers: list[str]) -> list[list[int]]:
    """The ids each ``answer + end-of-turn`` adds after ``prompt`` (both tokenised together, as ``build_inputs``
    does, so a merge across the boundary is caught instead of silently changing the tokens)."""
    head, *fulls = tokenizer([prompt] + [prompt + a + tokenizer.eos_token for a in answers])["input_ids"]
    for full in fulls:
        if full[:len(head)] != head:
            raise MMAlignError("the prompt's tokens are not a prefix of prompt + response "
                               "(the tokenizer merges across the boundary)")
    return [full[len(head):] for full in fulls]


def _row(prefix: list[int], answers: list[list[int]]) -> dict[str, list[int]]:
    """One packed row (unpadded) from its prefix ids and its answers' ids."""
    p = len(prefix)
    row = {"input_ids": list(prefix), "branch": [0] * p, "positions": list(range(p)), "labels": [IGNORE_INDEX] * p,
           "source": [0] * p}
    for b, ids in enumerate(answers, 1):
        start = len(row["input_ids"])
        row["input_ids"] += ids
        row["branch"] += [b] * len(ids)
        row["positions"] += range(p, p + len(ids))
        row["labels"] += ids
        row["source"] += ([p - 1] + list(range(start, start + len(ids) - 1)))[:len(ids)]
    return row


def _pad(rows: list[list[int]], value: int, width: int) -> torch.Tensor:
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def _truncate(answers: list[list[int]], p: int, max_length: int | None, rid: str) -> list[list[int]]:
    """``build_inputs``'s truncation, per branch: each answer keeps what fits after the prefix."""
    if max_length is None:
        return answers
    if p + 1 > max_length:
        raise MMAlignError(f"record {rid}: its prompt alone is {p} tokens (image tokens included); "
                           f"max_length={max_length} would cut image tokens or leave no response")
    return [a[:max_length - p] for a in answers]


def _groups(views: tuple[str, ...]) -> list[tuple[str, ...]]:
    unknown = set(views) - {v for g in PREFIX_GROUPS for v in g}
    if unknown:
        raise ValueError(f"unknown views {sorted(unknown)}")
    return [g for g in (tuple(v for v in group if v in views) for group in PREFIX_GROUPS) if g]


def _layout(records: list, views: tuple[str, ...], kl_partners: list | None) -> tuple[list, list, dict]:
    """Row order: every record's first prefix group, then every record's second. Returns each row's prefix example,
    each row's answers (one per view of its group) and view -> (its rows, its branch number)."""
    prefixes, responses, views_at = [], [], {}
    for group in _groups(views):
        per_view = {v: view_examples(records, v, kl_partners) for v in group}
        views_at |= {v: (slice(len(prefixes), len(prefixes) + len(records)), b) for b, v in enumerate(group, 1)}
        prefixes += per_view[group[0]]
        responses += [[per_view[v][i]["response"] for v in group] for i in range(len(records))]
    return prefixes, responses, views_at


def collate_packed(processor, records: list, views: tuple[str, ...] = ("chosen", "rejected"), *,
                   token_weight_gamma: float | None = None, max_length: int | None = None,
                   kl_partners: list | None = None, corrupt_eot: bool = True) -> PackedBatch:
    """``collate_preference``'s arguments and meaning, packed: one row per (record, prefix group). Images only:
    audio records are refused (Qwen2-Audio's forward takes no ``logits_to_keep``, which ``packed_output`` needs)."""
    if audio := [r.id for r in records if r.audios]:
        raise MMAlignError(f"records {audio[:5]} have audio clips: the packed path handles images only; "
                           "set data.packed=false")
    prefixes, responses, views_at = _layout(records, views, kl_partners)
    prompts = [prompt_text(processor, ex) for ex in prefixes]
    enc, plen = _encode(processor, prefixes, prompts)
    rows = []
    for j, (prompt, texts) in enumerate(zip(prompts, responses)):
        answers = answer_ids(processor.tokenizer, prompt, texts)
        answers = _truncate(answers, plen[j], max_length, records[j % len(records)].id)
        rows.append(_row(enc["input_ids"][j, :plen[j]].tolist(), answers))
    if not corrupt_eot and "chosen_corrupt" in views_at:
        _unscore_last(rows, *views_at["chosen_corrupt"])
    inputs, cols = _assemble(processor, enc, plen, rows)
    weights = None
    if token_weight_gamma is not None:
        weights = _token_weights(processor.tokenizer, records, rows, views_at, token_weight_gamma,
                                 cols["labels"].shape[1])
    margins = [r.reward_margin for r in records]
    margin = torch.tensor(margins, dtype=torch.float32) if all(m is not None for m in margins) else None
    return PackedBatch(inputs, cols["branch"], cols["positions"], cols["labels"], cols["source"], views_at, weights,
                       [r.id for r in records], margin)


def _encode(processor, prefixes: list[dict], prompts: list[str]) -> tuple[dict, list[int]]:
    """The prefixes through the processor (images once each), right-padded, and each one's length."""
    images = [list(ex["images"]) for ex in prefixes]
    enc = processor(images=images if any(images) else None, text=prompts, padding=True, padding_side="right",
                    return_tensors="pt")
    return enc, enc["attention_mask"].sum(1).tolist()


def _assemble(processor, enc, plen: list[int], rows: list[dict]) -> tuple[dict, dict[str, torch.Tensor]]:
    """Padded rows -> the model kwargs (the processor's image tensors, the packed ``input_ids``, for Qwen2-VL
    ``mm_token_type_ids``) and the padded per-token columns."""
    width = max(len(r["input_ids"]) for r in rows)
    fill = {"input_ids": processor.tokenizer.pad_token_id, "branch": -1, "positions": 0, "labels": IGNORE_INDEX,
            "source": 0}
    cols = {k: _pad([r[k] for r in rows], v, width) for k, v in fill.items()}
    inputs = {k: v for k, v in enc.items() if k not in TOKEN_KEYS} | {"input_ids": cols["input_ids"]}
    if "mm_token_type_ids" in enc:                    # the answers are text (type 0)
        inputs["mm_token_type_ids"] = _pad([enc["mm_token_type_ids"][j, :n].tolist() for j, n in enumerate(plen)],
                                           0, width)
    return inputs, cols


def _unscore_last(rows: list[dict], where: slice, b: int) -> None:
    """``corrupt_eot=False``: the branch's last kept token (the end-of-turn unless truncated) is not scored."""
    for row in rows[where]:
        last = max(t for t, x in enumerate(row["branch"]) if x == b)
        row["labels"][last] = IGNORE_INDEX


def _token_weights(tokenizer, records: list, rows: list[dict], views_at: dict, gamma: float,
                   width: int) -> torch.Tensor:
    """DDPO weights on the chosen and rejected branches, 1 everywhere else (as ``collate_preference``)."""
    weights = torch.ones(len(rows), width)
    for v in ("chosen", "rejected"):
        if v not in views_at:
            continue
        where, b = views_at[v]
        for j, r in enumerate(records):
            row = rows[where.start + j]
            pos = [t for t, (x, y) in enumerate(zip(row["branch"], row["labels"])) if x == b and y != IGNORE_INDEX]
            text, spans = (r.chosen, r.chosen_spans) if v == "chosen" else (r.rejected, r.rejected_spans)
            weights[where.start + j, pos] = torch.tensor(response_token_weights(tokenizer, text, spans, gamma,
                                                                                len(pos)))
    return weights


# ---- RL groups ---------------------------------------------------------------------------------------------------

@dataclass
class PackedResponses:
    """Responses ``(B, T)`` packed by prefix: ``batch`` (no views), and where response ``i``'s token ``j`` sits in
    it: row ``row[i]``, column ``column[i, j]`` (0 past the response's end)."""

    batch: PackedBatch
    row: torch.Tensor
    column: torch.Tensor

    def to(self, device) -> PackedResponses:
        return PackedResponses(self.batch.to(device), self.row.to(device), self.column.to(device))


def prefix_key(prompt: str, example: dict) -> tuple:
    """Rows with the same key have the same prefix: the same prompt text and the very same image objects (a
    rollout repeats each example's images G times; equal images in other objects are merely not shared)."""
    return prompt, tuple(map(id, example["images"]))


def pack_responses(processor, examples: list[dict], response_ids: torch.Tensor, mask: torch.Tensor) -> PackedResponses:
    """``[I + x | y_1 | ... | y_k]``: row ``i``'s response (its first ``mask[i].sum()`` ids, as in a ``Rollout``)
    behind one copy of its prefix, shared by every row with the same ``prefix_key``. Packed rows and their branches
    follow the order of first appearance, so a whole group, part of one and a row alone all work."""
    prompts = [prompt_text(processor, ex) for ex in examples]
    slot, heads, row = {}, [], []
    for i, (prompt, ex) in enumerate(zip(prompts, examples)):
        key = prefix_key(prompt, ex)
        if key not in slot:
            slot[key] = len(heads)
            heads.append(i)
        row.append(slot[key])
    enc, plen = _encode(processor, [examples[i] for i in heads], [prompts[i] for i in heads])
    lengths = mask.sum(1).tolist()
    rows, offset = [], [0] * len(examples)
    for r in range(len(heads)):
        group = [i for i, x in enumerate(row) if x == r]
        answers = [response_ids[i, :lengths[i]].tolist() for i in group]
        rows.append(_row(enc["input_ids"][r, :plen[r]].tolist(), answers))
        at = plen[r]
        for i in group:                                  # where each branch starts
            offset[i], at = at, at + lengths[i]
    inputs, cols = _assemble(processor, enc, plen, rows)
    batch = PackedBatch(inputs, cols["branch"], cols["positions"], cols["labels"], cols["source"], {}, None,
                        [str(examples[i].get("id", "")) for i in heads], None)
    column = (torch.tensor(offset)[:, None] + torch.arange(mask.shape[1])[None]) * mask
    return PackedResponses(batch, torch.tensor(row), column)

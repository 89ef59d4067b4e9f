"""The prefix-shared forward: a ``PackedBatch`` (``mmalign.data.pack``) -> the same ``PreferenceLogps`` as
``preference_logps`` on the concatenated batch, with the images and the prompt run once per pair; and, through
``packed_output``, the same per-token outputs as ``rl.rollout.response_forward``'s plain rows for an RL group.

Three things make one packed row score each answer exactly as if it followed the prompt alone:

* a 4-D **float additive** mask (0 where allowed, the dtype's minimum elsewhere): causal, and a branch sees only the
  prefix and itself. Float, not bool: the eager attention *adds* the mask, so a bool one is silently wrong there
  (FEASIBILITY.md §5); sdpa keeps its fused CPU kernel with it (PREFIX-BENCH.md). Flash-attention and flex ignore
  or mishandle a dense 4-D mask, so they are refused.
* **per-branch position ids**: each branch restarts where the prefix ends; for M-RoPE models (Qwen2-VL) the
  prefix gets the model's own 3-D ``get_rope_index`` positions and each branch continues from their maximum + 1,
  as the model does for a single sequence.
* **the right logits**: a branch's first token is predicted from the prefix's last position, not from the end of
  the previous branch (``PackedBatch.source``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmalign.data.pack import PackedBatch
from mmalign.errors import MMAlignError
from mmalign.models.load import _base
from mmalign.models.logprobs import IGNORE, reduce
from mmalign.types import PreferenceLogps, SeqLogps

MASKED_ATTENTION = ("sdpa", "eager")   # implementations that apply a dense 4-D additive mask as given


def block_mask(branch: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """``(rows, 1, L, L)`` additive mask: query t sees key s <= t when s is on the prefix or on t's own branch.

    Padding (branch -1) forms a branch of its own, so no query row is fully masked."""
    q, k = branch[:, :, None], branch[:, None, :]
    causal = torch.ones(branch.shape[1], branch.shape[1], dtype=torch.bool, device=branch.device).tril()
    allowed = causal & ((k == 0) | (k == q))
    return torch.zeros(allowed.shape, dtype=dtype, device=branch.device).masked_fill(
        ~allowed, torch.finfo(dtype).min)[:, None]


def _inner(model):
    """``_base``, also through ``rl.value.ActorCritic`` (a module that holds the model as ``policy``)."""
    base = _base(model)
    policy = getattr(base, "policy", None)
    return _base(policy) if isinstance(policy, torch.nn.Module) else base


def uses_mrope(model) -> bool:
    return "mrope_section" in (_inner(model).config.get_text_config().rope_parameters or {})


def position_ids(model, batch: PackedBatch) -> torch.Tensor:
    """``(rows, L)`` positions, or ``(3, rows, L)`` for M-RoPE: the prefix's from ``get_rope_index`` on the prefix
    alone, each branch continuing from the prefix's largest position + 1 (``delta = max + 1 - p``)."""
    if not uses_mrope(model):
        return batch.positions
    prefix = batch.branch == 0
    width = int(prefix.sum(1).max())
    rope, delta = _inner(model).model.get_rope_index(
        batch.inputs["input_ids"][:, :width], mm_token_type_ids=batch.inputs["mm_token_type_ids"][:, :width],
        image_grid_thw=batch.inputs.get("image_grid_thw"), attention_mask=prefix[:, :width].long())
    pos = (batch.positions + delta.view(-1, 1))[None].expand(3, -1, -1).clone()
    pos[:, :, :width] = torch.where(prefix[None, :, :width], rope, pos[:, :, :width])
    return pos


def _check_attention(model) -> None:
    impl = _inner(model).config.get_text_config()._attn_implementation
    if impl not in MASKED_ATTENTION:
        raise MMAlignError(f"packed log-probs need a dense 4-D attention mask, which attn_implementation={impl!r} "
                           f"does not apply; use one of {', '.join(MASKED_ATTENTION)} or data.packed=false")


def _logps_at(logits: torch.Tensor, rows: torch.Tensor, cols: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """log p(target) under the logits at (rows, cols), each ``(N,)``; one fused cross-entropy."""
    return -F.cross_entropy(logits[rows, cols].float(), targets, reduction="none")


def packed_output(model, batch: PackedBatch) -> tuple[object, int]:
    """One forward over the packed rows -> ``(the model's output, start)``: its logits only from position ``start``
    on (the shortest prefix's last position, the first one that predicts a scored token), ``(rows, L - start, V)``;
    other per-position outputs (``ActorCritic``'s ``values``) at every position."""
    _check_attention(model)
    start = int((batch.branch == 0).sum(1).min()) - 1
    dtype = _inner(model).get_input_embeddings().weight.dtype
    out = model(**batch.inputs, attention_mask=block_mask(batch.branch, dtype),
                position_ids=position_ids(model, batch), logits_to_keep=batch.labels.shape[1] - start)
    return out, start


def packed_forward(model, batch: PackedBatch) -> tuple[torch.Tensor, int]:
    """``packed_output``'s ``(logits, start)``."""
    out, start = packed_output(model, batch)
    return out.logits, start


def packed_token_logps(logits: torch.Tensor, start: int, batch: PackedBatch) -> torch.Tensor:
    """``(rows, L)`` log p(label) at every scored position (each read off its ``source`` logits), 0 elsewhere."""
    rows, cols = (batch.labels != IGNORE).nonzero(as_tuple=True)
    return scatter(batch.labels.shape, rows, cols,
                   _logps_at(logits, rows, batch.source[rows, cols] - start, batch.labels[rows, cols]))


def view_mask(batch: PackedBatch, name: str) -> torch.Tensor:
    """The scored positions of one view within its rows, ``(B, L)``."""
    where, b = batch.views[name]
    return (batch.labels[where] != IGNORE) & (batch.branch[where] == b)


def packed_logps(model, batch: PackedBatch, *, noise: bool = False) -> PreferenceLogps:
    """``preference_logps`` for a packed batch: every view from one forward.

    ``noise``: POVID's y_noise, the argmax tokens of the ``chosen_corrupt`` branch, scored under the chosen branch's
    logits (the argmax carries no gradient, the clean logits do)."""
    logits, start = packed_forward(model, batch)
    logp = packed_token_logps(logits, start, batch)

    def view(name: str) -> SeqLogps | None:
        if name not in batch.views:
            return None
        where, m = batch.views[name][0], view_mask(batch, name)
        return reduce(logp[where] * m, m, None if batch.token_weights is None else batch.token_weights[where])

    chosen = view("chosen")
    return PreferenceLogps(chosen=chosen, rejected=view("rejected"), chosen_corrupt=view("chosen_corrupt"),
                           noise=_noise(logits, start, batch) if noise else None,
                           chosen_nll=-chosen.sum / chosen.count.clamp_min(1), kl=view("kl"))


def scatter(shape, rows: torch.Tensor, cols: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
    """``values`` ``(N,)`` at ``(rows, cols)`` of a zero tensor of ``shape`` (differentiable)."""
    return torch.zeros(shape, dtype=values.dtype, device=values.device).index_put((rows, cols), values)


def _noise(logits: torch.Tensor, start: int, batch: PackedBatch) -> SeqLogps:
    """y_noise scored under the clean image: the corrupt branch's argmax at each y_w token, read off the clean
    branch's logits at the same token. Both branches must hold the same scored tokens."""
    (c, _), (k, _) = batch.views["chosen"], batch.views["chosen_corrupt"]
    clean, corrupt = view_mask(batch, "chosen"), view_mask(batch, "chosen_corrupt")
    if not (torch.equal(clean.sum(1), corrupt.sum(1)) and torch.equal(batch.labels[c][clean], batch.labels[k][corrupt])):
        raise ValueError("chosen and chosen_corrupt branches must score the same tokens (POVID's y_noise)")
    rc, tc = clean.nonzero(as_tuple=True)
    rk, tk = corrupt.nonzero(as_tuple=True)
    argmax = logits[rk + k.start, batch.source[rk + k.start, tk] - start].detach().argmax(-1)
    lp = _logps_at(logits, rc + c.start, batch.source[rc + c.start, tc] - start, argmax)
    return reduce(scatter(clean.shape, rc, tc, lp), clean)

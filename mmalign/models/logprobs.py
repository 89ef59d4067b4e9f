"""The one place that turns logits into per-token log-probs and masks.

Convention: ``labels`` are aligned with ``input_ids`` (-100 where no loss is taken); token t is predicted from
position t-1, so the shift happens here and nowhere else.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = -100


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label) and the loss mask, both (B, T-1); masked positions hold 0.

    Uses ``cross_entropy`` (fused log-softmax + gather) so the (B, T, V) log-softmax is never materialised.
    """
    target = labels[:, 1:]
    mask = target != IGNORE
    logp = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target.masked_fill(~mask, 0), reduction="none")
    return logp * mask, mask


def weighted_nll(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Token-level NLL averaged over all response tokens in the batch, each example's tokens weighted by
    ``weights`` (B,): ``sum_i w_i sum_t -logp_it / sum_i w_i |y_i|``."""
    logp, mask = token_logps(logits, labels)
    w = mask.float() if weights is None else mask * weights[:, None].to(logp.dtype)
    return -(logp * w).sum() / w.sum().clamp_min(1e-8)

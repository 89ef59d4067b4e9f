"""The one place that turns logits into per-token log-probs and masks.

Convention: ``labels`` are aligned with ``input_ids`` (-100 where no loss is taken); token t is predicted from
position t-1, so the shift happens here and nowhere else.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmalign.types import PreferenceLogps, SeqLogps

IGNORE = -100


def token_logps(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-token log p(label) and the loss mask, both (B, T-1); masked positions hold 0.

    Uses ``cross_entropy`` (fused log-softmax + gather) so the (B, T, V) log-softmax is never materialised.
    """
    target = labels[:, 1:]
    mask = target != IGNORE
    logp = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target.masked_fill(~mask, 0), reduction="none")
    return logp * mask, mask


def token_weights(labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """(B, T-1) float weight of each predicted token in ``weighted_nll``: ``w_i`` on example i's response tokens, 0
    elsewhere. Its sum, ``sum_i w_i |y_i|``, is what the NLL is a mean over (the SFT loop's ``units``)."""
    mask = (labels[:, 1:] != IGNORE).float()
    return mask if weights is None else mask * weights[:, None].float()


def weighted_nll(logits: torch.Tensor, labels: torch.Tensor, weights: torch.Tensor | None = None) -> torch.Tensor:
    """Token-level NLL averaged over all response tokens in the batch, each example's tokens weighted by
    ``weights`` (B,): ``sum_i w_i sum_t -logp_it / sum_i w_i |y_i|``."""
    logp, _ = token_logps(logits, labels)
    w = token_weights(labels, weights).to(logp.device)
    return -(logp * w).sum() / w.sum().clamp_min(1e-8)


def reduce(logp: torch.Tensor, mask: torch.Tensor, weights: torch.Tensor | None = None) -> SeqLogps:
    """Per-row sums, counts and (with token weights aligned to the shifted labels) weighted sums."""
    if weights is None:
        return SeqLogps(logp.sum(-1), mask.sum(-1))
    w = weights * mask
    return SeqLogps(logp.sum(-1), mask.sum(-1), (logp * w).sum(-1), w.sum(-1))


def preference_logps(model, batch, *, noise: bool = False) -> PreferenceLogps:
    """One forward over every view of a ``PreferenceBatch`` -> ``PreferenceLogps``.

    ``noise``: POVID's y_noise — the argmax tokens of the (teacher-forced y_w, corrupted image) rows, scored
    under the clean-image chosen logits; the argmax carries no gradient, the clean logits do.
    """
    logits = model(**batch.inputs).logits
    logp, mask = token_logps(logits, batch.labels)
    w = batch.token_weights[:, 1:] if batch.token_weights is not None else None

    def view(name: str) -> SeqLogps | None:
        s = batch.views.get(name)
        return None if s is None else reduce(logp[s], mask[s], None if w is None else w[s])

    chosen = view("chosen")
    noise_logps = None
    if noise:
        c, k = batch.views["chosen"], batch.views["chosen_corrupt"]
        if not torch.equal(batch.labels[c], batch.labels[k]):
            raise ValueError("chosen and chosen_corrupt rows must align token for token (same image token count)")
        argmax = logits[k, :-1].detach().argmax(-1)
        target = torch.cat([batch.labels[c][:, :1], argmax.masked_fill(~mask[c], IGNORE)], dim=1)
        nlp, nmask = token_logps(logits[c], target)
        noise_logps = reduce(nlp, nmask)
    return PreferenceLogps(chosen=chosen, rejected=view("rejected"), chosen_corrupt=view("chosen_corrupt"),
                           noise=noise_logps, chosen_nll=-chosen.sum / chosen.count.clamp_min(1),
                           kl=view("kl"))

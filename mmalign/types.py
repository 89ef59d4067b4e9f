"""Shared tensor containers: reduced log-probs go into a loss, a per-example loss comes out.

Notation (the alignment spec, ALGORITHMS.md §1): ``l_t = log pi(y_t | I, x, y_<t)`` over response tokens only
(prompt, image and padding tokens are masked out), ``S(y) = sum_t l_t`` the summed log-prob, ``A(y) = S(y) / |y|``.
Every tensor below is per example, shape ``(B,)``, B = number of preference pairs in the batch.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch


@dataclass(frozen=True)
class SeqLogps:
    """Per-example reductions of one response's token log-probs, each ``(B,)``.

    sum:        ``S(y) = sum_t l_t``.
    count:      ``|y|``, the number of response tokens (integer or float tensor).
    weighted:   ``sum_t w_t l_t`` with the data's token weights (DDPO); None when the batch has no weights.
    weight_sum: ``sum_t w_t``; None when the batch has no weights.
    """

    sum: torch.Tensor
    count: torch.Tensor
    weighted: torch.Tensor | None = None
    weight_sum: torch.Tensor | None = None

    @property
    def mean(self) -> torch.Tensor:
        """``A(y) = S(y) / |y|``, the token-mean log-prob, ``(B,)``."""
        return self.sum / self.count

    @property
    def weighted_mean(self) -> torch.Tensor:
        """DDPO's score ``S~(y) = sum_t w_t l_t / sum_t w_t``, ``(B,)``."""
        return self.weighted / self.weight_sum


@dataclass(frozen=True)
class PreferenceLogps:
    """The views of a preference batch one model (policy or reference) scored. Views a loss does not need are None.

    chosen:         ``y_w`` given ``(I, x)``.
    rejected:       ``y_l`` given ``(I, x)``.
    chosen_corrupt: ``y_w`` given ``(I', x)``, the corrupted image (mDPO's conditional term, Image-DPO).
    noise:          POVID's ``y_noise`` (argmax tokens of ``y_w`` teacher-forced on ``I'``) scored under the clean
                    image ``I`` (ALGORITHMS §4.5).
    chosen_nll:     ``(B,)`` token-mean cross-entropy of ``y_w``, ``-A(y_w)``; policy only (ORPO, RPO, MM-DPO).
    kl:             KTO's mismatched completion ``y'``: another pair's chosen answer scored after this prompt; the
                    trainer turns it into the loss input ``kl_logratio = S_theta(y') - S_ref(y')``.
    """

    chosen: SeqLogps
    rejected: SeqLogps
    chosen_corrupt: SeqLogps | None = None
    noise: SeqLogps | None = None
    chosen_nll: torch.Tensor | None = None
    kl: SeqLogps | None = None


@dataclass(frozen=True)
class LossOutput:
    """loss: per-example loss ``(B,)``; the trainer averages it over the batch.
    metrics: detached ``(B,)`` or scalar tensors. DPO-style losses report ``chosen_reward`` and ``rejected_reward``
    (``beta * h``), ``margin`` (their difference) and ``accuracy`` (``1[r_w > r_l]``).
    """

    loss: torch.Tensor
    metrics: dict[str, torch.Tensor] = field(default_factory=dict)

"""The Bradley–Terry reward-model loss (ALGORITHMS.md §3.1; TRL ``RewardTrainer.compute_loss``).

Bradley–Terry models a human's choice as ``P(y_w > y_l | I, x) = sigma(r(y_w) - r(y_l))``; the loss is its negative
log-likelihood, per pair i:

    L_i = -log sigma(r_w - r_l - m_i) + c * (r_w + r_l)^2

* ``m_i`` (Llama-2's margin): the pair's ``reward_margin``, scaled. With a margin the loss keeps pushing until the
  rewards are at least ``m_i`` apart, so a clearly better answer is scored clearly higher than a slightly better one.
* ``c`` (reward centering, MM-RLHF c = 0.01): BT sees only differences, so the rewards can drift by any constant;
  the penalty keeps ``r_w + r_l`` near 0, i.e. rewards centred, which matters once they are an RL signal.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmalign.types import LossOutput


def bradley_terry(chosen: torch.Tensor, rejected: torch.Tensor, margin: torch.Tensor | None = None,
                  center_coef: float = 0.0) -> LossOutput:
    """Per-pair loss ``(B,)`` of rewards ``r_w`` = ``chosen`` and ``r_l`` = ``rejected`` (module docstring).

    Metrics, detached and per pair: ``accuracy`` ``1[r_w > r_l]`` (a tie is wrong), ``reward/chosen``,
    ``reward/rejected`` and ``margin`` ``r_w - r_l``.
    """
    diff = chosen - rejected
    loss = -F.logsigmoid(diff if margin is None else diff - margin)
    if center_coef:
        loss = loss + center_coef * (chosen + rejected) ** 2
    metrics = {"accuracy": (diff > 0).float().detach(), "reward/chosen": chosen.detach(),
               "reward/rejected": rejected.detach(), "margin": diff.detach()}
    return LossOutput(loss, metrics)

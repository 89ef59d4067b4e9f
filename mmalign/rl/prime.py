"""PRIME's implicit process reward model, Cui et al. 2025 ("Process Reinforcement through Implicit Rewards",
arXiv 2502.01456; code: PRIME-RL's verl recipe, ``recipe/prime/prime_core_algos.py``).

The PRM is a causal LM ``pi_phi`` (initialised from the SFT model) with a frozen reference ``pi_ref``. Its token
reward is ``r_t = beta * (log pi_phi(y_t) - log pi_ref(y_t))``; it is trained online from outcome labels only, and
its detached token rewards enter ``advantages.prime`` beside the outcome reward.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from mmalign.types import LossOutput


def implicit_process_rewards(prm_logps: torch.Tensor, prm_ref_logps: torch.Tensor, mask: torch.Tensor, *,
                             beta: float = 0.05) -> torch.Tensor:
    """``r_t = beta * (log pi_phi(y_t) - log pi_ref(y_t))``, ``(B, T)``, zero on padding, detached (an input to the
    advantages, not a loss)."""
    return (beta * (prm_logps - prm_ref_logps) * mask.to(prm_logps.dtype)).detach()


def prm_loss(prm_logps: torch.Tensor, prm_ref_logps: torch.Tensor, mask: torch.Tensor, outcomes: torch.Tensor, *,
             beta: float = 0.05) -> LossOutput:
    """The PRM's cross-entropy on outcome labels (PRIME's ``compute_ce_dpo_loss_rm``), per example ``(B,)``::

        loss = -[o log sigma(beta * sum_t h_t) + (1 - o) log(1 - sigma(beta * sum_t h_t))],  h_t = log pi_phi - log pi_ref

    outcomes: verifier labels ``o`` in {0, 1} (or soft labels in [0, 1]). Computed from logits, so it is stable where
    PRIME's ``binary_cross_entropy(sigmoid(.))`` saturates. Metrics: ``prm_prob`` (sigma of the summed reward) and
    ``prm_accuracy`` (``1[(sum_t r_t > 0) = (o > 0.5)]``).
    """
    logits = beta * ((prm_logps - prm_ref_logps) * mask.to(prm_logps.dtype)).sum(-1)
    targets = outcomes.to(logits.dtype)
    loss = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")
    metrics = {"prm_prob": torch.sigmoid(logits).detach(), "prm_accuracy": ((logits > 0) == (targets > 0.5)).to(
        logits.dtype).detach()}
    return LossOutput(loss, metrics)

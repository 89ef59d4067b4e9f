"""Policy and value losses for online RL (ALGORITHMS.md §3.2, §6): pure functions over per-token log-probs.

Inputs are ``(B, T)`` per-token tensors over the response (``mask`` 1 on response tokens): ``logps`` from the current
policy (with gradient), ``old_logps`` from the rollout policy and ``ref_logps`` from the reference (no gradient).
``advantages`` are ``(B, T)`` or ``(B,)`` (broadcast over tokens); they carry no gradient.

Unlike the preference losses, ``LossOutput.loss`` is a scalar: how tokens and sequences are weighted *is* the loss
(``loss_agg``), so it is already reduced over the batch. Metrics are detached scalars.

``loss_agg`` (verl's ``loss_agg_mode`` names) and TRL 1.16's ``GRPOConfig.loss_type``:

==========================  ===============================================  =============================
loss_agg                    loss                                             TRL loss_type
==========================  ===============================================  =============================
``token_mean``              ``sum_{i,t} l_it m_it / sum_{i,t} m_it``         ``bnpo``; ``dapo`` (the whole
                                                                             generation batch's tokens)
``seq_mean_token_mean``     ``mean_i (sum_t l_it m_it / sum_t m_it)``        ``grpo`` (the original GRPO)
``seq_mean_token_sum_norm`` ``sum_{i,t} l_it m_it / (B * max_length)``      ``dr_grpo``
==========================  ===============================================  =============================

With gradient accumulation the normaliser must span the whole optimizer step: for ``token_mean`` weight each
micro-batch's loss by its share of the step's tokens, for the sequence means by its share of the sequences.
"""
from __future__ import annotations

from functools import partial
from typing import Literal

import torch

from mmalign.rl.kl import KL_ESTIMATORS
from mmalign.rl.masked import masked_mean
from mmalign.types import LossOutput

LossAgg = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]


def aggregate(per_token: torch.Tensor, mask: torch.Tensor, *, loss_agg: LossAgg,
              max_length: int | None = None) -> torch.Tensor:
    """Reduce a ``(B, T)`` per-token loss to a scalar (table above). ``max_length``: Dr.GRPO's constant, the
    generation limit (TRL's ``max_completion_length``); None uses the padded width ``T``."""
    if loss_agg == "token_mean":
        return masked_mean(per_token, mask)
    if loss_agg == "seq_mean_token_mean":
        return masked_mean(per_token, mask, dim=1).mean()
    if loss_agg == "seq_mean_token_sum_norm":
        return (per_token * mask.to(per_token.dtype)).sum() / (per_token.shape[0] * (max_length or per_token.shape[1]))
    raise ValueError(f"unknown loss_agg '{loss_agg}'")


def ppo_clip(logps: torch.Tensor, old_logps: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor, *,
             ref_logps: torch.Tensor | None = None, entropies: torch.Tensor | None = None,
             clip_eps_low: float = 0.2, clip_eps_high: float = 0.2, dual_clip: float | None = None,
             kl_coef: float = 0.0, kl_estimator: Literal["k1", "k2", "k3", "k1_clamped"] = "k3",
             entropy_coef: float = 0.0, loss_agg: LossAgg = "token_mean", max_length: int | None = None) -> LossOutput:
    """PPO's clipped surrogate, Schulman et al. 2017 (arXiv 1707.06347) Eq. 7, per token, with the GRPO/DAPO options::

        rho_t = exp(logps - old_logps)
        l_t   = max(-A_t rho_t, -A_t clip(rho_t, 1 - eps_low, 1 + eps_high))  [+ kl_coef * KL_t(logps, ref_logps)]
        loss  = aggregate(l, loss_agg) - entropy_coef * token_mean(entropies)

    * ``clip_eps_high > clip_eps_low`` is DAPO's clip-higher (0.2 / 0.28; Yu et al. 2025, arXiv 2503.14476).
    * ``dual_clip = c`` (verl's ``clip_ratio_c``, 3.0 there) bounds the loss for ``A < 0`` by ``-A * c``
      (Ye et al. 2020, arXiv 1912.09729).
    * ``kl_coef > 0``: the KL *in the loss* (GRPO, k3 by default, TRL's ``beta``): the estimate is taken from the
      current ``logps``, so its gradient flows (``kl`` module docstring). Needs ``ref_logps``.
    * With one policy update per rollout, ``old_logps = logps.detach()``: the ratio is 1 and the gradient ``-A grad l``.

    Metrics: ``pg_loss`` (the aggregated surrogate alone), ``clip_frac`` (tokens where the clipped branch is active:
    ``rho < 1 - eps_low`` with ``A < 0`` or ``rho > 1 + eps_high`` with ``A > 0``, TRL's ``clip_ratio/region_mean``),
    ``clip_frac_low``, ``clip_frac_high``, ``approx_kl`` (``token_mean((logps - old_logps)^2 / 2)``, TRL PPO's
    ``approxkl``), ``ratio`` (token mean), ``kl`` (token mean, when ``ref_logps`` is given), ``entropy`` (when
    ``entropies`` are given), all token means over ``mask``.
    """
    adv = advantages if advantages.dim() == 2 else advantages[:, None]
    log_ratio = logps - old_logps
    ratio = torch.exp(log_ratio)
    pg = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - clip_eps_low, 1 + clip_eps_high))
    if dual_clip is not None:
        pg = torch.where(adv < 0, torch.minimum(pg, -adv * dual_clip), pg)
    low, high = (ratio < 1 - clip_eps_low) & (adv < 0), (ratio > 1 + clip_eps_high) & (adv > 0)
    metrics = {"pg_loss": aggregate(pg, mask, loss_agg=loss_agg, max_length=max_length),
               "clip_frac": masked_mean((low | high).to(logps.dtype), mask),
               "clip_frac_low": masked_mean(low.to(logps.dtype), mask),
               "clip_frac_high": masked_mean(high.to(logps.dtype), mask),
               "approx_kl": masked_mean(0.5 * log_ratio**2, mask), "ratio": masked_mean(ratio, mask)}
    per_token = pg
    if kl_coef != 0 and ref_logps is None:
        raise ValueError("kl_coef != 0 puts the KL in the loss and needs ref_logps")
    if ref_logps is not None:
        kl = KL_ESTIMATORS[kl_estimator](logps, ref_logps)
        per_token = per_token + kl_coef * kl
        metrics["kl"] = masked_mean(kl, mask)
    loss = aggregate(per_token, mask, loss_agg=loss_agg, max_length=max_length)
    if entropies is not None:
        entropy = masked_mean(entropies, mask)
        loss = loss - entropy_coef * entropy
        metrics["entropy"] = entropy
    return LossOutput(loss, {k: v.detach() for k, v in metrics.items()})


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor, *,
               clip_eps: float = 0.2, loss_agg: LossAgg = "token_mean", max_length: int | None = None) -> LossOutput:
    """PPO's clipped value loss (TRL's PPO, LLaVA-RLHF's ``compute_value_loss``; ALGORITHMS §3.2)::

        V_clip = old_values + clip(values - old_values, -eps, eps)
        loss   = 0.5 * aggregate(max((values - returns)^2, (V_clip - returns)^2))

    ``old_values`` are the value head's outputs on the rollout, ``returns`` the GAE targets (``Advantages.returns``).
    TRL's and LLaVA-RLHF's ``cliprange_value`` is 0.2. The trainer weights it by ``vf_coef`` (TRL 0.1).
    Metrics: ``value_clip_frac`` (tokens where the clipped branch is larger), ``value_error`` (token mean of
    ``(values - returns)^2``), ``value_mean``.
    """
    clipped = old_values + (values - old_values).clamp(-clip_eps, clip_eps)
    unclipped_loss, clipped_loss = (values - returns) ** 2, (clipped - returns) ** 2
    loss = 0.5 * aggregate(torch.maximum(unclipped_loss, clipped_loss), mask, loss_agg=loss_agg, max_length=max_length)
    metrics = {"value_clip_frac": masked_mean((clipped_loss > unclipped_loss).to(values.dtype), mask),
               "value_error": masked_mean(unclipped_loss, mask), "value_mean": masked_mean(values, mask)}
    return LossOutput(loss, {k: v.detach() for k, v in metrics.items()})


def token_entropy(logits: torch.Tensor) -> torch.Tensor:
    """``H_t = -sum_v p_v log p_v`` of each position's next-token distribution, ``(..., V) -> (...)`` (TRL's
    ``entropy_from_logits`` without its chunking)."""
    logp = torch.log_softmax(logits, dim=-1)
    return -(logp.exp() * logp).sum(-1)


# Method name -> ``ppo_clip`` with that method's settings (a config may override any keyword); DAPO also drops the
# KL term (kl_coef = 0, the default) and adds ``shaping.overlong_penalty`` and ``shaping.dynamic_sampling_mask``.
POLICY_LOSSES = {
    "ppo": ppo_clip,
    "grpo": partial(ppo_clip, loss_agg="seq_mean_token_mean"),
    "bnpo": partial(ppo_clip, loss_agg="token_mean"),
    "dapo": partial(ppo_clip, clip_eps_high=0.28, loss_agg="token_mean"),
    "dr_grpo": partial(ppo_clip, loss_agg="seq_mean_token_sum_norm"),
}

"""Advantage estimators for online RL (ALGORITHMS.md §3.2 and §6), one pure function each, no gradient.

Every estimator in ``ADVANTAGES`` has the signature::

    fn(scores, mask, *, <data inputs>, kl=None, kl_coef=0.0, <hyperparameters>) -> Advantages

* ``scores``: ``(B,)`` one outcome reward per completion (the weighted sum of the reward functions). The G
  completions of a prompt are G consecutive rows, as TRL and VLM-R1 lay them out.
* ``mask``: ``(B, T)`` response tokens.
* data inputs, each flagged in the estimator's ``AdvantageSpec``: ``group_size`` (G), ``values`` ``(B, T)`` from a
  value head (PPO), ``process_rewards`` ``(B, T)`` (PRIME, ``prime.implicit_process_rewards``).
* ``kl``: optional ``(B, T)`` per-token KL estimate of the rollout (``kl.KL_ESTIMATORS``). With ``kl_coef > 0`` it goes
  *into the reward*, detached: per token (``-kl_coef * kl_t``) for the token-level estimators, summed over the
  sequence and subtracted from the score for the group estimators (TRL's RLOO: ``r_i - beta * sum_t kl_t``).

``Advantages.advantages`` is what the policy loss multiplies; it is zero on padding.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch

from mmalign.rl.masked import at_last_token, masked_mean, masked_whiten


@dataclass(frozen=True)
class Advantages:
    """advantages: ``(B, T)``, zero on padding.
    returns: ``(B, T)``, zero on padding: the value targets ``A + V`` for GAE, the discounted return for REINFORCE++
    and PRIME, the advantages themselves for the outcome estimators (GRPO, RLOO; verl's convention).
    """

    advantages: torch.Tensor
    returns: torch.Tensor


# ---- building blocks -------------------------------------------------------------------------------------------

def grouped(x: torch.Tensor, group_size: int) -> torch.Tensor:
    """``(B,)`` -> ``(B / G, G)``: one row per prompt."""
    if group_size < 2 or x.shape[0] % group_size:
        raise ValueError(f"{x.shape[0]} completions do not split into groups of group_size={group_size} (need >= 2)")
    return x.view(-1, group_size)


def group_centered(scores: torch.Tensor, *, group_size: int) -> torch.Tensor:
    """``r_i - mean_group(r)``, ``(B,)``."""
    g = grouped(scores, group_size)
    return (g - g.mean(1, keepdim=True)).view(-1)


def group_normalized(scores: torch.Tensor, *, group_size: int, scale: Literal["group", "batch", "none"] = "group",
                     eps: float = 1e-4) -> torch.Tensor:
    """GRPO's ``(r_i - mean_group(r)) / (std + eps)``, ``(B,)``; TRL ``scale_rewards``: ``group`` divides by the
    group's std, ``batch`` by the std of all B scores, ``none`` not at all (Dr.GRPO).

    The std is unbiased (Bessel), as TRL's ``nanstd`` and verl's ``torch.std``; ``eps = 1e-4`` is TRL's and VLM-R1's
    (verl uses 1e-6). A group whose scores are all equal gets advantage 0.
    """
    centered = group_centered(scores, group_size=group_size)
    if scale == "none":
        return centered
    std = grouped(scores, group_size).std(1).repeat_interleave(group_size) if scale == "group" else scores.std()
    return centered / (std + eps)


def leave_one_out(scores: torch.Tensor, *, group_size: int) -> torch.Tensor:
    """RLOO: ``r_i - (sum_{j != i} r_j) / (G - 1)``, ``(B,)``; equals ``G / (G - 1) * (r_i - mean_group(r))``."""
    g = grouped(scores, group_size)
    return (g - (g.sum(1, keepdim=True) - g) / (group_size - 1)).view(-1)


def sequence_score(scores: torch.Tensor, mask: torch.Tensor, kl: torch.Tensor | None, kl_coef: float) -> torch.Tensor:
    """``r_i - kl_coef * sum_t kl_t``: the sequence-level KL in the reward (TRL's RLOO), ``(B,)``."""
    if kl is None or kl_coef == 0:
        return scores
    return scores - kl_coef * (kl.detach() * mask).sum(-1)


def token_rewards(scores: torch.Tensor, mask: torch.Tensor, *, kl: torch.Tensor | None = None,
                  kl_coef: float = 0.0) -> torch.Tensor:
    """``r_t = 1[t = last] * R - kl_coef * kl_t``, ``(B, T)``: the outcome at the last response token plus the
    per-token KL in the reward (PPO, Fact-RLHF, REINFORCE++; OpenRLHF's ``compute_reward``)."""
    rewards = at_last_token(scores, mask)
    if kl is not None and kl_coef != 0:
        rewards = rewards - kl_coef * kl.detach() * mask.to(rewards.dtype)
    return rewards


def discounted_returns(rewards: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0) -> torch.Tensor:
    """``G_t = r_t + gamma * G_{t+1}`` over response tokens, ``(B, T)``, zero on padding. Masked positions are
    skipped, as ``gae_advantages`` skips them; with right padding this is verl's REINFORCE++ loop."""
    m = mask.to(rewards.dtype)
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[:, 0])
    for t in reversed(range(rewards.shape[1])):
        running = torch.where(m[:, t] > 0, rewards[:, t] + gamma * running, running)
        returns[:, t] = running
    return returns * m


def gae_advantages(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, *, gamma: float = 1.0,
                   lam: float = 0.95) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalised advantage estimation (Schulman et al. 2015, arXiv 1506.02438), raw (not whitened).

    ``delta_t = r_t + gamma * V_{t+1} - V_t``, ``A_t = delta_t + gamma * lam * A_{t+1}``, ``returns = A + V``; after the
    last response token ``V = 0``. Masked positions are skipped, so a mask with holes works too (verl's
    ``compute_gae_advantage_return``). Returns ``(advantages, returns)``, each ``(B, T)``, zero on padding.
    """
    m = mask.to(values.dtype)
    advantages = torch.zeros_like(values)
    next_value = last = torch.zeros_like(values[:, 0])
    for t in reversed(range(values.shape[1])):
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        current = delta + gamma * lam * last
        next_value = values[:, t] * m[:, t] + (1 - m[:, t]) * next_value
        last = current * m[:, t] + (1 - m[:, t]) * last
        advantages[:, t] = last
    return advantages * m, (advantages + values) * m


def _outcome(advantage: torch.Tensor, mask: torch.Tensor) -> Advantages:
    a = advantage[:, None] * mask.to(advantage.dtype)
    return Advantages(a, a)


# ---- estimators ----------------------------------------------------------------------------------------------

def grpo(scores: torch.Tensor, mask: torch.Tensor, *, group_size: int, kl: torch.Tensor | None = None,
         kl_coef: float = 0.0, scale: Literal["group", "batch", "none"] = "group", eps: float = 1e-4) -> Advantages:
    """GRPO, Shao et al. 2024 (DeepSeekMath, arXiv 2402.03300) §4.1.2: ``A_i = (r_i - mean_group(r)) / (std_group(r) +
    eps)`` on every token of completion i. TRL's ``GRPOTrainer`` (``scale_rewards``, ``_generate_and_score_completions``).
    GRPO puts its KL in the loss (``ppo_clip(ref_logps=...)``); ``kl`` here folds it into the score instead."""
    return _outcome(group_normalized(sequence_score(scores, mask, kl, kl_coef), group_size=group_size, scale=scale,
                                     eps=eps), mask)


def dr_grpo(scores: torch.Tensor, mask: torch.Tensor, *, group_size: int, kl: torch.Tensor | None = None,
            kl_coef: float = 0.0) -> Advantages:
    """Dr.GRPO, Liu et al. 2025 ("Understanding R1-Zero-Like Training", arXiv 2503.20783): ``A_i = r_i -
    mean_group(r)``, no std division. Its other half, no length normalisation, is the policy loss's
    ``loss_agg="seq_mean_token_sum_norm"`` (TRL ``loss_type="dr_grpo"``)."""
    return grpo(scores, mask, group_size=group_size, kl=kl, kl_coef=kl_coef, scale="none")


def rloo(scores: torch.Tensor, mask: torch.Tensor, *, group_size: int, kl: torch.Tensor | None = None,
         kl_coef: float = 0.0, normalize: bool = False, eps: float = 1e-4) -> Advantages:
    """RLOO, Ahmadian et al. 2024 (arXiv 2402.14740): ``A_i = r_i - (sum_{j != i} r_j) / (G - 1)`` on every token.

    As TRL's ``RLOOTrainer``: the sequence-level k1 KL is folded into the score first (``kl_coef`` = TRL's ``beta``,
    default 0.05 there); ``normalize`` (TRL ``normalize_advantages``) whitens over the batch with unbiased std + eps.
    """
    advantage = leave_one_out(sequence_score(scores, mask, kl, kl_coef), group_size=group_size)
    if normalize:
        advantage = (advantage - advantage.mean()) / (advantage.std() + eps)
    return _outcome(advantage, mask)


def reinforce_pp(scores: torch.Tensor, mask: torch.Tensor, *, kl: torch.Tensor | None = None, kl_coef: float = 0.0,
                 gamma: float = 1.0) -> Advantages:
    """REINFORCE++, Hu 2025 (arXiv 2501.03262): token rewards ``r_t = 1[t = last] R - kl_coef * kl_t``, returns
    ``G_t = sum_{s >= t} gamma^{s-t} r_s``, advantages = ``G_t`` whitened over every token of the batch (no grouping,
    no critic). Whitening as OpenRLHF's ``experience_maker`` (biased variance); verl's uses the unbiased one."""
    returns = discounted_returns(token_rewards(scores, mask, kl=kl, kl_coef=kl_coef), mask, gamma=gamma)
    return Advantages(masked_whiten(returns, mask, unbiased=False), returns)


def reinforce_pp_baseline(scores: torch.Tensor, mask: torch.Tensor, *, group_size: int,
                          kl: torch.Tensor | None = None, kl_coef: float = 0.0, gamma: float = 1.0) -> Advantages:
    """REINFORCE++-baseline (LMM-R1's ``reinforce_baseline``): the group mean is subtracted from the outcome ``R``
    (no std), then the KL goes in per token and the returns are whitened over the batch, as ``reinforce_pp``.

    As OpenRLHF (which LMM-R1 runs). verl's variant broadcasts the centred sequence score (KL included) to every
    token instead of taking token-level returns, and whitens with the unbiased variance; without KL in the reward the
    returns are the same."""
    return reinforce_pp(group_centered(scores, group_size=group_size), mask, kl=kl, kl_coef=kl_coef, gamma=gamma)


def gae(scores: torch.Tensor, mask: torch.Tensor, *, values: torch.Tensor, kl: torch.Tensor | None = None,
        kl_coef: float = 0.0, gamma: float = 1.0, lam: float = 0.95, reward_scale: float = 1.0) -> Advantages:
    """PPO's advantages (Ouyang et al. 2022, arXiv 2203.02155; ALGORITHMS §3.2): token rewards (score at the last
    token, ``-kl_coef * kl_t`` per token) times ``reward_scale``, then ``gae_advantages``; the advantages are whitened
    over the batch's tokens (unbiased variance, TRL's and verl's ``masked_whiten``); returns stay raw.

    Defaults ``gamma = 1``, ``lam = 0.95`` are TRL's. ``reward_scale = 10`` is Fact-RLHF's released setting
    (LLaVA-RLHF multiplies the shaped rewards by 10 before GAE when ``whiten_rewards=False``).
    """
    rewards = token_rewards(scores, mask, kl=kl, kl_coef=kl_coef) * reward_scale
    advantages, returns = gae_advantages(rewards, values, mask, gamma=gamma, lam=lam)
    return Advantages(masked_whiten(advantages, mask), returns)


def prime(scores: torch.Tensor, mask: torch.Tensor, *, group_size: int, process_rewards: torch.Tensor,
          kl: torch.Tensor | None = None, kl_coef: float = 0.0, process_coef: float = 5.0,
          outcome_coef: float = 5.0) -> Advantages:
    """PRIME, Cui et al. 2025 (arXiv 2502.01456): RLOO on each reward source, then returns and whitening.

    * process: ``r_t^(i) * G / (G - 1) - (sum_j mean_t r^(j)) / (G - 1)`` on every token (a leave-one-out baseline of
      the sequence-mean implicit rewards), times ``process_coef`` (PRIME's ``reward_dpo_coef``);
    * outcome: ``leave_one_out(scores)`` at the last token, times ``outcome_coef`` (``reward_gt_coef``);
    * returns = reverse cumulative sum (gamma = 1), advantages = returns whitened (verl's ``masked_whiten``).

    As PRIME-RL's ``compute_rloo_advantage_return`` (``recipe/prime/prime_core_algos.py``). PRIME uses no KL on the
    policy side; ``kl`` adds it per token, as in ``token_rewards``.
    """
    m = mask.to(process_rewards.dtype)
    baseline = grouped(masked_mean(process_rewards, mask, dim=1), group_size).sum(1) / (group_size - 1)
    process = (process_rewards * group_size / (group_size - 1) - baseline.repeat_interleave(group_size)[:, None]) * m
    outcome = outcome_coef * leave_one_out(scores, group_size=group_size)
    returns = discounted_returns(process_coef * process + token_rewards(outcome, mask, kl=kl, kl_coef=kl_coef), mask)
    return Advantages(masked_whiten(returns, mask), returns)


@dataclass(frozen=True)
class AdvantageSpec:
    """An estimator and the data inputs the trainer must pass it (besides ``scores``, ``mask`` and ``kl``).

    needs_groups:          takes ``group_size`` (G completions per prompt, consecutive rows).
    needs_values:          takes ``values`` ``(B, T)``: the value head on the rollout (PPO).
    needs_process_rewards: takes ``process_rewards`` ``(B, T)`` from an implicit PRM (PRIME).
    """

    fn: Callable[..., Advantages]
    needs_groups: bool = False
    needs_values: bool = False
    needs_process_rewards: bool = False


ADVANTAGES: dict[str, AdvantageSpec] = {
    "grpo": AdvantageSpec(grpo, needs_groups=True),
    "dr_grpo": AdvantageSpec(dr_grpo, needs_groups=True),
    "rloo": AdvantageSpec(rloo, needs_groups=True),
    "reinforce_pp": AdvantageSpec(reinforce_pp),
    "reinforce_pp_baseline": AdvantageSpec(reinforce_pp_baseline, needs_groups=True),
    "gae": AdvantageSpec(gae, needs_values=True),
    "prime": AdvantageSpec(prime, needs_groups=True, needs_process_rewards=True),
}

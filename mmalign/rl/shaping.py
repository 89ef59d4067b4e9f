"""Reward shaping over token counts and groups: Fact-RLHF's shaped reward (ALGORITHMS.md §3.3) and DAPO's overlong
penalty and dynamic-sampling filter (§6.2). Pure tensor functions; the text-level correctness bonus of Fact-RLHF is
``rewards.fact_rlhf_correctness``.
"""
from __future__ import annotations

import torch

from mmalign.rl.advantages import grouped, token_rewards


def fact_rlhf_scores(rm_scores: torch.Tensor, lengths: torch.Tensor, has_eos: torch.Tensor,
                     correct_bonus: torch.Tensor, *, length_multiplier: torch.Tensor | float = 1.0,
                     response_len: int = 896, length_coef: float = -10.0, correct_coef: float = 2.0,
                     missing_eos_penalty: float = -8.0, reward_bias: float = 0.0) -> torch.Tensor:
    """Fact-RLHF's sequence reward, Sun et al. 2023 (LLaVA-RLHF, arXiv 2309.14525), ``(B,)``::

        R = R_RM + length_coef * (|y| / response_len) * length_multiplier + correct_coef * correct_bonus + reward_bias
            + missing_eos_penalty * 1[no stop token]

    rm_scores: the (factually augmented) reward model's scores; lengths: response tokens (LLaVA-RLHF counts the
    non-pad tokens); has_eos: bool, the response stopped by itself; correct_bonus: ``fact_rlhf_correctness`` per
    completion. Defaults are the released ``train_rl_model.sh``: ``length_bonus_score=-10`` (a length *penalty*),
    ``correct_bonus_score=2``, ``penalty_reward_value=-8`` added (``relative_stop_token_penalty=True``),
    ``response_len=896``. ``length_multiplier`` is a per-example data field there (1 when absent).
    """
    length_bonus = lengths.to(rm_scores.dtype) / response_len * length_multiplier
    missing_eos = (~has_eos.bool()).to(rm_scores.dtype)
    return (rm_scores + length_coef * length_bonus + correct_coef * correct_bonus + reward_bias
            + missing_eos_penalty * missing_eos)


def fact_rlhf_rewards(scores: torch.Tensor, mask: torch.Tensor, *, kl: torch.Tensor, kl_coef: float = 0.1,
                      reward_scale: float = 10.0) -> torch.Tensor:
    """Fact-RLHF's per-token rewards, ``(B, T)``: ``reward_scale * (1[t = last] R - kl_coef * kl_t)`` with ``R`` from
    ``fact_rlhf_scores`` and ``kl`` LLaVA-RLHF's clamped k1 (``kl.k1_clamped`` of rollout and reference log-probs).

    ``reward_scale = 10`` is the released setting (``whiten_rewards=False`` multiplies the shaped rewards by 10 before
    GAE). ``advantages.gae(scores, mask, values=..., kl=kl, kl_coef=0.1, reward_scale=10)`` runs GAE on exactly these.
    Deviation: LLaVA-RLHF adds ``R`` at the last *column* of the padded response (its code notes an off-by-one with
    pad == eos); we add it at the last response token, where a shorter response ends.
    """
    return token_rewards(scores, mask, kl=kl, kl_coef=kl_coef) * reward_scale


def overlong_penalty(lengths: torch.Tensor, *, max_length: int, buffer: int, penalty: float = 1.0) -> torch.Tensor:
    """DAPO's soft overlong punishment, Yu et al. 2025 (arXiv 2503.14476) Eq. 13, ``(B,)``::

        0                                          |y| <= L_max - L_buf
        -(|y| - (L_max - L_buf)) / L_buf * penalty   L_max - L_buf < |y| <= L_max
        -penalty                                   |y| > L_max

    Added to the outcome reward. The same as TRL's ``get_soft_overlong_punishment(max_completion_len, soft_punish_cache)``
    (penalty 1) and verl's DAPO reward manager (``overlong_buffer``, ``penalty_factor``). The paper: L_max = 20480,
    L_buf = 4096.
    """
    expected = max_length - buffer
    return (-(lengths.to(torch.get_default_dtype()) - expected) / buffer * penalty).clamp(min=-penalty, max=0.0)


def dynamic_sampling_mask(scores: torch.Tensor, *, group_size: int) -> torch.Tensor:
    """DAPO's dynamic sampling filter: ``(B,)`` bool, True for the completions of groups whose scores are not all
    equal (a group with zero reward variance has zero GRPO advantage and no gradient). The trainer drops the rest and
    samples more prompts until the batch is full.

    ``scores`` is the metric to filter on (DAPO: accuracy; verl's ``filter_groups.metric``). verl keeps a group when
    ``np.std(...) > 0``; we test ``max > min`` instead, which is the same for distinct values and also drops constant
    groups whose floating-point std is a tiny positive number (e.g. three rewards of 0.1).
    """
    g = grouped(scores, group_size)
    return (g.amax(1) > g.amin(1)).repeat_interleave(group_size)

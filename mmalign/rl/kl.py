"""Per-token KL estimators between the policy and the reference (Schulman, "Approximating KL Divergence", 2020,
http://joschu.net/blog/kl-approx.html), from the log-probs of the sampled tokens only.

Notation: ``y ~ pi_theta``, ``delta = log pi_theta(y) - log pi_ref(y)``, ``r = pi_ref(y) / pi_theta(y) = exp(-delta)``.
The target is the reverse KL ``KL(pi_theta || pi_ref) = E_{pi_theta}[delta]``.

======  =====================  ===========================  ======  ==================================================
name    estimate               value (y ~ pi_theta)         sign    gradient when used *in the loss* (y ~ pi_theta)
======  =====================  ===========================  ======  ==================================================
k1      ``delta``              unbiased, high variance      any     ``grad log pi_theta``: zero in expectation; no signal
k2      ``delta^2 / 2``        biased (2nd order), low var  >= 0    ``delta * grad log pi_theta``: E = grad KL(theta||ref)
k3      ``r - 1 - log r``      unbiased, low variance       >= 0    ``(1 - r) grad log pi_theta``: E = grad KL(ref||theta)
======  =====================  ===========================  ======  ==================================================

Two ways to use them, both supported:

* **in the reward** (PPO, Fact-RLHF, REINFORCE++, RLOO): the estimate is detached and ``-kl_coef * kl_t`` is added to
  the token rewards (``advantages.token_rewards``); the policy gradient then carries it, and with k1 that is an
  unbiased gradient of the reverse KL. The log-probs are the rollout's (``pi_old``), so there is no gradient anyway.
* **in the loss** (GRPO): ``kl_coef * kl_t`` from the *current* policy log-probs is added to the per-token loss
  (``policy_losses.ppo_clip(ref_logps=...)``) and differentiated pathwise, which is where the gradient column
  applies: GRPO's k3 follows the forward KL's gradient, k2 the reverse KL's, k1 none.

``k1_clamped`` is LLaVA-RLHF's default (``RLHF/models/ppo_trainer.py``, ``_shape_reward``: ``clamp(logprobs -
ref_logprobs, min=0)``): non-negative but no longer unbiased. Unlike verl's ``low_var_kl`` we do not clamp k3; TRL's
GRPO does not either.
"""
from __future__ import annotations

from collections.abc import Callable

import torch


def k1(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """``log pi_theta - log pi_ref`` per token."""
    return logps - ref_logps


def k2(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """``(log pi_theta - log pi_ref)^2 / 2`` per token."""
    return 0.5 * (logps - ref_logps) ** 2


def k3(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """``exp(l_ref - l_theta) - (l_ref - l_theta) - 1`` per token, as TRL's GRPO writes it."""
    log_r = ref_logps - logps
    return torch.exp(log_r) - log_r - 1


def k1_clamped(logps: torch.Tensor, ref_logps: torch.Tensor) -> torch.Tensor:
    """``max(0, log pi_theta - log pi_ref)`` per token (LLaVA-RLHF)."""
    return (logps - ref_logps).clamp(min=0)


KL_ESTIMATORS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "k1": k1, "k2": k2, "k3": k3, "k1_clamped": k1_clamped,
}

"""Online RL as pure functions (ALGORITHMS.md §3 and §6): rewards, reward shaping, KL estimators, advantage
estimators and policy/value losses. The rollout engine and the trainer call these; nothing here runs a model.

Registries (plain dicts next to their functions):

* ``REWARDS``: name -> ``fn(completion, example, *, settings) -> float`` (``rewards``).
* ``KL_ESTIMATORS``: name -> ``fn(logps, ref_logps) -> (B, T)`` (``kl``).
* ``ADVANTAGES``: name -> ``AdvantageSpec(fn, needs_groups, needs_values, needs_process_rewards)`` (``advantages``).
* ``POLICY_LOSSES``: method name -> ``ppo_clip`` with that method's settings (``policy_losses``).

A run's pieces, GRPO with a count reward::

    scores, per_reward = score_batch({"count": batched(count_accuracy)}, completions, examples)
    adv = ADVANTAGES["grpo"].fn(scores, mask, group_size=G).advantages
    out = POLICY_LOSSES["grpo"](logps, old_logps, adv, mask, ref_logps=ref_logps, kl_coef=0.04)
"""
from mmalign.rl.advantages import ADVANTAGES, Advantages, AdvantageSpec
from mmalign.rl.kl import KL_ESTIMATORS
from mmalign.rl.policy_losses import (
    POLICY_LOSSES,
    aggregate,
    ppo_clip,
    token_entropy,
    value_loss,
)
from mmalign.rl.prime import implicit_process_rewards, prm_loss
from mmalign.rl.rewards import (
    REWARDS,
    batched,
    judge_reward,
    reward_model_reward,
    score_batch,
    scorer_reward,
)
from mmalign.rl.shaping import (
    dynamic_sampling_mask,
    fact_rlhf_rewards,
    fact_rlhf_scores,
    overlong_penalty,
)

__all__ = ["ADVANTAGES", "KL_ESTIMATORS", "POLICY_LOSSES", "REWARDS", "AdvantageSpec", "Advantages", "aggregate",
           "batched", "dynamic_sampling_mask", "fact_rlhf_rewards", "fact_rlhf_scores", "implicit_process_rewards",
           "judge_reward", "overlong_penalty", "ppo_clip", "prm_loss", "reward_model_reward", "score_batch",
           "scorer_reward", "token_entropy", "value_loss"]

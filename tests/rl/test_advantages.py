"""Advantage estimators: hand-worked groups and trajectories, TRL 1.16's GRPO and RLOO formulas (with TRL's own
``nanstd``), OpenRLHF's whitening, and the registry's flags against the signatures."""
from __future__ import annotations

import inspect
import math

import pytest
import torch
from torch.testing import assert_close

from mmalign.rl import advantages as A
from mmalign.rl.masked import masked_whiten
from mmalign.rl.shaping import fact_rlhf_rewards, fact_rlhf_scores

from ._helpers import lengths_mask, t

# two prompts, G = 4: a half-right group and a group with one reward for all
SCORES = t(1, 0, 0, 1, 0.5, 0.5, 0.5, 0.5)
MASK8 = lengths_mask([2, 3, 1, 3, 3, 3, 2, 1], 3)


def column(adv: torch.Tensor) -> torch.Tensor:
    """The per-sequence advantage of an outcome estimator: its value on the first token."""
    return adv[:, 0]


# ---- GRPO / Dr.GRPO -----------------------------------------------------------------------------------------

def test_grpo_known_group():
    # group 1: mean 0.5, unbiased std sqrt((4 * 0.25) / 3) = 0.577350; A = +-0.5 / (0.577350 + 1e-4) = +-0.865875
    # group 2: every reward equal -> A = 0 (0 / (0 + 1e-4))
    a = 0.5 / (math.sqrt(1 / 3) + 1e-4)
    out = A.grpo(SCORES, MASK8, group_size=4)
    assert_close(column(out.advantages), t(a, -a, -a, a, 0, 0, 0, 0))
    assert_close(out.advantages, column(out.advantages)[:, None] * MASK8)     # constant over tokens, 0 on padding
    assert_close(out.returns, out.advantages)


def test_grpo_scale_batch_and_none():
    # batch: std of all eight scores: squared deviations 4 * 0.25 + 0 = 1, unbiased var 1/7, std 0.377964
    b = 0.5 / (math.sqrt(1 / 7) + 1e-4)
    assert_close(column(A.grpo(SCORES, MASK8, group_size=4, scale="batch").advantages), t(b, -b, -b, b, 0, 0, 0, 0))
    none = t(0.5, -0.5, -0.5, 0.5, 0, 0, 0, 0)
    assert_close(column(A.grpo(SCORES, MASK8, group_size=4, scale="none").advantages), none)
    assert_close(column(A.dr_grpo(SCORES, MASK8, group_size=4).advantages), none)


def test_grpo_matches_trl():
    # TRL 1.16 grpo_trainer.py, _generate_and_score_completions (sum_then_normalize, scale_rewards="group"/"batch"):
    #   mean_grouped = nanmean(rewards.view(-1, G), 1).repeat_interleave(G); std = nanstd(...).repeat_interleave(G)
    #   advantages = (rewards - mean_grouped) / (std + 1e-4)
    from trl.trainer.utils import nanstd

    g = torch.Generator().manual_seed(1)
    rewards = torch.rand(12, generator=g, dtype=torch.float64)
    mask = torch.ones(12, 5, dtype=torch.bool)
    mean = rewards.view(-1, 4).mean(1).repeat_interleave(4)
    group = (rewards - mean) / (nanstd(rewards.view(-1, 4), dim=1).repeat_interleave(4) + 1e-4)
    batch = (rewards - mean) / (nanstd(rewards) + 1e-4)
    assert_close(column(A.grpo(rewards, mask, group_size=4).advantages), group)
    assert_close(column(A.grpo(rewards, mask, group_size=4, scale="batch").advantages), batch)


def test_groups_must_divide_the_batch():
    with pytest.raises(ValueError, match="group_size=3"):
        A.grpo(SCORES, MASK8, group_size=3)
    with pytest.raises(ValueError, match="group_size=1"):
        A.rloo(SCORES, MASK8, group_size=1)


# ---- RLOO ---------------------------------------------------------------------------------------------------

MASK3 = lengths_mask([2, 1, 3], 3)


def test_rloo_leave_one_out_numbers():
    # scores (3, 0, 6): baselines (0 + 6) / 2 = 3, (3 + 6) / 2 = 4.5, (3 + 0) / 2 = 1.5 -> A = (0, -4.5, 4.5)
    # (= G / (G - 1) * (r - mean) = 1.5 * (0, -3, 3))
    out = A.rloo(t(3, 0, 6), MASK3, group_size=3)
    assert_close(column(out.advantages), t(0, -4.5, 4.5))
    assert_close(out.advantages, t([0, 0, 0], [-4.5, 0, 0], [4.5, 4.5, 4.5]))


def test_rloo_sequence_kl_in_the_reward():
    # summed k1 per sequence over the mask: (1 + 3, 5, 2 + 2 + 4) = (4, 5, 8); beta = 0.5 -> scores (1, -2.5, 2)
    # mean 1/6; A = 1.5 * (r - mean) = (1.25, -4, 2.75)
    kl = t([1, 3, 9], [5, 9, 9], [2, 2, 4])                              # 9s sit on padding and must not count
    out = A.rloo(t(3, 0, 6), MASK3, group_size=3, kl=kl, kl_coef=0.5)
    assert_close(column(out.advantages), t(1.25, -4.0, 2.75))


def test_rloo_matches_trl():
    # TRL 1.16 rloo_trainer.py, _generate_and_score_completions:
    #   rewards = rewards - beta * (per_token_kl * completion_mask).sum(-1)          (per_token_kl = old - ref: k1)
    #   baselines = (grouped_sum - grouped_rewards) / (scorable_counts - 1); advantages = rewards - baselines
    #   normalize_advantages: (advantages - nanmean(advantages)) / (nanstd(advantages) + 1e-4)
    from trl.trainer.utils import nanstd

    g = torch.Generator().manual_seed(2)
    rewards, old, ref = (torch.rand(8, generator=g, dtype=torch.float64), -torch.rand(8, 4, generator=g),
                         -torch.rand(8, 4, generator=g))
    mask = lengths_mask([4, 2, 3, 1, 4, 4, 2, 3], 4)
    shaped = rewards - 0.05 * ((old - ref).double() * mask).sum(-1)
    grouped = shaped.view(-1, 4)
    trl = (grouped - (grouped.sum(1, keepdim=True) - grouped) / 3).view(-1)
    ours = A.rloo(rewards, mask, group_size=4, kl=(old - ref).double(), kl_coef=0.05)
    assert_close(column(ours.advantages), trl)
    normalized = A.rloo(rewards, mask, group_size=4, kl=(old - ref).double(), kl_coef=0.05, normalize=True)
    assert_close(column(normalized.advantages), (trl - trl.mean()) / (nanstd(trl) + 1e-4))


# ---- REINFORCE++ -----------------------------------------------------------------------------------------------

MASK2 = lengths_mask([3, 2], 3)
KL2 = t([0.1, 0.2, 0.3], [0.4, 0.5, 7.0])                                # 7.0 is padding


def test_token_rewards_and_returns_by_hand():
    # kl_coef = 1: row 0 (-0.1, -0.2, 1 - 0.3) = (-0.1, -0.2, 0.7); row 1 (-0.4, 0 - 0.5, pad 0)
    rewards = A.token_rewards(t(1, 0), MASK2, kl=KL2, kl_coef=1.0)
    assert_close(rewards, t([-0.1, -0.2, 0.7], [-0.4, -0.5, 0.0]))
    # gamma = 1: reverse cumulative sums (0.4, 0.5, 0.7) and (-0.9, -0.5)
    assert_close(A.discounted_returns(rewards, MASK2), t([0.4, 0.5, 0.7], [-0.9, -0.5, 0.0]))
    # gamma = 0.5, row 0: G2 = 0.7, G1 = -0.2 + 0.35 = 0.15, G0 = -0.1 + 0.075 = -0.025
    assert_close(A.discounted_returns(rewards, MASK2, gamma=0.5)[0], t(-0.025, 0.15, 0.7))


def test_returns_skip_masked_holes():
    # mask (1, 0, 1), gamma 0.5: the hole's reward 5 and its step are skipped: G = (0.1 + 0.5 * 1.0, 0, 1.0)
    assert_close(A.discounted_returns(t([0.1, 5.0, 1.0]), t([1, 0, 1]).bool(), gamma=0.5), t([0.6, 0.0, 1.0]))


def test_reinforce_pp_global_whitening_by_hand():
    # returns (0.4, 0.5, 0.7, -0.9, -0.5): mean 0.04, squared deviations 0.1296 + 0.2116 + 0.4356 + 0.8836 + 0.2916
    # = 1.952, biased variance 1.952 / 5 = 0.3904 (std 0.624820)
    out = A.reinforce_pp(t(1, 0), MASK2, kl=KL2, kl_coef=1.0)
    assert_close(out.returns, t([0.4, 0.5, 0.7], [-0.9, -0.5, 0.0]))
    dev = t([0.36, 0.46, 0.66], [-0.94, -0.54, 0.0])
    assert_close(out.advantages, dev / math.sqrt(0.3904 + 1e-8) * MASK2)


def test_reinforce_pp_matches_openrlhf_normalisation():
    # OpenRLHF experience_maker: mean = (adv * m).sum() / m.sum(); var = ((adv - mean)^2 * m).sum() / m.sum();
    # adv = (adv - mean) * var.clamp(min=1e-8).rsqrt()
    g = torch.Generator().manual_seed(3)
    scores, kl = torch.randn(6, generator=g, dtype=torch.float64), torch.rand(6, 5, generator=g, dtype=torch.float64)
    mask = lengths_mask([5, 1, 3, 4, 2, 5], 5)
    out = A.reinforce_pp(scores, mask, kl=kl, kl_coef=0.1)
    m = mask.double()
    mean = (out.returns * m).sum() / m.sum()
    var = ((out.returns - mean) ** 2 * m).sum() / m.sum()
    assert_close(out.advantages, (out.returns - mean) * var.clamp(min=1e-8).rsqrt() * m)


def test_reinforce_pp_baseline_by_hand():
    # G = 2: scores (1, 0) - group mean 0.5 = (0.5, -0.5); then per-token KL as above:
    # row 0 (-0.1, -0.2, 0.5 - 0.3 = 0.2) -> returns (-0.1, 0.0, 0.2); row 1 (-0.4, -0.5 - 0.5 = -1.0) -> (-1.4, -1.0)
    out = A.reinforce_pp_baseline(t(1, 0), MASK2, group_size=2, kl=KL2, kl_coef=1.0)
    assert_close(out.returns, t([-0.1, 0.0, 0.2], [-1.4, -1.0, 0.0]))
    assert_close(out.advantages, masked_whiten(out.returns, MASK2, unbiased=False))


# ---- GAE / PPO ------------------------------------------------------------------------------------------------

def test_gae_three_steps_by_hand():
    # gamma 0.9, lambda 0.8 (gamma * lambda = 0.72)
    # row 0: r = (0, 0, 1), V = (0.5, 0.6, 0.7)
    #   t=2: delta = 1 + 0.9 * 0 - 0.7 = 0.3                A2 = 0.3
    #   t=1: delta = 0 + 0.9 * 0.7 - 0.6 = 0.03             A1 = 0.03 + 0.72 * 0.3 = 0.246
    #   t=0: delta = 0 + 0.9 * 0.6 - 0.5 = 0.04             A0 = 0.04 + 0.72 * 0.246 = 0.21712
    #   returns = A + V = (0.71712, 0.846, 1.0)
    # row 1, two tokens, r = (0, -1), V = (0.2, 0.4, pad 9.9 must not leak):
    #   t=1: delta = -1 - 0.4 = -1.4                          A1 = -1.4
    #   t=0: delta = 0.9 * 0.4 - 0.2 = 0.16                   A0 = 0.16 + 0.72 * -1.4 = -0.848
    mask = lengths_mask([3, 2], 3)
    rewards, values = t([0, 0, 1], [0, -1, 0]), t([0.5, 0.6, 0.7], [0.2, 0.4, 9.9])
    adv, returns = A.gae_advantages(rewards, values, mask, gamma=0.9, lam=0.8)
    assert_close(adv, t([0.21712, 0.246, 0.3], [-0.848, -1.4, 0.0]))
    assert_close(returns, t([0.71712, 0.846, 1.0], [-0.648, -1.0, 0.0]))
    out = A.gae(t(1, -1), mask, values=values, gamma=0.9, lam=0.8)     # scores at the last token, then whitened
    assert_close(out.returns, returns)
    assert_close(out.advantages, masked_whiten(adv, mask))


def test_gae_skips_masked_holes():
    # a hole in the middle (mask 1, 0, 1) is the same trajectory as the two kept tokens side by side
    rewards, values = t([0.1, 5.0, 1.0]), t([0.3, 7.0, 0.6])
    adv, ret = A.gae_advantages(rewards, values, t([1, 0, 1]).bool(), gamma=0.9, lam=0.8)
    adv2, ret2 = A.gae_advantages(t([0.1, 1.0]), t([0.3, 0.6]), t([1, 1]).bool(), gamma=0.9, lam=0.8)
    assert_close(adv[:, [0, 2]], adv2)
    assert_close(ret[:, [0, 2]], ret2)
    assert adv[0, 1] == 0 and ret[0, 1] == 0


def test_gae_with_fact_rlhf_shaping_equals_its_token_rewards():
    g = torch.Generator().manual_seed(4)
    mask = lengths_mask([4, 2, 3], 4)
    values, kl = torch.randn(3, 4, generator=g, dtype=torch.float64), torch.rand(3, 4, generator=g, dtype=torch.float64)
    scores = fact_rlhf_scores(t(0.3, -0.2, 1.0), mask.sum(-1), torch.tensor([True, False, True]), t(1, 0, -0.5))
    out = A.gae(scores, mask, values=values, kl=kl, kl_coef=0.1, reward_scale=10.0)
    adv, returns = A.gae_advantages(fact_rlhf_rewards(scores, mask, kl=kl), values, mask)
    assert_close(out.advantages, masked_whiten(adv, mask))
    assert_close(out.returns, returns)


# ---- PRIME --------------------------------------------------------------------------------------------------

def test_prime_by_hand():
    # G = 2, two tokens each; process rewards (0.2, 0.4) and (0, -0.2): sequence means 0.3, -0.1,
    # baseline (0.3 + -0.1) / (G - 1) = 0.2; process term r * 2 - 0.2 = (0.2, 0.6) and (-0.2, -0.6)
    # outcome (1, 0): leave-one-out (1 - 0, 0 - 1) = (1, -1) at the last token
    # coefs 1: rewards (0.2, 1.6), (-0.2, -1.6); returns (1.8, 1.6), (-1.8, -1.6)
    # whitened: mean 0, unbiased variance (3.24 + 2.56 + 3.24 + 2.56) / 3 = 3.866667
    mask = torch.ones(2, 2, dtype=torch.bool)
    out = A.prime(t(1, 0), mask, group_size=2, process_rewards=t([0.2, 0.4], [0.0, -0.2]), process_coef=1.0,
                  outcome_coef=1.0)
    assert_close(out.returns, t([1.8, 1.6], [-1.8, -1.6]))
    assert_close(out.advantages, out.returns / math.sqrt(11.6 / 3 + 1e-8))


def test_prime_matches_prime_rl_masked_rloo():
    # PRIME-RL recipe/prime/prime_core_algos.py, masked_rloo, on the process rewards (coefs 5 and 5):
    #   per group: baseline = sum_j mean_{masked t}(r_j) / (n - 1); r[mask] = r[mask] * n / (n - 1) - baseline
    #   returns = reverse cumsum of (sum of sources) * mask; advantages = masked_whiten(returns, mask)
    g = torch.Generator().manual_seed(5)
    mask = lengths_mask([3, 1, 4, 2, 4, 3], 4)
    proc, acc = torch.randn(6, 4, generator=g, dtype=torch.float64), t(1, 0, 0, 1, 1, 1)
    n = 3
    expected = torch.zeros(6, 4, dtype=torch.float64)
    for start in range(0, 6, n):
        rows = range(start, start + n)
        base = sum(proc[i][mask[i]].mean() for i in rows) / (n - 1)
        for i in rows:
            expected[i][mask[i]] = proc[i][mask[i]] * n / (n - 1) - base
        for i in rows:
            last = int(mask[i].sum()) - 1
            expected[i, last] += (acc[i] * n / (n - 1) - sum(acc[j] for j in rows) / (n - 1)) * 1.0
    expected = 5 * expected * mask
    returns = expected.flip(-1).cumsum(-1).flip(-1) * mask
    out = A.prime(acc, mask, group_size=n, process_rewards=proc)
    assert_close(out.returns, returns)
    assert_close(out.advantages, masked_whiten(returns, mask))


# ---- registry -------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(A.ADVANTAGES))
def test_registry_flags_match_signatures(name):
    spec = A.ADVANTAGES[name]
    params = inspect.signature(spec.fn).parameters
    assert list(params)[:2] == ["scores", "mask"]
    assert ("group_size" in params) == spec.needs_groups
    assert ("values" in params) == spec.needs_values
    assert ("process_rewards" in params) == spec.needs_process_rewards
    assert params["kl"].default is None and params["kl_coef"].default == 0.0
    keyword = [p for p in params.values() if p.kind is p.KEYWORD_ONLY]
    assert all(p.default is not p.empty for p in keyword if p.name not in ("group_size", "values", "process_rewards"))


@pytest.mark.parametrize("name", list(A.ADVANTAGES))
def test_every_estimator_zero_on_padding(name):
    g = torch.Generator().manual_seed(6)
    mask = lengths_mask([3, 1, 2, 3], 3)
    data = {"group_size": 2, "values": torch.randn(4, 3, generator=g, dtype=torch.float64),
            "process_rewards": torch.randn(4, 3, generator=g, dtype=torch.float64)}
    spec = A.ADVANTAGES[name]
    params = inspect.signature(spec.fn).parameters
    out = spec.fn(t(1, 0, 0.5, 2), mask, kl=torch.rand(4, 3, generator=g, dtype=torch.float64), kl_coef=0.1,
                  **{k: v for k, v in data.items() if k in params})
    assert (out.advantages[~mask] == 0).all() and (out.returns[~mask] == 0).all()
    assert out.advantages[mask].abs().sum() > 0

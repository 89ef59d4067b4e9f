"""Policy and value losses: PPO's clip on ratios inside and outside the range for both signs of the advantage,
DAPO's asymmetric clip, dual clip, the three aggregations on unequal lengths, the KL and entropy terms, the value
loss by hand, and parity with TRL 1.16's ``GRPOTrainer._compute_loss`` for its loss types."""
from __future__ import annotations

import math
import typing

import pytest
import torch
from torch.testing import assert_close

from mmalign.rl.kl import KL_ESTIMATORS, k3
from mmalign.rl.policy_losses import (
    POLICY_LOSSES,
    aggregate,
    ppo_clip,
    token_entropy,
    value_loss,
)

from ._helpers import lengths_mask, t, trl_grpo_loss

RATIOS = t([0.5, 1.0, 1.5], [0.5, 1.0, 1.5])
ADV = t(1.0, -1.0)                                                      # per sequence, broadcast over tokens
FULL = torch.ones(2, 3, dtype=torch.bool)


def _logps(ratios: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    old = torch.full_like(ratios, -1.0)
    return (old + ratios.log()).requires_grad_(), old


def test_ppo_clip_by_hand():
    # l = max(-A rho, -A clip(rho, 0.8, 1.2))
    # A = +1: rho 0.5 -> -min(0.5, 0.8) = -0.5 (no clip below for A > 0); 1 -> -1; 1.5 -> -min(1.5, 1.2) = -1.2 clipped
    # A = -1: rho 0.5 -> max(0.5, 0.8) = 0.8 clipped; 1 -> 1; 1.5 -> max(1.5, 1.2) = 1.5 (no clip above for A < 0)
    # token mean over 6: (-0.5 - 1 - 1.2 + 0.8 + 1 + 1.5) / 6 = 0.1
    logps, old = _logps(RATIOS)
    out = ppo_clip(logps, old, ADV, FULL)
    assert_close(out.loss, torch.tensor(0.1, dtype=torch.float64))
    assert_close(out.metrics["clip_frac"], torch.tensor(2 / 6, dtype=torch.float64))
    assert_close(out.metrics["clip_frac_high"], torch.tensor(1 / 6, dtype=torch.float64))
    assert_close(out.metrics["clip_frac_low"], torch.tensor(1 / 6, dtype=torch.float64))
    # approx_kl = mean((log rho)^2 / 2) = (2 ln(0.5)^2 + 2 ln(1.5)^2) / 2 / 6
    assert_close(out.metrics["approx_kl"], torch.tensor((math.log(0.5) ** 2 + math.log(1.5) ** 2) / 6,
                                                        dtype=torch.float64))
    # d l / d logps = -A rho on unclipped tokens, 0 on clipped ones; / 6 for the token mean
    out.loss.backward()
    assert_close(logps.grad, t([-0.5, -1.0, 0.0], [0.0, 1.0, 1.5]) / 6)


def test_on_policy_gradient_is_minus_advantage():
    # one update per rollout: old = logps.detach(), ratio 1, gradient -A per token (over the token count)
    logps = torch.tensor([[-1.0, -2.0]], dtype=torch.float64, requires_grad=True)
    ppo_clip(logps, logps.detach(), t(3.0), torch.ones(1, 2, dtype=torch.bool)).loss.backward()
    assert_close(logps.grad, t([-1.5, -1.5]))


def test_dapo_clip_higher():
    # rho 1.25 with A > 0: symmetric eps 0.2 clips at 1.2 -> -1.2; eps_high 0.28 leaves it -> -1.25
    # rho 0.75 with A < 0: clipped at 0.8 either way -> 0.8
    logps, old = _logps(t([1.25], [0.75]))
    mask = torch.ones(2, 1, dtype=torch.bool)
    symmetric = ppo_clip(logps, old, ADV, mask, loss_agg="token_mean")
    dapo = POLICY_LOSSES["dapo"](logps, old, ADV, mask)
    assert_close(symmetric.loss, torch.tensor((-1.2 + 0.8) / 2, dtype=torch.float64))
    assert_close(dapo.loss, torch.tensor((-1.25 + 0.8) / 2, dtype=torch.float64))
    assert dapo.metrics["clip_frac_high"] == 0 and dapo.metrics["clip_frac_low"] == 0.5


def test_dual_clip_bounds_negative_advantages():
    # A = -1, rho = 5: max(5, 1.2) = 5, dual clip c = 3 -> min(5, 3) = 3; A = +1, rho = 5: -1.2 either way
    logps, old = _logps(t([5.0], [5.0]))
    mask = torch.ones(2, 1, dtype=torch.bool)
    plain = ppo_clip(logps, old, t(-1.0, 1.0), mask, loss_agg="seq_mean_token_mean")
    dual = ppo_clip(logps, old, t(-1.0, 1.0), mask, dual_clip=3.0, loss_agg="seq_mean_token_mean")
    assert_close(plain.loss, torch.tensor((5 - 1.2) / 2, dtype=torch.float64))
    assert_close(dual.loss, torch.tensor((3 - 1.2) / 2, dtype=torch.float64))


# ---- aggregation -------------------------------------------------------------------------------------------------

UNEQUAL = lengths_mask([4, 1], 4)
PER_TOKEN = t([1, 1, 1, 1], [3, 50, 50, 50])                             # 50s are padding


def test_aggregations_differ_on_unequal_lengths():
    # token mean: (4 + 3) / 5 = 1.4; sequence means: (1 + 3) / 2 = 2.0; Dr.GRPO: (4 + 3) / (2 * 4) = 0.875,
    # with max_length 10: 7 / 20 = 0.35
    def agg(mode, **kw):
        return aggregate(PER_TOKEN, UNEQUAL, loss_agg=mode, **kw).item()

    assert agg("token_mean") == pytest.approx(1.4)
    assert agg("seq_mean_token_mean") == pytest.approx(2.0)
    assert agg("seq_mean_token_sum_norm") == pytest.approx(0.875)
    assert agg("seq_mean_token_sum_norm", max_length=10) == pytest.approx(0.35)
    with pytest.raises(ValueError, match="unknown loss_agg"):
        agg("sum")


def test_aggregations_agree_on_equal_lengths():
    per_token = t([1, 2, 3], [4, 5, 9])
    assert aggregate(per_token, FULL, loss_agg="token_mean") == aggregate(per_token, FULL,
                                                                          loss_agg="seq_mean_token_mean")


def test_presets_through_the_policy_loss():
    # ratio 1, A = -l per sequence: each preset's loss is its aggregation of (1, 1, 1, 1) and (3)
    logps = torch.zeros(2, 4, dtype=torch.float64)
    adv = -PER_TOKEN
    expected = {"ppo": 1.4, "bnpo": 1.4, "dapo": 1.4, "grpo": 2.0, "dr_grpo": 0.875}
    for name, value in expected.items():
        assert POLICY_LOSSES[name](logps, logps, adv, UNEQUAL).loss.item() == pytest.approx(value), name


# ---- KL and entropy terms ------------------------------------------------------------------------------------------

def test_kl_in_the_loss_adds_its_gradient():
    g = torch.Generator().manual_seed(0)
    logps = (-torch.rand(2, 3, generator=g, dtype=torch.float64)).requires_grad_()
    ref = -torch.rand(2, 3, generator=g, dtype=torch.float64)
    mask = lengths_mask([3, 2], 3)
    base = ppo_clip(logps, logps.detach(), ADV, mask, ref_logps=ref)
    with_kl = ppo_clip(logps, logps.detach(), ADV, mask, ref_logps=ref, kl_coef=0.1)
    kl_mean = (k3(logps, ref) * mask).sum() / 5
    assert_close(with_kl.loss, base.loss + 0.1 * kl_mean)
    assert_close(with_kl.metrics["kl"], kl_mean.detach())
    (g_base,) = torch.autograd.grad(base.loss, logps)
    (g_kl,) = torch.autograd.grad(with_kl.loss, logps)
    # d k3 / d logps = 1 - exp(ref - logps), over the 5 tokens
    assert_close(g_kl - g_base, 0.1 * (1 - torch.exp(ref - logps.detach())) * mask / 5)


def test_kl_estimator_choices_are_the_registry():
    hint = typing.get_type_hints(ppo_clip)["kl_estimator"]
    assert set(typing.get_args(hint)) == set(KL_ESTIMATORS)


def test_kl_coef_needs_the_reference():
    logps = torch.zeros(2, 3, dtype=torch.float64)
    with pytest.raises(ValueError, match="ref_logps"):
        ppo_clip(logps, logps, ADV, FULL, kl_coef=0.04)


def test_entropy_bonus():
    logps = torch.zeros(2, 3, dtype=torch.float64)
    entropies = t([1.0, 2.0, 3.0], [4.0, 0.0, 0.0])
    mask = lengths_mask([3, 1], 3)
    out = ppo_clip(logps, logps, ADV, mask, entropies=entropies, entropy_coef=0.5)
    # surrogate: -A over tokens: (-1 * 3 + 1) / 4 = -0.5; entropy token mean (1 + 2 + 3 + 4) / 4 = 2.5
    assert_close(out.metrics["entropy"], torch.tensor(2.5, dtype=torch.float64))
    assert_close(out.loss, torch.tensor(-0.5 - 0.5 * 2.5, dtype=torch.float64))


def test_token_entropy():
    logits = torch.tensor([[0.0, 0.0, 0.0, 0.0], [100.0, 0.0, 0.0, 0.0]], dtype=torch.float64)
    assert_close(token_entropy(logits), t(math.log(4), 0.0), atol=1e-12, rtol=0)
    from trl.trainer.utils import entropy_from_logits

    random = torch.randn(3, 5, 11, generator=torch.Generator().manual_seed(0))
    assert_close(token_entropy(random), entropy_from_logits(random))


# ---- value loss ------------------------------------------------------------------------------------------------

def test_value_loss_by_hand():
    # token 0: V 1.0, old 0.5, R 2.0: V_clip = 0.5 + clip(0.5, +-0.2) = 0.7; (1 - 2)^2 = 1 < (0.7 - 2)^2 = 1.69
    # token 1: V = old = 2.0, R 1.0: both 1
    # loss = 0.5 * (1.69 + 1) / 2 = 0.6725; clip frac 1/2; value error (1 + 1) / 2 = 1
    values = torch.tensor([[1.0, 2.0]], dtype=torch.float64, requires_grad=True)
    out = value_loss(values, t([0.5, 2.0]), t([2.0, 1.0]), torch.ones(1, 2, dtype=torch.bool))
    assert_close(out.loss, torch.tensor(0.6725, dtype=torch.float64))
    assert out.metrics["value_clip_frac"] == 0.5 and out.metrics["value_error"] == 1.0
    # the clipped branch is flat in V (clamp saturated): gradient 0; token 1: 0.5 * 2 (V - R) / 2 = 0.5
    out.loss.backward()
    assert_close(values.grad, t([0.0, 0.5]))


# ---- TRL parity ------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loss_type, loss_agg, eps_high", [
    ("grpo", "seq_mean_token_mean", 0.2), ("bnpo", "token_mean", 0.2), ("dapo", "token_mean", 0.28),
    ("dr_grpo", "seq_mean_token_sum_norm", 0.2)])
@pytest.mark.parametrize("beta", [0.0, 0.04])
def test_matches_trl_grpo_loss(loss_type, loss_agg, eps_high, beta):
    g = torch.Generator().manual_seed(7)
    mask = lengths_mask([6, 2, 4, 1, 5, 3], 6)
    logps = -2 * torch.rand(6, 6, generator=g, dtype=torch.float64)
    old = logps + 0.4 * torch.randn(6, 6, generator=g, dtype=torch.float64)       # ratios well outside 1 +- 0.2
    ref = logps + 0.3 * torch.randn(6, 6, generator=g, dtype=torch.float64)
    adv = torch.randn(6, generator=g, dtype=torch.float64)
    ours_logps, trl_logps = logps.clone().requires_grad_(), logps.clone().requires_grad_()
    ours = ppo_clip(ours_logps, old, adv, mask, ref_logps=ref, kl_coef=beta, clip_eps_high=eps_high,
                    loss_agg=loss_agg, max_length=8)
    trl_loss, trl_metrics = trl_grpo_loss(trl_logps, old, ref, adv, mask, loss_type=loss_type, beta=beta,
                                          epsilon=0.2, epsilon_high=eps_high, max_completion_length=8)
    assert_close(ours.loss, trl_loss)
    assert 0 < ours.metrics["clip_frac"] < 1
    assert ours.metrics["clip_frac"].item() == pytest.approx(trl_metrics["clip_ratio/region_mean"])
    if beta:
        assert ours.metrics["kl"].item() == pytest.approx(trl_metrics["kl"])
    ours.loss.backward()
    trl_loss.backward()
    assert_close(ours_logps.grad, trl_logps.grad)

"""KL estimators: hand values, k3 >= 0, and, on a categorical distribution where the expectations are exact sums,
which estimator is unbiased for KL(pi_theta || pi_ref) and which gradient each gives in the loss or in the reward."""
from __future__ import annotations

import math

import pytest
import torch
from torch.testing import assert_close

from mmalign.rl.kl import KL_ESTIMATORS, k1, k1_clamped, k2, k3

from ._helpers import t

LOGPS, REF = t(-1.0, -2.0, -0.5), t(-1.5, -1.0, -0.5)   # delta = logps - ref = (0.5, -1, 0)


def test_values_by_hand():
    assert_close(k1(LOGPS, REF), t(0.5, -1.0, 0.0))
    assert_close(k2(LOGPS, REF), t(0.125, 0.5, 0.0))                      # delta^2 / 2
    # log r = ref - logps = (-0.5, 1, 0): e^-0.5 + 0.5 - 1 = 0.106531, e - 1 - 1 = 0.718282, 0
    assert_close(k3(LOGPS, REF), t(math.exp(-0.5) - 0.5, math.e - 2, 0.0))
    assert_close(k1_clamped(LOGPS, REF), t(0.5, 0.0, 0.0))


def test_k2_k3_nonnegative_and_zero_only_at_equality():
    g = torch.Generator().manual_seed(0)
    a, b = -3 * torch.rand(1000, generator=g, dtype=torch.float64), -3 * torch.rand(1000, generator=g, dtype=torch.float64)
    for fn in (k2, k3):
        assert (fn(a, b) >= 0).all() and (fn(a, b) > 0).all()
        assert (fn(a, a) == 0).all()
    assert (k1(a, b) < 0).any()                                           # k1 is not a per-token divergence


def _categorical():
    theta = torch.tensor([0.3, -0.2, 1.0, 0.1], dtype=torch.float64, requires_grad=True)
    logp = torch.log_softmax(theta, 0)
    ref = torch.log_softmax(torch.tensor([0.0, 0.5, -0.4, 0.2], dtype=torch.float64), 0)
    return theta, logp, ref


def _reverse_kl(logp, ref):
    return (logp.exp() * (logp - ref)).sum()


def test_k1_and_k3_unbiased_k2_biased():
    # E_{y ~ pi_theta}[k(y)] as an exact sum over the four outcomes
    _, logp, ref = _categorical()
    p = logp.exp().detach()
    kl = _reverse_kl(logp, ref).detach()
    assert_close((p * k1(logp, ref)).sum().detach(), kl)
    assert_close((p * k3(logp, ref)).sum().detach(), kl)
    assert not torch.isclose((p * k2(logp, ref)).sum().detach(), kl)


@pytest.mark.parametrize("name, target", [("k1", "zero"), ("k2", "reverse"), ("k3", "forward")])
def test_gradient_in_the_loss(name, target):
    # the loss term's pathwise gradient averaged over y ~ pi_theta (weights detached): E[grad k(y)]
    theta, logp, ref = _categorical()
    (grad,) = torch.autograd.grad((logp.exp().detach() * KL_ESTIMATORS[name](logp, ref)).sum(), theta,
                                retain_graph=True)
    if target == "zero":
        expected = torch.zeros(4, dtype=torch.float64)
    elif target == "reverse":
        (expected,) = torch.autograd.grad(_reverse_kl(logp, ref), theta)
    else:   # forward KL(pi_ref || pi_theta) = sum_y q (log q - log p)
        (expected,) = torch.autograd.grad((ref.exp() * (ref - logp)).sum(), theta)
    assert_close(grad, expected)


def test_k1_in_the_reward_gives_the_reverse_kl_gradient():
    # REINFORCE with the detached k1 as (negative) reward: E[k1(y) grad log p(y)] = grad KL(pi_theta || pi_ref)
    theta, logp, ref = _categorical()
    surrogate = (logp.exp().detach() * k1(logp, ref).detach() * logp).sum()
    (grad,) = torch.autograd.grad(surrogate, theta, retain_graph=True)
    (expected,) = torch.autograd.grad(_reverse_kl(logp, ref), theta)
    assert_close(grad, expected)

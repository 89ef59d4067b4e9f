"""PRIME's implicit PRM: token rewards and the outcome cross-entropy by hand, against PRIME's own formula."""
from __future__ import annotations

import math

import torch.nn.functional as F
from torch.testing import assert_close

from mmalign.rl.prime import implicit_process_rewards, prm_loss

from ._helpers import lengths_mask, t

PRM = t([-1.0, -2.0, -0.5], [-3.0, -1.0, 9.0])                          # 9.0 is padding
REF = t([-1.5, -1.0, -0.5], [-1.0, -1.0, 0.0])
MASK = lengths_mask([3, 2], 3)


def test_implicit_process_rewards_by_hand():
    # beta 0.05 * (prm - ref) = 0.05 * (0.5, -1, 0) and 0.05 * (-2, 0), zero on padding
    prm = PRM.clone().requires_grad_()
    rewards = implicit_process_rewards(prm, REF, MASK)
    assert_close(rewards, t([0.025, -0.05, 0.0], [-0.1, 0.0, 0.0]))
    assert not rewards.requires_grad


def test_prm_loss_by_hand():
    # summed log-ratios (-0.5, -2); beta 0.5 -> logits (-0.25, -1); outcomes (1, 0)
    # loss = softplus(-z) for o = 1, softplus(z) for o = 0: log(1 + e^0.25) = 0.825939, log(1 + e^-1) = 0.313262
    prm = PRM.clone().requires_grad_()
    out = prm_loss(prm, REF, MASK, t(1, 0), beta=0.5)
    assert_close(out.loss, t(math.log1p(math.exp(0.25)), math.log1p(math.exp(-1))))
    assert_close(out.metrics["prm_accuracy"], t(0, 1))
    # PRIME's compute_ce_dpo_loss_rm: binary_cross_entropy(sigmoid(sum(q * mask) * beta), acc), a mean
    prime = F.binary_cross_entropy(((PRM - REF) * MASK).sum(1).mul(0.5).sigmoid(), t(1, 0))
    assert_close(out.loss.mean(), prime)
    out.loss.sum().backward()
    # d/d prm_t of softplus(-beta * s) = -beta * sigma(-z) per token (row 0), beta * sigma(z) (row 1); 0 on padding
    s0, s1 = 0.5 * (1 / (1 + math.exp(-0.25))), 0.5 * (1 / (1 + math.exp(1)))
    assert_close(prm.grad, t([-s0, -s0, -s0], [s1, s1, 0.0]))

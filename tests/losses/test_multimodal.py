"""Multimodal losses: hand-worked values, detach/gradient checks, and TRL parity where TRL has the objective.

Hand-worked numbers use ``_helpers.hand_batch`` (B = 2): h(y_w) = (1, -0.5), h(y_l) = (-1, 0.5), Delta = (2, -1),
h(y_w|I') = (-0.5, 1), h(y_noise) = (-0.5, 1), NLL(y_w) = (1.5, 0.75); weighted scores give Delta~ = (0.75, 0).
``nls(z)`` is -log sigma(z).
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

from mmalign.losses import multimodal as M
from mmalign.losses.preference import dpo
from mmalign.types import SeqLogps

from ._helpers import hand_batch, nls, sig, t, token_batch, trl_dpo


def close(actual: torch.Tensor, *expected: float) -> None:
    assert_close(actual, t(*expected), rtol=0, atol=1e-12)


def test_mdpo_by_hand():
    # L_DPO + L_img + L_anc with beta = 0.1, anchor delta = 0:
    # pair 1: nls(0.1 * 2) + nls(0.1 * (1 - -0.5)) + nls(0.1 * 1) = 0.598139 + 0.620957 + 0.644397 = 1.863493
    # pair 2: nls(0.1 * -1) + nls(0.1 * (-0.5 - 1)) + nls(0.1 * -0.5) = 0.744397 + 0.770957 + 0.718460 = 2.233813
    out = M.mdpo(*hand_batch())
    close(out.loss, nls(0.2) + nls(0.15) + nls(0.1), nls(-0.1) + nls(-0.15) + nls(-0.05))
    close(out.metrics["image_loss"], nls(0.15), nls(-0.15))
    close(out.metrics["anchor_loss"], nls(0.1), nls(-0.05))
    close(out.metrics["corrupt_reward"], -0.05, 0.1)
    close(out.metrics["image_accuracy"], 1.0, 0.0)


def test_image_dpo_by_hand():
    # only the image term: nls(0.1 * (1 - -0.5)) = 0.620957, nls(0.1 * (-0.5 - 1)) = 0.770957
    policy, reference = hand_batch()
    out = M.image_dpo(policy, reference)
    close(out.loss, nls(0.15), nls(-0.15))
    close(out.metrics["rejected_reward"], -0.05, 0.1)  # beta * h(y|I') plays the rejected side
    # y_l is never read: the (I, I', x, y) tuple has no second answer
    nan = SeqLogps(t(math.nan, math.nan), t(1, 1))
    close(M.image_dpo(replace(policy, rejected=nan), replace(reference, rejected=nan)).loss, nls(0.15), nls(-0.15))


def test_hadpo_by_hand():
    # DPO + 0.5 * L_LM, L_LM = 2.0: nls(0.2) + 1 = 1.598139, nls(-0.1) + 1 = 1.744397
    close(M.hadpo(*hand_batch(), sft_nll=torch.tensor(2.0, dtype=torch.float64)).loss, nls(0.2) + 1, nls(-0.1) + 1)


def test_hadpo_lm_term_carries_gradient():
    # the SFT NLL is trained, not a constant: d mean(loss) / d sft_nll = gamma = 0.5
    sft_nll = torch.tensor(2.0, dtype=torch.float64, requires_grad=True)
    M.hadpo(*hand_batch(), sft_nll=sft_nll).loss.mean().backward()
    assert sft_nll.grad.item() == pytest.approx(0.5)


def test_ddpo_by_hand():
    # Delta~ = ((-1.25 - -1.5) - (-1.5 - -1), (-2 - -1.5) - (-1.5 - -1)) = (0.75, 0)
    # nls(0.1 * 0.75) = 0.656350, nls(0) = log 2 = 0.693147
    close(M.ddpo(*hand_batch()).loss, nls(0.075), math.log(2))


def test_ddpo_with_unit_weights_is_dpo_on_mean_logps():
    # w_t = 1 everywhere: S~ = A, the length-normalised DPO that TRL 1.16 calls "sigmoid_norm"
    pytest.importorskip("trl")
    batch = token_batch(seed=11)

    def unit(p):
        ones = lambda s: replace(s, weighted=s.sum, weight_sum=s.count)
        return replace(p, chosen=ones(p.chosen), rejected=ones(p.rejected))

    expected, _ = trl_dpo(batch, ["sigmoid_norm"], beta=0.1)
    assert_close(M.ddpo(unit(batch.policy), unit(batch.reference)).loss, expected, rtol=0, atol=1e-6)


def test_mmdpo_paper_by_hand():
    # beta(d) = 0.1 * (1 + 0.1 * (1 - e^{-1 * d})), d = (1, 0): (0.106321, 0.1)
    # pair 1: nls(0.106321 * 2) + 0.25 * 1.5 = 0.967467; pair 2: nls(0.1 * -1) + 0.25 * 0.75 = 0.931897
    b1 = 0.1 * (1 + 0.1 * (1 - math.exp(-1)))
    out = M.mmdpo(*hand_batch(), reward_margin=t(1, 0))
    close(out.loss, nls(b1 * 2) + 0.25 * 1.5, nls(-0.1) + 0.25 * 0.75)
    close(out.metrics["beta"], b1, 0.1)
    close(out.metrics["chosen_reward"], 0.1, -0.05)  # rewards are reported with beta0


def test_mmdpo_paper_saturates_at_one_plus_w():
    # d -> infinity: beta -> beta0 * (1 + w) = 0.1 * 1.5; k sets the speed: d = 1, k = 2 -> 0.1 * (1 + 0.5 (1 - e^-2))
    out = M.mmdpo(*hand_batch(), w=0.5, k=2.0, reward_margin=t(1e4, 1))
    close(out.metrics["beta"], 0.15, 0.1 * (1 + 0.5 * (1 - math.exp(-2))))


def test_mmdpo_beta_is_detached():
    policy, reference = hand_batch()
    s_w = policy.chosen.sum.clone().requires_grad_()
    policy = replace(policy, chosen=replace(policy.chosen, sum=s_w))
    d = t(1, 0).requires_grad_()
    loss = M.mmdpo(policy, reference, reward_margin=d).loss.sum()
    g_w, g_d = torch.autograd.grad(loss, [s_w, d], allow_unused=True)
    assert g_d is None
    b1 = 0.1 * (1 + 0.1 * (1 - math.exp(-1)))
    close(g_w, -b1 * sig(-b1 * 2), -0.1 * sig(0.1))  # -beta sigma(-beta Delta), beta a constant


def test_mmdpo_released_by_hand():
    # Delta = (2, -1): mean 0.5, both at 1.5 / std from the mean, so equal Gaussian weights; int(0.8 * 2) = 1 draw.
    # Drawn 2:  beta = 0.1 * (1 + 0.1 * (2 - 0.5))  = 0.115;  drawn -1: beta = 0.1 * (1 + 0.1 * (-1 - 0.5)) = 0.085
    seen = set()
    for seed in range(40):
        out = M.mmdpo(*hand_batch(), variant="released", reward_margin=t(math.nan, math.nan),  # margin ignored
                      generator=torch.Generator().manual_seed(seed))
        beta = out.metrics["beta"].item()
        assert beta == pytest.approx(0.115) or beta == pytest.approx(0.085)
        close(out.loss, nls(beta * 2) + 0.25 * 1.5, nls(-beta) + 0.25 * 0.75)
        seen.add(round(beta, 6))
    assert seen == {0.115, 0.085}


def test_mmdpo_released_is_reproducible_with_a_generator_and_clamped():
    run = lambda seed, w=0.1: M.mmdpo(*hand_batch(), variant="released", w=w, reward_margin=t(0, 0),
                                      generator=torch.Generator().manual_seed(seed)).metrics["beta"].item()
    assert run(3) == run(3)
    # w = 100: beta = 0.1 * (1 + 100 * 1.5) = 15.1, or 0.1 * (1 - 150) < 0 -> clamped to 1e-3
    assert {round(run(s, w=100.0), 6) for s in range(40)} == {15.1, 0.001}


def test_mmdpo_released_beta_is_detached():
    # beta is computed from Delta but carries no gradient: d loss / dS_w = -beta sigma(-beta Delta) only
    policy, reference = hand_batch()
    s_w = policy.chosen.sum.clone().requires_grad_()
    policy = replace(policy, chosen=replace(policy.chosen, sum=s_w))
    out = M.mmdpo(policy, reference, variant="released", reward_margin=t(0, 0),
                  generator=torch.Generator().manual_seed(0))
    out.loss.sum().backward()
    beta = out.metrics["beta"].item()
    close(s_w.grad, -beta * sig(-beta * 2), -beta * sig(beta))


def test_mmdpo_rejects_an_unknown_variant():
    with pytest.raises(ValueError, match="variant"):
        M.mmdpo(*hand_batch(), variant="relased", reward_margin=t(0, 0))


def test_povid_by_hand():
    # 0.5 * nls(0.1 * 2) + 0.5 * nls(0.1 * (1 - -0.5)) = 0.609548
    # 0.5 * nls(0.1 * -1) + 0.5 * nls(0.1 * (-0.5 - 1)) = 0.757677
    out = M.povid(*hand_batch())
    close(out.loss, 0.5 * nls(0.2) + 0.5 * nls(0.15), 0.5 * nls(-0.1) + 0.5 * nls(-0.15))
    close(out.metrics["noise_reward"], -0.05, 0.1)


def test_povid_with_noise_equal_to_rejected_is_dpo():
    policy, reference = hand_batch()
    policy, reference = replace(policy, noise=policy.rejected), replace(reference, noise=reference.rejected)
    assert_close(M.povid(policy, reference).loss, dpo(policy, reference).loss)

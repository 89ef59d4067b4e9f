"""Generic preference losses: hand-worked values, detach/gradient checks, and parity with TRL 1.16's own code.

Hand-worked numbers use the batch of ``_helpers.hand_batch`` (B = 2): h(y_w) = (1, -0.5), h(y_l) = (-1, 0.5),
Delta = (2, -1); with beta = 0.1, beta * Delta = (0.2, -0.1). ``nls(z)`` is -log sigma(z).
"""
from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
from torch.testing import assert_close

from mmalign.losses import preference as P
from mmalign.losses.state import RunningMean
from mmalign.types import PreferenceLogps

from ._helpers import (
    hand_batch,
    nls,
    random_mask,
    random_tokens,
    sig,
    t,
    token_batch,
    trl_cpo_loss,
    trl_dpo,
    trl_kto,
    trl_odds_ratio_loss,
)


def close(actual: torch.Tensor, *expected: float) -> None:
    assert_close(actual, t(*expected), rtol=0, atol=1e-12)


# ---------------------------------------------------------------- hand-worked values, every loss in this module

def test_dpo_by_hand():
    # -log sigma(0.1 * 2) = 0.598139, -log sigma(0.1 * -1) = 0.744397
    out = P.dpo(*hand_batch())
    close(out.loss, nls(0.2), nls(-0.1))
    # rewards beta * h: (0.1, -0.05) and (-0.1, 0.05); margin (0.2, -0.1); the second pair is ranked wrong
    close(out.metrics["chosen_reward"], 0.1, -0.05)
    close(out.metrics["rejected_reward"], -0.1, 0.05)
    close(out.metrics["margin"], 0.2, -0.1)
    close(out.metrics["accuracy"], 1.0, 0.0)


def test_dpo_beta():
    # beta = 0.5: -log sigma(1.0) = 0.313262, -log sigma(-0.5) = 0.974077
    close(P.dpo(*hand_batch(), beta=0.5).loss, nls(1.0), nls(-0.5))


def test_cdpo_by_hand():
    # eps = 0.1: 0.9 * nls(0.2) + 0.1 * nls(-0.2) = 0.618139; 0.9 * nls(-0.1) + 0.1 * nls(0.1) = 0.734397
    close(P.cdpo(*hand_batch()).loss, 0.9 * nls(0.2) + 0.1 * nls(-0.2), 0.9 * nls(-0.1) + 0.1 * nls(0.1))
    close(P.cdpo(*hand_batch(), label_smoothing=0.0).loss, nls(0.2), nls(-0.1))  # eps = 0 is DPO


def test_robust_by_hand():
    # minus on the flipped term, divided by 1 - 2 eps = 0.8:
    # (0.9 * nls(0.2) - 0.1 * nls(-0.2)) / 0.8 = 0.573139; (0.9 * nls(-0.1) - 0.1 * nls(0.1)) / 0.8 = 0.756897
    close(P.robust(*hand_batch()).loss,
          (0.9 * nls(0.2) - 0.1 * nls(-0.2)) / 0.8, (0.9 * nls(-0.1) - 0.1 * nls(0.1)) / 0.8)


def test_ipo_by_hand():
    # length-normalised: Delta_avg = (1/2 - -1/3, -0.5/4 - 0.5/2) = (0.8333, -0.375); 1/(2 tau) = 5
    # (0.8333 - 5)^2 = 17.361111, (-0.375 - 5)^2 = 28.890625
    close(P.ipo(*hand_batch()).loss, (1 / 2 + 1 / 3 - 5) ** 2, (-0.5 / 4 - 0.5 / 2 - 5) ** 2)


def test_hinge_by_hand():
    # max(0, 1 - 0.2) = 0.8, max(0, 1 + 0.1) = 1.1; beta = 1: max(0, 1 - 2) = 0, max(0, 1 + 1) = 2
    close(P.hinge(*hand_batch()).loss, 0.8, 1.1)
    close(P.hinge(*hand_batch(), beta=1.0).loss, 0.0, 2.0)


def test_simpo_by_hand():
    # A(y_w) = (-1.5, -0.75), A(y_l) = (-2, -3); beta = 2, gamma = 0.25 * 2 = 0.5
    # 2 * 0.5 - 0.5 = 0.5 -> 0.474077;  2 * 2.25 - 0.5 = 4.0 -> 0.018150
    policy, _ = hand_batch()
    out = P.simpo(policy, None)
    close(out.loss, nls(0.5), nls(4.0))
    close(out.metrics["chosen_reward"], -3.0, -1.5)  # beta * A(y_w)


def test_orpo_by_hand():
    # log_OR = (A_w - A_l) - (log(1 - e^A_w) - log(1 - e^A_l)); pair 1: 0.5 - (log(1 - e^-1.5) - log(1 - e^-2))
    # = 0.607069; loss = NLL + 0.1 * nls(log_OR) = 1.5 + 0.1 * 0.434989 = 1.543499; pair 2: log_OR = 2.838284
    policy, _ = hand_batch()
    log_or = [(aw - al) - (math.log(1 - math.exp(aw)) - math.log(1 - math.exp(al))) for aw, al in [(-1.5, -2), (-0.75, -3)]]
    out = P.orpo(policy, None)
    close(out.loss, 1.5 + 0.1 * nls(log_or[0]), 0.75 + 0.1 * nls(log_or[1]))
    close(out.metrics["log_odds_ratio"], *log_or)


def test_log1mexp_is_stable_at_both_ends():
    x = torch.tensor([-1e-10, -0.5, -0.7, -1.0, -50.0], dtype=torch.float64)
    assert_close(P.log1mexp(x), torch.tensor([math.log(-math.expm1(v)) for v in x.tolist()], dtype=torch.float64))
    assert torch.isfinite(P.log1mexp(torch.tensor([-1e-30, -1e-8]))).all()  # float32, near 0: no log(0)


def test_kto_by_hand():
    # z0 = max(0, mean(0.4, 0.2)) = 0.3
    # pair 1: [(1 - sigma(0.1 * (1 - 0.3))) + (1 - sigma(0.1 * (0.3 - -1)))] / 2 = 0.475026
    # pair 2: [(1 - sigma(0.1 * (-0.5 - 0.3))) + (1 - sigma(0.1 * (0.3 - 0.5)))] / 2 = 0.512495
    out = P.kto(*hand_batch(), kl_logratio=t(0.4, 0.2))
    close(out.loss, ((1 - sig(0.07)) + (1 - sig(0.13))) / 2, ((1 - sig(-0.08)) + (1 - sig(-0.02))) / 2)
    close(out.metrics["kl"].reshape(1), 0.3)


def test_kto_reference_point_is_clamped_at_zero_and_weights_apply():
    # mean(-0.4, -0.2) < 0 -> z0 = 0; w_D = 2, w_U = 0.5: [2 (1 - sigma(0.1)) + 0.5 (1 - sigma(0.1))] / 2
    out = P.kto(*hand_batch(), kl_logratio=t(-0.4, -0.2), desirable_weight=2.0, undesirable_weight=0.5)
    close(out.loss, (2 * (1 - sig(0.1)) + 0.5 * (1 - sig(0.1))) / 2,
          (2 * (1 - sig(-0.05)) + 0.5 * (1 - sig(-0.05))) / 2)


def test_bco_by_hand():
    # r_w = (0.1, -0.05), r_l = (-0.1, 0.05), delta = 0.05
    # pair 1: nls(0.1 - 0.05) + nls(-(-0.1 - 0.05)) = 1.289417; pair 2: nls(-0.1) + nls(0) = 1.437544
    out = P.bco(*hand_batch(), reward_mean=torch.tensor(0.05, dtype=torch.float64))
    close(out.loss, nls(0.05) + nls(0.15), nls(-0.1) + nls(0.0))
    close(out.metrics["rewards"], 0.0, 0.0)  # (r_w + r_l) / 2, what the trainer feeds the RunningMean


def test_nca_by_hand():
    # nls(r_w) + 0.5 nls(-r_w) + 0.5 nls(-r_l): 1.338793, 1.411919
    close(P.nca(*hand_batch()).loss,
          nls(0.1) + 0.5 * nls(-0.1) + 0.5 * nls(0.1), nls(-0.05) + 0.5 * nls(0.05) + 0.5 * nls(-0.05))


def test_apo_zero_by_hand():
    # (1 - sigma(r_w)) + sigma(r_l): 0.950042, 1.024995
    close(P.apo_zero(*hand_batch()).loss, (1 - sig(0.1)) + sig(-0.1), (1 - sig(-0.05)) + sig(0.05))


def test_apo_down_by_hand():
    # sigma(r_w) + (1 - sigma(beta * Delta)): 0.975145, 1.012482
    close(P.apo_down(*hand_batch()).loss, sig(0.1) + (1 - sig(0.2)), sig(-0.05) + (1 - sig(-0.1)))


def test_rpo_by_hand():
    # DPO + 1.0 * NLL(y_w) = nls(0.2) + 1.5 = 2.098139, nls(-0.1) + 0.75 = 1.494397
    close(P.rpo(*hand_batch()).loss, nls(0.2) + 1.5, nls(-0.1) + 0.75)
    close(P.rpo(*hand_batch(), alpha=0.5).loss, nls(0.2) + 0.75, nls(-0.1) + 0.375)


# ---------------------------------------------------------------- gradients and what is detached

def _with_grad(policy: PreferenceLogps) -> tuple[PreferenceLogps, torch.Tensor]:
    s_w = policy.chosen.sum.clone().requires_grad_()
    return replace(policy, chosen=replace(policy.chosen, sum=s_w)), s_w


def test_dpo_gradient_closed_form():
    # d/dS_w [-log sigma(beta Delta)] = -beta sigma(-beta Delta)
    policy, reference = hand_batch()
    policy, s_w = _with_grad(policy)
    P.dpo(policy, reference).loss.sum().backward()
    close(s_w.grad, -0.1 * sig(-0.2), -0.1 * sig(0.1))


def test_kto_reference_point_is_detached():
    policy, reference = hand_batch()
    policy, s_w = _with_grad(policy)
    kl = t(0.4, 0.2).requires_grad_()
    loss = P.kto(policy, reference, kl_logratio=kl).loss.sum()
    g_w, g_kl = torch.autograd.grad(loss, [s_w, kl], allow_unused=True)
    assert g_kl is None
    # d/dS_w of (1 - sigma(beta (h_w - z0))) / 2 = -beta sigma'(u) / 2, u = 0.1 * (h_w - 0.3)
    close(g_w, *[-0.1 * sig(u) * (1 - sig(u)) / 2 for u in (0.07, -0.08)])


def test_bco_reward_mean_is_detached():
    policy, reference = hand_batch()
    policy, s_w = _with_grad(policy)
    delta = torch.tensor(0.05, dtype=torch.float64, requires_grad=True)
    loss = P.bco(policy, reference, reward_mean=delta).loss.sum()
    g_w, g_delta = torch.autograd.grad(loss, [s_w, delta], allow_unused=True)
    assert g_delta is None
    close(g_w, -0.1 * sig(-(0.1 - 0.05)), -0.1 * sig(-(-0.05 - 0.05)))  # d nls(r_w - delta) / dS_w


def test_every_metric_is_detached():
    policy, reference = hand_batch()
    policy, _ = _with_grad(policy)
    for out in (P.dpo(policy, reference), P.kto(policy, reference, kl_logratio=t(0.1, 0.2)),
                P.bco(policy, reference, reward_mean=t(0.0)[0]), P.orpo(policy, None), P.simpo(policy, None)):
        assert out.loss.requires_grad and not any(m.requires_grad for m in out.metrics.values())


# ---------------------------------------------------------------- RunningMean (BCO's delta)

def test_running_mean_is_cumulative():
    running = RunningMean()
    assert running.mean == 0.0  # the first BCO step sees delta = 0
    running.update(t(1, 2, 3))
    running.update(t(4, 5).requires_grad_())
    assert running.mean == pytest.approx(3.0) and running.count == 5  # (1 + 2 + 3 + 4 + 5) / 5
    restored = RunningMean()
    restored.load_state_dict(running.state_dict())
    restored.update(t(9))
    assert restored.mean == pytest.approx(4.0)  # (15 + 9) / 6


# ---------------------------------------------------------------- parity with TRL 1.16 (its own code, called)

TRL_DPO_CASES = [  # (TRL loss_types, our function, our kwargs, TRL kwargs)
    (["sigmoid"], P.dpo, {"beta": 0.1}, {"beta": 0.1}),
    (["hinge"], P.hinge, {"beta": 0.5}, {"beta": 0.5}),  # beta 0.5 puts pairs on both sides of the hinge
    (["ipo"], P.ipo, {"beta": 0.1}, {"beta": 0.1}),
    (["robust"], P.robust, {"beta": 0.1, "label_smoothing": 0.2}, {"beta": 0.1, "label_smoothing": 0.2}),
    (["nca_pair"], P.nca, {"beta": 0.1}, {"beta": 0.1}),
    (["apo_zero"], P.apo_zero, {"beta": 0.1}, {"beta": 0.1}),
    (["apo_down"], P.apo_down, {"beta": 0.1}, {"beta": 0.1}),
    (["sigmoid", "sft"], P.rpo, {"beta": 0.1, "alpha": 0.7}, {"beta": 0.1, "loss_weights": [1.0, 0.7]}),
]


@pytest.mark.parametrize("loss_types,fn,ours,theirs", TRL_DPO_CASES, ids=[c[1].__name__ for c in TRL_DPO_CASES])
@pytest.mark.parametrize("seed", [0, 1])
def test_parity_with_trl_dpo_trainer(loss_types, fn, ours, theirs, seed):
    pytest.importorskip("trl")
    batch = token_batch(seed=seed)
    expected, trl_metrics = trl_dpo(batch, loss_types, **theirs)
    out = fn(batch.policy, batch.reference, **ours)
    assert_close(out.loss, expected, rtol=0, atol=1e-6)
    for i, m in enumerate(trl_metrics):  # TRL logs beta * h, their margin and accuracy for every loss type
        for ours_key, trl_key in [("chosen_reward", "rewards/chosen"), ("rejected_reward", "rewards/rejected"),
                                  ("margin", "rewards/margins"), ("accuracy", "rewards/accuracies")]:
            assert out.metrics[ours_key][i].item() == pytest.approx(m[trl_key], abs=1e-6)


def test_parity_bco_with_trl_bco_pair_at_zero_reward_mean():
    # Gotcha: TRL 1.16's bco_pair dropped the running mean (delta = 0); ours takes delta as an input.
    pytest.importorskip("trl")
    batch = token_batch(seed=2)
    expected, _ = trl_dpo(batch, ["bco_pair"], beta=0.1)
    assert_close(P.bco(batch.policy, batch.reference, reward_mean=t(0.0)[0]).loss, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(P.bco(batch.policy, batch.reference, reward_mean=t(0.3)[0]).loss, expected)


def test_trl_sigmoid_ignores_label_smoothing():
    # Gotcha: TRL 1.16's "sigmoid" is plain DPO whatever label_smoothing says, so cDPO is its own loss here.
    pytest.importorskip("trl")
    batch = token_batch(seed=3)
    expected, _ = trl_dpo(batch, ["sigmoid"], beta=0.1, label_smoothing=0.2)
    assert_close(P.dpo(batch.policy, batch.reference).loss, expected, rtol=0, atol=1e-6)
    assert not torch.allclose(P.cdpo(batch.policy, batch.reference, label_smoothing=0.2).loss, expected)


def test_parity_cdpo_with_trl_cpo_sigmoid_on_log_ratios():
    # TRL 1.16 keeps the cDPO formula in CPOTrainer.cpo_loss's "sigmoid" branch (reference-free logits
    # pi_w - pi_l); fed the log-ratios h(y_w), h(y_l) instead, it is exactly TRL's cDPO.
    pytest.importorskip("trl")
    batch = token_batch(seed=4)
    h_w = batch.policy.chosen.sum - batch.reference.chosen.sum
    h_l = batch.policy.rejected.sum - batch.reference.rejected.sum
    expected = trl_cpo_loss(h_w, h_l, loss_type="sigmoid", beta=0.1, label_smoothing=0.2)
    assert_close(P.cdpo(batch.policy, batch.reference, label_smoothing=0.2).loss, expected, rtol=0, atol=1e-6)


@pytest.mark.parametrize("beta,ratio", [(2.0, 0.25), (2.5, 0.4)])
def test_parity_simpo_with_trl_cpo(beta, ratio):
    # TRL: CPOTrainer(loss_type="simpo") on average log-probs, simpo_gamma = gamma itself = ratio * beta.
    pytest.importorskip("trl")
    policy = token_batch(seed=5).policy
    expected = trl_cpo_loss(policy.chosen.mean, policy.rejected.mean, loss_type="simpo", beta=beta,
                            simpo_gamma=ratio * beta)
    assert_close(P.simpo(policy, None, beta=beta, gamma_beta_ratio=ratio).loss, expected, rtol=0, atol=1e-6)


def test_parity_orpo_with_trl_odds_ratio_loss():
    # TRL: loss = NLL - mean(odds_ratio_loss(...)[0]), the latter beta * log sigma(log_OR) (TRL casts to float32).
    pytest.importorskip("trl")
    policy = token_batch(seed=6, scale=1.0).policy  # short, likely answers: A near 0, both log1mexp branches
    ratio_term, r_w, r_l, _, mean_log_odds = trl_odds_ratio_loss(policy.chosen.mean, policy.rejected.mean, beta=0.1)
    out = P.orpo(policy, None, beta=0.1)
    assert_close(out.loss, policy.chosen_nll - ratio_term.double(), rtol=0, atol=1e-6)
    assert out.metrics["log_odds_ratio"].mean().item() == pytest.approx(mean_log_odds.item(), abs=1e-5)
    assert_close(out.metrics["chosen_reward"], r_w.double(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("weights", [(1.0, 1.0), (1.3, 0.8)])
def test_parity_kto_with_trl_kto_trainer(weights):
    # TRL averages 2B unpaired losses; z0 is the clamped mean over the 2B mismatched completions.
    pytest.importorskip("trl")
    batch = token_batch(seed=7)
    g = torch.Generator().manual_seed(8)
    kl_mask = random_mask(g, 12, 7)
    kl_pol, kl_ref = random_tokens(g, kl_mask, 3.0), random_tokens(g, kl_mask, 3.0)
    expected = trl_kto(batch, kl_mask, kl_pol, kl_ref, beta=0.1, desirable_weight=weights[0],
                       undesirable_weight=weights[1])
    out = P.kto(batch.policy, batch.reference, desirable_weight=weights[0], undesirable_weight=weights[1],
                kl_logratio=kl_pol.sum(-1) - kl_ref.sum(-1))
    assert out.loss.mean().item() == pytest.approx(expected.item(), abs=1e-6)

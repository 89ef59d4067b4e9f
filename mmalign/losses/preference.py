"""Generic offline preference losses (LLM-derived; ALGORITHMS.md §2), one pure function each.

Signature: ``fn(policy, reference, *, <hyperparameters>, <data inputs>) -> LossOutput``. ``policy`` and
``reference`` are ``PreferenceLogps`` of the same batch (``reference`` is None for reference-free losses).
Hyperparameters are keyword-only with defaults; data inputs (``kl_logratio``, ``reward_mean``) are keyword-only
without defaults and come from the trainer, as the loss's ``LossSpec`` flags say. Losses are per example, ``(B,)``.

Notation: ``h(y) = S_theta(y) - S_ref(y)`` (summed log-ratio), ``Delta = h(y_w) - h(y_l)``, implicit reward
``r = beta * h``, ``A(y)`` the token-mean log-prob. Reference log-probs carry no gradient by construction (computed
under ``no_grad``), so nothing here detaches them again.

Deviations from the papers and TRL 1.16 (each repeated where it applies):
* ``cdpo`` is its own loss: TRL 1.16's ``sigmoid`` has no label smoothing. ``cdpo`` and ``robust`` default to
  ``label_smoothing=0.1`` (TRL's default 0.0 turns both into plain DPO).
* ``kto`` on pairs: the per-pair loss is the mean of its desirable and undesirable terms, so the batch mean equals
  TRL's ``KTOTrainer`` loss on the same 2B unpaired examples.
* ``bco`` keeps the running reward mean ``delta`` that TRL 1.16's ``bco_pair`` dropped (``reward_mean=0`` is TRL 1.16).
  The trainer updates the mean after each step, so ``delta`` lags one batch behind old TRL, which updated first.
* ``rpo`` and ``orpo`` take NLL(y_w) per example (token mean of each response); TRL's ``sft`` term and ORPO's NLL
  average over all chosen tokens of the batch. The two agree when the responses have equal lengths.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from mmalign.types import LossOutput, PreferenceLogps


def logratios(policy: PreferenceLogps, reference: PreferenceLogps) -> tuple[torch.Tensor, torch.Tensor]:
    """``h(y_w), h(y_l)`` from summed log-probs, each ``(B,)``."""
    return policy.chosen.sum - reference.chosen.sum, policy.rejected.sum - reference.rejected.sum


def reward_metrics(chosen_reward: torch.Tensor, rejected_reward: torch.Tensor) -> dict[str, torch.Tensor]:
    """The metrics every DPO-style loss reports, detached: rewards, their margin and ``1[r_w > r_l]``."""
    r_w, r_l = chosen_reward.detach(), rejected_reward.detach()
    return {"chosen_reward": r_w, "rejected_reward": r_l, "margin": r_w - r_l, "accuracy": (r_w > r_l).to(r_w.dtype)}


def log1mexp(x: torch.Tensor) -> torch.Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, stable on both sides of ``-log 2`` (Maechler 2012)."""
    return torch.where(x < -math.log(2), torch.log1p(-torch.exp(x)), torch.log(-torch.expm1(x)))


def dpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """DPO, Rafailov et al. 2023 (arXiv 2305.18290), Eq. 7; TRL ``loss_type="sigmoid"``.

    ``loss = -log sigma(beta * Delta)``, ``Delta = h(y_w) - h(y_l)``, summed log-probs.
    beta: inverse temperature of the implicit reward (TRL default 0.1).
    """
    h_w, h_l = logratios(policy, reference)
    return LossOutput(-F.logsigmoid(beta * (h_w - h_l)), reward_metrics(beta * h_w, beta * h_l))


def cdpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1,
         label_smoothing: float = 0.1) -> LossOutput:
    """Conservative DPO, Mitchell 2023, "A note on DPO with noisy preferences" (no arXiv id); ALGORITHMS §2.2.

    ``loss = (1 - eps) * [-log sigma(beta * Delta)] + eps * [-log sigma(-beta * Delta)]``: each label is flipped with
    probability ``eps = label_smoothing < 0.5``.
    Deviation: older TRL computed this inside ``loss_type="sigmoid"``; TRL 1.16 dropped it, so it is its own loss.
    The default ``eps = 0.1`` is ours (eps = 0 is ``dpo``).
    """
    h_w, h_l = logratios(policy, reference)
    logits = beta * (h_w - h_l)
    loss = -(1 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)
    return LossOutput(loss, reward_metrics(beta * h_w, beta * h_l))


def robust(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1,
           label_smoothing: float = 0.1) -> LossOutput:
    """Robust DPO (rDPO), Chowdhury et al. 2024 (arXiv 2403.00409); TRL ``loss_type="robust"``.

    ``loss = {(1 - eps) * [-log sigma(beta * Delta)] - eps * [-log sigma(-beta * Delta)]} / (1 - 2 * eps)``: an unbiased
    estimate of the clean-label loss under flip rate ``eps = label_smoothing < 0.5``. Note the minus and the division.
    The default ``eps = 0.1`` is ours (TRL's 0.0 is ``dpo``).
    """
    h_w, h_l = logratios(policy, reference)
    logits = beta * (h_w - h_l)
    clean, flipped = -F.logsigmoid(logits), -F.logsigmoid(-logits)
    loss = ((1 - label_smoothing) * clean - label_smoothing * flipped) / (1 - 2 * label_smoothing)
    return LossOutput(loss, reward_metrics(beta * h_w, beta * h_l))


def ipo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """IPO, Azar et al. 2023 (arXiv 2310.12036), Eq. 17; TRL ``loss_type="ipo"``.

    ``loss = (Delta_avg - 1 / (2 * tau))^2``, ``tau = beta``, ``Delta_avg = h(y_w) / |y_w| - h(y_l) / |y_l|``.
    Deviation from the paper (as TRL, confirmed by the IPO authors): log-ratios are averaged per token before
    squaring; a summed IPO is badly scaled. Reported rewards stay ``beta * h`` (summed), as TRL logs them.
    """
    h_w, h_l = logratios(policy, reference)
    delta_avg = h_w / policy.chosen.count - h_l / policy.rejected.count
    return LossOutput((delta_avg - 1 / (2 * beta)) ** 2, reward_metrics(beta * h_w, beta * h_l))


def hinge(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """SLiC / RSO hinge loss: Zhao et al. 2023 (arXiv 2305.10425), Liu et al. 2023 (arXiv 2309.06657);
    TRL ``loss_type="hinge"``.

    ``loss = max(0, 1 - beta * Delta)``; ``beta`` acts as 1/margin. RSO's rejection sampler is a data recipe and not
    part of the loss.
    """
    h_w, h_l = logratios(policy, reference)
    return LossOutput(torch.relu(1 - beta * (h_w - h_l)), reward_metrics(beta * h_w, beta * h_l))


def simpo(policy: PreferenceLogps, reference: None = None, *, beta: float = 2.0,
          gamma_beta_ratio: float = 0.25) -> LossOutput:
    """SimPO, Meng et al. 2024 (arXiv 2405.14734); reference-free.

    ``loss = -log sigma(beta * A(y_w) - beta * A(y_l) - gamma)``, ``gamma = gamma_beta_ratio * beta``; mean log-probs.
    Defaults follow the official ``princeton-nlp/SimPO`` config (``beta=2.0``, ``gamma_beta_ratio=0.25``, gamma 0.5).
    TRL's convention differs: ``CPOTrainer(loss_type="simpo")`` takes ``simpo_gamma`` = gamma itself (default 0.5)
    and computes ``beta * (A_w - A_l - simpo_gamma / beta)``; ``CPOConfig.beta`` defaults to 0.1, too small for SimPO.
    The optional SFT term (official ``sft_weight=0``, TRL ``cpo_alpha``) is left out. Rewards: ``beta * A``.
    """
    a_w, a_l = policy.chosen.mean, policy.rejected.mean
    loss = -F.logsigmoid(beta * (a_w - a_l) - gamma_beta_ratio * beta)
    return LossOutput(loss, reward_metrics(beta * a_w, beta * a_l))


def orpo(policy: PreferenceLogps, reference: None = None, *, beta: float = 0.1) -> LossOutput:
    """ORPO, Hong et al. 2024 (arXiv 2403.07691), Eqs. 4 and 7; reference-free, single stage.

    ``loss = NLL(y_w) - lambda * log sigma(log_OR)``, ``lambda = beta`` (TRL's name, default 0.1), with mean log-probs:
    ``log_OR = [A(y_w) - A(y_l)] - [log(1 - exp A(y_w)) - log(1 - exp A(y_l))]``, ``log1mexp`` computed stably.
    ``NLL(y_w)`` is ``policy.chosen_nll``, each example's token-mean cross-entropy (TRL averages over all chosen
    tokens in the batch). Rewards: ``beta * A``, as TRL logs them.
    """
    a_w, a_l = policy.chosen.mean, policy.rejected.mean
    log_odds = (a_w - a_l) - (log1mexp(a_w) - log1mexp(a_l))
    loss = policy.chosen_nll - beta * F.logsigmoid(log_odds)
    metrics = reward_metrics(beta * a_w, beta * a_l)
    metrics |= {"log_odds_ratio": log_odds.detach(), "nll": policy.chosen_nll.detach()}
    return LossOutput(loss, metrics)


def kto(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1, desirable_weight: float = 1.0,
        undesirable_weight: float = 1.0, kl_logratio: torch.Tensor) -> LossOutput:
    """KTO, Ethayarajh et al. 2024 (arXiv 2402.01306), Eq. 7, on preference pairs; TRL ``KTOTrainer``.

    ``y_w`` is desirable, ``y_l`` undesirable. With ``z0 = max(0, mean(kl_logratio))``, detached:
    ``loss = [w_D * (1 - sigma(beta * (h(y_w) - z0))) + w_U * (1 - sigma(beta * (z0 - h(y_l))))] / 2``.
    The halving makes the batch mean equal TRL's loss over the 2B unpaired examples.

    kl_logratio: ``S_theta(y') - S_ref(y')`` for mismatched completions, any length (only its mean is used). The
        trainer shifts completions by one within the batch (prompt i scored with the chosen answer of pair i+1 mod B),
        scores them under policy and reference without gradient and, under data parallelism, averages the means
        across devices as TRL does. Needs a per-device batch of at least 2.
    """
    z0 = kl_logratio.mean().clamp(min=0).detach()
    h_w, h_l = logratios(policy, reference)
    desirable = desirable_weight * (1 - torch.sigmoid(beta * (h_w - z0)))
    undesirable = undesirable_weight * (1 - torch.sigmoid(beta * (z0 - h_l)))
    return LossOutput((desirable + undesirable) / 2, reward_metrics(beta * h_w, beta * h_l) | {"kl": z0})


def bco(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1,
        reward_mean: torch.Tensor) -> LossOutput:
    """BCO, Jung et al. 2024 (arXiv 2404.04656), paired form; TRL ``loss_type="bco_pair"``.

    ``loss = -log sigma(r_w - delta) - log sigma(-(r_l - delta))``, ``r = beta * h``, ``delta`` detached.

    reward_mean: scalar tensor ``delta``, the running mean of past implicit rewards. The trainer keeps a
        ``losses.state.RunningMean`` and updates it after each step with ``metrics["rewards"]`` (the per-pair mean
        ``(r_w + r_l) / 2``). Deviations: TRL 1.16's ``bco_pair`` has ``delta = 0``; older TRL updated the mean with
        the current batch before using it, here it lags one batch. The UDM density-ratio weighting of unpaired BCO is
        not included.
    """
    delta = reward_mean.detach()
    h_w, h_l = logratios(policy, reference)
    r_w, r_l = beta * h_w, beta * h_l
    loss = -F.logsigmoid(r_w - delta) - F.logsigmoid(-(r_l - delta))
    return LossOutput(loss, reward_metrics(r_w, r_l) | {"rewards": ((r_w + r_l) / 2).detach(), "reward_mean": delta})


def nca(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """NCA, Chen et al. 2024 (arXiv 2402.05369), pairwise form as TRL ``loss_type="nca_pair"``.

    ``loss = -log sigma(r_w) - 1/2 * log sigma(-r_w) - 1/2 * log sigma(-r_l)``, ``r = beta * h``: absolute rewards,
    so the chosen likelihood is pushed up rather than only the margin.
    """
    h_w, h_l = logratios(policy, reference)
    r_w, r_l = beta * h_w, beta * h_l
    loss = -F.logsigmoid(r_w) - 0.5 * F.logsigmoid(-r_w) - 0.5 * F.logsigmoid(-r_l)
    return LossOutput(loss, reward_metrics(r_w, r_l))


def apo_zero(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """APO-zero, D'Oosterlinck et al. 2024 (arXiv 2408.06266), Eq. 7; TRL ``loss_type="apo_zero"``.

    ``loss = [1 - sigma(r_w)] + sigma(r_l)``: raise the chosen likelihood, lower the rejected one. For chosen answers
    better than the model's own.
    """
    h_w, h_l = logratios(policy, reference)
    loss = (1 - torch.sigmoid(beta * h_w)) + torch.sigmoid(beta * h_l)
    return LossOutput(loss, reward_metrics(beta * h_w, beta * h_l))


def apo_down(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """APO-down, D'Oosterlinck et al. 2024 (arXiv 2408.06266), Eq. 8; TRL ``loss_type="apo_down"``.

    ``loss = sigma(r_w) + [1 - sigma(beta * Delta)]``: lower the chosen likelihood and the rejected one more. For
    chosen answers worse than the model's own.
    """
    h_w, h_l = logratios(policy, reference)
    loss = torch.sigmoid(beta * h_w) + (1 - torch.sigmoid(beta * (h_w - h_l)))
    return LossOutput(loss, reward_metrics(beta * h_w, beta * h_l))


def rpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1, alpha: float = 1.0) -> LossOutput:
    """RPO (iterative reasoning preference optimisation), Pang et al. 2024 (arXiv 2404.19733);
    TRL ``loss_type=["sigmoid", "sft"], loss_weights=[1, alpha]``.

    ``loss = -log sigma(beta * Delta) + alpha * NLL(y_w)``, ``NLL(y_w) = policy.chosen_nll`` (token mean, per example;
    TRL's ``sft`` averages over all chosen tokens of the batch). ``alpha = 1.0`` as in the paper.
    """
    h_w, h_l = logratios(policy, reference)
    loss = -F.logsigmoid(beta * (h_w - h_l)) + alpha * policy.chosen_nll
    return LossOutput(loss, reward_metrics(beta * h_w, beta * h_l) | {"nll": policy.chosen_nll.detach()})

"""Multimodal DPO variants (ALGORITHMS.md §4), one pure function each; conventions as in ``losses.preference``.

Extra views: ``chosen_corrupt`` (``y_w`` given a corrupted image ``I'``) for mDPO and Image-DPO, ``noise`` (POVID's
``y_noise`` scored under the clean image) for POVID, token weights (``SeqLogps.weighted``) for DDPO. Extra data
inputs: ``sft_nll`` (HA-DPO), ``reward_margin`` (MM-DPO); ``generator`` (MM-DPO ``variant="released"``) is optional.

Deviations from the papers and the official code (each repeated where it applies):
* ``mdpo``: anchor ``delta = 0`` as in the official code; ``I'`` must be sampled once and shared by the policy and
  reference passes (the official code re-crops in every forward). The trainer leaves y_w's end-of-turn token out
  of ``S(y_w | I')`` by default (``data.corrupt_eot``; the official code scores it): pushing it down taught the lab
  policy to run on past the end of its captions.
* ``hadpo``: the LM term comes from a separate SFT batch (``sft_nll``); the official MiniGPT-4 trainer mixes the SFT
  examples into the preference batch with a ``data_type`` tag.
* ``mmdpo``: ``variant="paper"`` (default) is the per-sample ``beta(d)``; ``variant="released"`` is the batch-level
  implicit beta the released code actually runs, over the local batch only (the released code all-gathers ``Delta``
  across GPUs first), with its random 80% subsample drawn from the explicit ``generator``.
* ``povid``: ``y_noise`` is the argmax-token construction of the released code, not free generation under ``I'``.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F

from mmalign.losses.preference import logratios, reward_metrics
from mmalign.types import LossOutput, PreferenceLogps


def mdpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """mDPO, Wang et al. 2024 (arXiv 2406.11839); official ``luka-group/mDPO: mdpo_trainer.py``.

    ``loss = L_DPO + L_img + L_anc`` (equal weights, summed log-probs), ``h(y|I) = S_theta(y|I,x) - S_ref(y|I,x)``:
      ``L_DPO = -log sigma(beta * [h(y_w|I) - h(y_l|I)])``   text preference;
      ``L_img = -log sigma(beta * [h(y_w|I) - h(y_w|I')])``  same chosen answer, real vs corrupted image;
      ``L_anc = -log sigma(beta * h(y_w|I) - delta)``        anchor, ``delta = 0`` as in the official code.
    ``I'`` (``chosen_corrupt``) must be the same corrupted image in the policy and the reference pass; the official
    code re-samples its random crop in every forward, so there the two passes see different crops.
    """
    h_w, h_l = logratios(policy, reference)
    h_c = policy.chosen_corrupt.sum - reference.chosen_corrupt.sum
    text = -F.logsigmoid(beta * (h_w - h_l))
    image = -F.logsigmoid(beta * (h_w - h_c))
    anchor = -F.logsigmoid(beta * h_w)
    metrics = reward_metrics(beta * h_w, beta * h_l)
    metrics |= {"corrupt_reward": (beta * h_c).detach(), "image_accuracy": (h_w > h_c).to(h_w.dtype).detach(),
                "text_loss": text.detach(), "image_loss": image.detach(), "anchor_loss": anchor.detach()}
    return LossOutput(text + image + anchor, metrics)


def image_dpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """Image-DPO, Luo et al. 2025, "Probing Visual Language Priors in VLMs" (arXiv 2501.00569); ALGORITHMS §4.6,
    details unverified against code.

    ``loss = -log sigma(beta * [h(y|I) - h(y|I')])``: DPO in which the image differs, not the answer (mDPO's
    ``L_img`` alone). Reads ``chosen`` (``y`` given ``I``) and ``chosen_corrupt`` (``y`` given ``I'``); ``rejected`` is
    not read, since the data tuple ``(I, I', x, y)`` has no second answer. Rewards: ``beta * h(y|I)`` as chosen,
    ``beta * h(y|I')`` as rejected.
    """
    h_w = policy.chosen.sum - reference.chosen.sum
    h_c = policy.chosen_corrupt.sum - reference.chosen_corrupt.sum
    return LossOutput(-F.logsigmoid(beta * (h_w - h_c)), reward_metrics(beta * h_w, beta * h_c))


def hadpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1, gamma: float = 0.5,
          sft_nll: torch.Tensor) -> LossOutput:
    """HA-DPO, Zhao et al. 2023 (arXiv 2311.16839); official ``opendatalab/HA-DPO: minigpt4_dpo_trainer.py``.

    ``loss = L_DPO + gamma * L_LM(SFT batch)``, summed log-probs, ``gamma = 0.5`` (MiniGPT-4 setting; the LLaVA setting
    has no LM term, i.e. ``gamma = 0``).

    sft_nll: scalar tensor, the token-mean NLL of the policy on a batch of the original SFT data, with gradient. It is
        added to every example, so the batch mean is ``mean(L_DPO) + gamma * L_LM``. Deviation: the official trainer
        mixes the SFT examples into the preference batch with a ``data_type`` tag instead of a separate batch.
    """
    h_w, h_l = logratios(policy, reference)
    loss = -F.logsigmoid(beta * (h_w - h_l)) + gamma * sft_nll
    return LossOutput(loss, reward_metrics(beta * h_w, beta * h_l) | {"sft_nll": sft_nll.detach()})


def ddpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """DDPO (dense DPO), RLHF-V, Yu et al. 2024 (arXiv 2312.00849); RLAIF-V ``compute_weighted_logp``.

    DPO on the weighted-average score ``S~(y) = sum_t w_t l_t / sum_t w_t`` (``SeqLogps.weighted_mean``) for the
    policy and the reference, each response with its own normaliser:
    ``loss = -log sigma(beta * ([S~_theta(y_w) - S~_ref(y_w)] - [S~_theta(y_l) - S~_ref(y_l)]))``.
    The corrected-segment weight ``gamma`` lives in the data's token weights (``w_t = 1`` on unchanged tokens,
    ``gamma`` on corrected ones; RLHF-V uses 5), set by the collator, so it is not a loss hyperparameter. ``beta = 0.1``
    is the RLAIF-V code default.
    """
    h_w = policy.chosen.weighted_mean - reference.chosen.weighted_mean
    h_l = policy.rejected.weighted_mean - reference.rejected.weighted_mean
    return LossOutput(-F.logsigmoid(beta * (h_w - h_l)), reward_metrics(beta * h_w, beta * h_l))


def released_beta(delta: torch.Tensor, *, beta: float, w: float,
                  generator: torch.Generator | None = None) -> torch.Tensor:
    """MM-RLHF's released batch-level beta (``dpo_loss(..., implicit_beta=True)``), a scalar tensor.

    Weigh each ``Delta_i`` by ``exp(-((Delta_i - mean) / (std + 1e-7))^2 / 2)``, draw ``int(0.8 * B)`` of them
    without replacement with those weights (``torch.multinomial`` on ``generator``; None = the global RNG), and set
    ``beta = max(1e-3, beta0 * (1 + w * (mean(drawn) - mean(all))))``. ``delta`` must be detached; needs ``B >= 2``.
    """
    mean, std = delta.mean(), delta.std()
    weights = torch.exp(-0.5 * ((delta - mean) / (std + 1e-7)) ** 2)
    drawn = torch.multinomial(weights, int(delta.numel() * 0.8), replacement=False, generator=generator)
    return (beta * (1 + w * (delta[drawn].mean() - mean))).clamp(min=1e-3)


def mmdpo(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1, w: float = 0.1, k: float = 1.0,
          gamma: float = 0.25, variant: Literal["paper", "released"] = "paper", reward_margin: torch.Tensor,
          generator: torch.Generator | None = None) -> LossOutput:
    """MM-DPO (MM-RLHF), Zhang et al. 2025 (arXiv 2502.10391); official ``Kwai-YuanQi/MM-RLHF: dpo_trainer.py``.

    ``loss = -log sigma(beta(d) * Delta) + gamma * NLL(y_w)``, summed log-probs, ``NLL(y_w) = policy.chosen_nll``,
    ``gamma = 0.25`` as released.
    ``variant="paper"``: per-sample ``beta(d) = beta0 * (1 + w * (1 - exp(-k * d)))`` from the reward-model margin
      ``d = reward_margin`` (B,), ``d >= 0``; detached. ``w = 0.1`` is the released ``ls_factor_weight``; ``k`` was
      applied offline in the released data, ``k = 1.0`` is our default (the paper's was not confirmed).
    ``variant="released"``: what the released code runs (its ``implicit_beta=True`` overwrites the per-sample beta):
      one batch-level beta from ``released_beta`` on the detached ``Delta``; ``reward_margin`` is ignored. Its
      random subsample draws from ``generator``. Deviation: the released code all-gathers ``Delta`` across GPUs first;
      here the subsample is over the local batch. The released ``label_smoothing=1.0`` (TRL's cDPO convention
      flipped) and ``dpo_alpha=1.0`` reduce to the plain sigmoid term used here.
    Rewards are reported with ``beta0``; ``metrics["beta"]`` holds the beta used.
    """
    h_w, h_l = logratios(policy, reference)
    delta = h_w - h_l
    if variant == "paper":
        scale = beta * (1 + w * (1 - torch.exp(-k * reward_margin)))
    elif variant == "released":
        scale = released_beta(delta.detach(), beta=beta, w=w, generator=generator)
    else:
        raise ValueError(f"mmdpo: variant must be 'paper' or 'released', not {variant!r}")
    scale = scale.detach()
    loss = -F.logsigmoid(scale * delta) + gamma * policy.chosen_nll
    metrics = reward_metrics(beta * h_w, beta * h_l) | {"beta": scale, "nll": policy.chosen_nll.detach()}
    return LossOutput(loss, metrics)


def povid(policy: PreferenceLogps, reference: PreferenceLogps, *, beta: float = 0.1) -> LossOutput:
    """POVID stage 2, Zhou et al. 2024 (arXiv 2402.11411); official ``YiyangZhou/POVID: tool/dpo_trainer_inherent.py``.

    ``loss = 0.5 * DPO(y_w vs y_l) + 0.5 * DPO(y_w vs y_noise)``, summed log-probs, where ``y_noise`` (``noise``) is the
    argmax-token sequence of ``y_w`` teacher-forced on the diffusion-noised image ``I'`` (t = 500), scored under the
    clean image; the argmax ids carry no gradient. Deviation from the paper's wording (responses generated under a
    distorted image): this is the released code's construction. Stage 1 is plain ``dpo``.
    """
    h_w, h_l = logratios(policy, reference)
    h_n = policy.noise.sum - reference.noise.sum
    text = -F.logsigmoid(beta * (h_w - h_l))
    image = -F.logsigmoid(beta * (h_w - h_n))
    metrics = reward_metrics(beta * h_w, beta * h_l) | {"noise_reward": (beta * h_n).detach()}
    return LossOutput(0.5 * text + 0.5 * image, metrics)

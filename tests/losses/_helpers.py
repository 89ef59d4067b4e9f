"""Shared pieces of the loss tests: the hand-worked batch, random token batches, and a harness that runs TRL 1.16's
own loss code (trainer methods called on a ``SimpleNamespace`` standing in for the trainer, with a fake model that
returns given per-token log-probs), so parity tests reimplement nothing of TRL."""
from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from functools import partial
from types import SimpleNamespace

import torch

from mmalign.types import PreferenceLogps, SeqLogps


def t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float64)


def nls(z: float) -> float:
    """-log sigma(z)."""
    return math.log1p(math.exp(-z))


def sig(z: float) -> float:
    return 1 / (1 + math.exp(-z))


def hand_batch() -> tuple[PreferenceLogps, PreferenceLogps]:
    """The hand-worked batch, B = 2, every view present. Summed log-ratios h = S_theta - S_ref:

    h(y_w)     = (-3 - -4, -3 - -2.5)     = ( 1,  -0.5)
    h(y_l)     = (-6 - -5, -6 - -6.5)     = (-1,   0.5)   so Delta = (2, -1)
    h(y_w|I')  = (-5 - -4.5, -2 - -3)     = (-0.5, 1)     chosen_corrupt
    h(y_noise) = (-4 - -3.5, -2 - -3)     = (-0.5, 1)     noise
    counts |y_w| = (2, 4), |y_l| = (3, 2): A_theta(y_w) = (-1.5, -0.75), A_theta(y_l) = (-2, -3)
    chosen_nll = -A_theta(y_w) = (1.5, 0.75)
    token weights: S~ = weighted / weight_sum
      policy    y_w: (-5/4, -16/8) = (-1.25, -2)   y_l: (-4.5/3, -9/6) = (-1.5, -1.5)
      reference y_w: (-6/4, -12/8) = (-1.5, -1.5)  y_l: (-3/3,   -6/6) = (-1,   -1)
      so h~(y_w) = (0.25, -0.5), h~(y_l) = (-0.5, -0.5), Delta~ = (0.75, 0)
    """
    cw, cl = t(2, 4), t(3, 2)
    policy = PreferenceLogps(
        chosen=SeqLogps(t(-3, -3), cw, t(-5, -16), t(4, 8)),
        rejected=SeqLogps(t(-6, -6), cl, t(-4.5, -9), t(3, 6)),
        chosen_corrupt=SeqLogps(t(-5, -2), cw), noise=SeqLogps(t(-4, -2), cw), chosen_nll=t(1.5, 0.75))
    reference = PreferenceLogps(
        chosen=SeqLogps(t(-4, -2.5), cw, t(-6, -12), t(4, 8)),
        rejected=SeqLogps(t(-5, -6.5), cl, t(-3, -6), t(3, 6)),
        chosen_corrupt=SeqLogps(t(-4.5, -3), cw), noise=SeqLogps(t(-3.5, -3), cw))
    return policy, reference


@dataclass
class TokenBatch:
    """Random per-token log-probs of B pairs, (B, L) each, zero past each response's length; the policy and the
    reference share each response's mask."""

    mask_w: torch.Tensor
    mask_l: torch.Tensor
    pol_w: torch.Tensor
    pol_l: torch.Tensor
    ref_w: torch.Tensor
    ref_l: torch.Tensor

    def logps(self, tok_w: torch.Tensor, tok_l: torch.Tensor) -> PreferenceLogps:
        chosen = SeqLogps(tok_w.sum(-1), self.mask_w.sum(-1).double())
        rejected = SeqLogps(tok_l.sum(-1), self.mask_l.sum(-1).double())
        return PreferenceLogps(chosen, rejected, chosen_nll=-chosen.mean)

    @property
    def policy(self) -> PreferenceLogps:
        return self.logps(self.pol_w, self.pol_l)

    @property
    def reference(self) -> PreferenceLogps:
        return self.logps(self.ref_w, self.ref_l)


def random_tokens(g: torch.Generator, mask: torch.Tensor, scale: float) -> torch.Tensor:
    return -torch.rand(mask.shape, generator=g, dtype=torch.float64) * scale * mask


def random_mask(g: torch.Generator, batch: int, length: int) -> torch.Tensor:
    lengths = torch.randint(1, length + 1, (batch,), generator=g)
    return torch.arange(length)[None] < lengths[:, None]


def token_batch(batch: int = 6, length: int = 7, seed: int = 0, scale: float = 3.0) -> TokenBatch:
    g = torch.Generator().manual_seed(seed)
    mask_w, mask_l = random_mask(g, batch, length), random_mask(g, batch, length)
    return TokenBatch(mask_w, mask_l, *(random_tokens(g, m, scale) for m in (mask_w, mask_l, mask_w, mask_l)))


# ---------------------------------------------------------------- TRL 1.16 harness

ACCELERATOR = SimpleNamespace(device=torch.device("cpu"), gather=lambda x: x, gather_for_metrics=lambda x: x)


class FakeModel:
    """Stands in for the policy: returns the registered per-token log-probs for a given ``input_ids`` tensor."""

    training = True

    def __init__(self) -> None:
        self.log_probs: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}

    def add(self, input_ids: torch.Tensor, log_probs: torch.Tensor) -> None:
        self.log_probs[id(input_ids)] = (input_ids, log_probs)

    def __call__(self, *, input_ids: torch.Tensor, **kwargs) -> SimpleNamespace:
        lp = self.log_probs[id(input_ids)][1]
        zeros = torch.zeros_like(lp)
        return SimpleNamespace(log_probs=lp, entropy=zeros, mean_logits=zeros, is_top1=zeros.bool())


def _trainer_state(model: FakeModel, **attrs) -> SimpleNamespace:
    return SimpleNamespace(model=model, accelerator=ACCELERATOR, aux_loss_enabled=False, precompute_ref_logps=True,
                           _metrics=defaultdict(lambda: defaultdict(list)), _total_train_tokens=0, _tp_size=1, **attrs)


def _completion_mask(mask: torch.Tensor) -> torch.Tensor:
    """Prepend one prompt token: TRL's completion mask is aligned with input_ids, the log-probs are shifted by one."""
    return torch.cat([torch.zeros(len(mask), 1, dtype=torch.long), mask.long()], dim=1)


def trl_dpo(batch: TokenBatch, loss_types: list[str], *, beta: float, label_smoothing: float = 0.0,
            loss_weights: list[float] | None = None) -> tuple[torch.Tensor, list[dict]]:
    """``DPOTrainer._compute_loss`` (trl/trainer/dpo_trainer.py) on each pair alone: per-pair losses (B,) and TRL's
    logged metrics per pair. Precomputed reference log-probs, ``f_divergence_type="reverse_kl"``, no ``ld_alpha``,
    no WPO weighting (the DPOConfig defaults)."""
    from trl.trainer.dpo_trainer import DPOTrainer

    losses, metrics = [], []
    for i in range(len(batch.mask_w)):
        completion_mask = _completion_mask(torch.stack([batch.mask_w[i], batch.mask_l[i]]))
        input_ids = torch.zeros_like(completion_mask)
        model = FakeModel()
        model.add(input_ids, torch.stack([batch.pol_w[i], batch.pol_l[i]]))
        trainer = _trainer_state(model, ld_alpha=None, f_divergence_type="reverse_kl", loss_types=loss_types,
                                 loss_weights=loss_weights or [1.0] * len(loss_types), beta=beta,
                                 label_smoothing=label_smoothing, use_weighting=False)
        inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids),
                  "completion_mask": completion_mask,
                  "ref_chosen_logps": batch.ref_w[i].sum()[None], "ref_rejected_logps": batch.ref_l[i].sum()[None]}
        losses.append(DPOTrainer._compute_loss(trainer, model, inputs, return_outputs=False))
        metrics.append({k: v[-1] for k, v in trainer._metrics["train"].items()})
    return torch.stack(losses), metrics


def trl_kto(batch: TokenBatch, kl_mask: torch.Tensor, kl_pol: torch.Tensor, kl_ref: torch.Tensor, *, beta: float,
            desirable_weight: float, undesirable_weight: float) -> torch.Tensor:
    """``KTOTrainer._compute_loss`` (trl/trainer/kto_trainer.py) on the B pairs as 2B unpaired examples (the chosen
    answers desirable, the rejected ones undesirable) with the given mismatched (KL) completions, (2B, L)."""
    from trl.trainer.kto_trainer import KTOTrainer

    completion_mask = _completion_mask(torch.cat([batch.mask_w, batch.mask_l]))
    kl_completion_mask = _completion_mask(kl_mask)
    input_ids, kl_input_ids = torch.zeros_like(completion_mask), torch.zeros_like(kl_completion_mask)
    model = FakeModel()
    model.add(input_ids, torch.cat([batch.pol_w, batch.pol_l]))
    model.add(kl_input_ids, kl_pol)
    trainer = _trainer_state(model, calculate_KL=True, loss_type="kto", beta=beta, desirable_weight=desirable_weight,
                             undesirable_weight=undesirable_weight)
    trainer._compute_kl_logps = partial(KTOTrainer._compute_kl_logps, trainer)
    n = len(batch.mask_w)
    inputs = {"input_ids": input_ids, "attention_mask": torch.ones_like(input_ids), "completion_mask": completion_mask,
              "KL_input_ids": kl_input_ids, "KL_attention_mask": torch.ones_like(kl_input_ids),
              "KL_completion_mask": kl_completion_mask, "label": torch.tensor([True] * n + [False] * n),
              "ref_logps": torch.cat([batch.ref_w.sum(-1), batch.ref_l.sum(-1)]), "ref_KL_logps": kl_ref.sum(-1)}
    return KTOTrainer._compute_loss(trainer, model, inputs, return_outputs=False)


def trl_cpo_loss(chosen: torch.Tensor, rejected: torch.Tensor, *, loss_type: str, beta: float,
                 label_smoothing: float = 0.0, simpo_gamma: float = 0.5) -> torch.Tensor:
    """``CPOTrainer.cpo_loss`` (trl/experimental/cpo/cpo_trainer.py), per-example losses; AlphaPO off."""
    from trl.experimental.cpo.cpo_trainer import CPOTrainer

    trainer = SimpleNamespace(alpha=0.0, accelerator=ACCELERATOR, loss_type=loss_type, beta=beta,
                              label_smoothing=label_smoothing, simpo_gamma=simpo_gamma)
    return CPOTrainer.cpo_loss(trainer, chosen, rejected)[0]


def trl_odds_ratio_loss(chosen: torch.Tensor, rejected: torch.Tensor, *, beta: float) -> tuple:
    """``ORPOTrainer.odds_ratio_loss`` (trl/experimental/orpo/orpo_trainer.py): (beta * log sigma(log_OR) per
    example, chosen rewards, rejected rewards, mean log sigma(log_OR), mean log_OR)."""
    from trl.experimental.orpo.orpo_trainer import ORPOTrainer

    return ORPOTrainer.odds_ratio_loss(SimpleNamespace(beta=beta, accelerator=ACCELERATOR), chosen, rejected)

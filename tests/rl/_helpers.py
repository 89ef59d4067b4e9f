"""Shared pieces of the RL tests: float64 tensors, masks from lengths, and a harness that runs TRL 1.16's own
``GRPOTrainer._compute_loss`` on a ``SimpleNamespace`` standing in for the trainer, whose log-prob hook returns given
per-token log-probs, so the parity tests reimplement nothing of TRL's loss."""
from __future__ import annotations

from collections import defaultdict
from types import SimpleNamespace

import torch


def t(*rows) -> torch.Tensor:
    return torch.tensor(rows, dtype=torch.float64)


def lengths_mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.arange(width)[None] < torch.tensor(lengths)[:, None]


def trl_grpo_loss(logps: torch.Tensor, old_logps: torch.Tensor, ref_logps: torch.Tensor, advantages: torch.Tensor,
                  mask: torch.Tensor, *, loss_type: str, beta: float, epsilon: float, epsilon_high: float,
                  max_completion_length: int) -> tuple[torch.Tensor, dict[str, float]]:
    """``GRPOTrainer._compute_loss`` (trl/trainer/grpo_trainer.py) on one batch: the loss and TRL's logged metrics.
    One process, no gradient accumulation, one generation step per batch, token-level importance sampling, no vLLM,
    no entropy masking or bonus; ``num_items_in_batch`` (the ``dapo`` normaliser) is the batch's token count."""
    from trl.trainer.grpo_trainer import GRPOTrainer

    entropies = torch.zeros_like(logps)
    accelerator = SimpleNamespace(num_processes=1, reduce=lambda x, reduction: x, gather=lambda x: x,
                                  gather_for_metrics=lambda x: x)
    trainer = SimpleNamespace(
        _get_per_token_logps_and_entropies=lambda *args, **kwargs: (logps, entropies, None),
        top_entropy_quantile=1.0, off_policy_mask_threshold=None, importance_sampling_level="token", beta=beta,
        loss_type=loss_type, epsilon_low=epsilon, epsilon_high=epsilon_high, use_vllm=False,
        model=SimpleNamespace(training=True), current_gradient_accumulation_steps=1,
        max_completion_length=max_completion_length, _entropy_bonus_enabled=False, aux_loss_enabled=False,
        accelerator=accelerator, _metrics=defaultdict(lambda: defaultdict(list)),
        args=SimpleNamespace(use_bias_correction_kl=False, delta=None, steps_per_generation=1))
    completion_mask = mask.long()
    inputs = {"prompt_ids": torch.zeros(len(mask), 1, dtype=torch.long),
              "prompt_mask": torch.ones(len(mask), 1, dtype=torch.long),
              "completion_ids": torch.zeros_like(completion_mask), "completion_mask": completion_mask,
              "advantages": advantages, "old_per_token_logps": old_logps, "ref_per_token_logps": ref_logps,
              "num_items_in_batch": completion_mask.sum().double()}
    loss = GRPOTrainer._compute_loss(trainer, trainer.model, inputs)
    return loss, {k: v[-1] for k, v in trainer._metrics["train"].items()}

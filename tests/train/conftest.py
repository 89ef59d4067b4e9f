"""Shared pieces of the preference-trainer tests: lab pairs with every optional field, configs, a perturbed policy."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from mmalign.losses import PREFERENCE_LOSSES
from mmalign.models.load import ModelConfig
from mmalign.train.loop import TrainConfig
from mmalign.train.preference import LossConfig, PreferenceConfig, Step, make_reference
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig


@pytest.fixture(scope="session")
def lab8():
    """Eight lab pairs (captions and yes/no questions, each with its corrupted image I'), plus the fields some
    losses need: DDPO spans (the first word of each response) and an MM-DPO reward margin."""
    recs = lab_pairs(WorldConfig(), LabPairsConfig(n=8))
    return [dataclasses.replace(r, chosen_spans=[[0, len(r.chosen.split()[0])]],
                                rejected_spans=[[0, len(r.rejected.split()[0])]], reward_margin=0.5 + 0.25 * i)
            for i, r in enumerate(recs)]


def partners_of(records: list) -> dict:
    """The trainer's fixed KL partners: the next record in the list."""
    return {r.id: records[(i + 1) % len(records)] for i, r in enumerate(records)}


def pref_cfg(tmp_path, loss: str = "dpo", *, ref_cache: bool = False, reference: str = "copy",
             lora: bool = False, batch_size: int = 2, params: dict | None = None, **train) -> PreferenceConfig:
    model = ModelConfig(path="(in memory)")
    model.lora.enabled = lora
    return PreferenceConfig(
        model=model, reference=reference, ref_cache=ref_cache, cache_dir=str(tmp_path / "cache"),
        loss=LossConfig(name=loss, params=params or {}),
        train=TrainConfig(**({"output_dir": str(tmp_path / "out"), "batch_size": batch_size} | train)))


def make_step(cfg: PreferenceConfig, model, processor, records: list) -> Step:
    spec = PREFERENCE_LOSSES[cfg.loss.name]
    partners = partners_of(records)
    return Step(cfg, spec, processor, make_reference(cfg, model, processor, spec, records, partners), partners)


@torch.no_grad()
def perturb(model, scale: float = 0.02, seed: int = 1) -> None:
    """Move the policy away from the reference (so log-ratios, rewards and KL terms are non-zero)."""
    g = torch.Generator().manual_seed(seed)
    for p in model.parameters():
        if p.requires_grad:
            p.add_(scale * torch.randn(p.shape, generator=g))

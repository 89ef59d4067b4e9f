"""Supervised fine-tuning of an image-text model (stage 2 of the lab's base model; the same loop for any
Hugging Face MLLM given ``model.path``).

Loss: token-level NLL on the response (and its end-of-turn token), with a per-task weight on each example's
tokens. Weighting matters for one-token answers: a yes/no example carries one informative token against
~13 for a caption, and under a per-token mean the yes/no circuit forms late and unreliably.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from mmalign.data.records import load_sft_records
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model, vision_tower
from mmalign.models.logprobs import weighted_nll
from mmalign.train.loop import TrainConfig, train
from mmalign.world.model import LabModelConfig, build_lab_model
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import mixed_example


def default_mix() -> dict[str, float]:
    return {"caption": 0.5, "exist": 0.3, "count": 0.08, "colour": 0.03, "spatial": 0.03, "ground": 0.02,
            "arithmetic": 0.02, "safety": 0.02}


@dataclass
class SFTDataConfig:
    source: str = "lab"         # "lab": drawn from the world on the fly; otherwise a JSONL file of records
    mix: dict[str, float] = field(default_factory=default_mix)     # lab task -> sampling weight
    task_weights: dict[str, float] = field(default_factory=lambda: {"exist": 5.0})  # task -> loss weight
    max_length: int | None = None


@dataclass
class SFTConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=ModelConfig)   # model.path "" builds a fresh lab model
    lab_model: LabModelConfig = field(default_factory=LabModelConfig)
    vision_init: str = ""        # a pretrained vision tower folder (stage 1) for the fresh lab model
    vision_lr_scale: float = 0.3  # 0 freezes the vision tower
    data: SFTDataConfig = field(default_factory=SFTDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        output_dir="runs/sft", max_steps=4000, batch_size=32, lr=2e-3, warmup_steps=100, log_every=50))


def _model(cfg: SFTConfig):
    if cfg.model.path:
        return load_model(cfg.model)
    cfg.world.validate()
    return build_lab_model(cfg.lab_model, cfg.world.image_size, cfg.vision_init or None)


def param_groups(model, vision_lr_scale: float) -> list[dict]:
    tower = {id(p) for p in vision_tower(model).parameters()}
    for p in vision_tower(model).parameters():
        p.requires_grad_(p.requires_grad and vision_lr_scale > 0)
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in tower]
    groups = [{"params": rest}]
    if vision_lr_scale > 0:
        groups.append({"params": [p for p in vision_tower(model).parameters() if p.requires_grad],
                       "lr_scale": vision_lr_scale})
    return groups


def example_source(cfg: SFTConfig):
    """index -> example: the lab stream, or a shuffled pass over a record file (reshuffled each epoch)."""
    if cfg.data.source == "lab":
        return lambda i: mixed_example(cfg.world, "train", cfg.data.mix, i)
    records = load_sft_records(cfg.data.source)
    perms: dict[int, np.ndarray] = {}

    def get(i: int) -> dict:
        epoch, j = divmod(i, len(records))
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([cfg.train.seed, epoch]).permutation(len(records))
        return records[int(perms[epoch][j])]
    return get


def batches(cfg: SFTConfig, processor, get, start: int, rank: int = 0, world: int = 1):
    """Micro-batch k holds examples [(k*world + rank)*B, +B): the same global batch for any process count."""
    bs, k = cfg.train.batch_size, start
    while True:
        examples = [get((k * world + rank) * bs + i) for i in range(bs)]
        batch = dict(build_inputs(processor, examples, max_length=cfg.data.max_length))
        batch["weights"] = torch.tensor([cfg.data.task_weights.get(e.get("task", ""), 1.0) for e in examples])
        yield batch
        k += 1


def sft_loss(model, batch):
    batch = dict(batch)
    weights, labels = batch.pop("weights"), batch.pop("labels")
    logits = model(**batch).logits
    return weighted_nll(logits, labels, weights), {}


def run_sft(cfg: SFTConfig) -> dict:
    from accelerate import PartialState
    model, processor = _model(cfg)
    get = example_source(cfg)
    state = PartialState()

    def save(unwrapped, folder: Path):
        unwrapped.save_pretrained(folder)
        processor.save_pretrained(folder)

    return train(model, param_groups(model, cfg.vision_lr_scale), sft_loss,
                 lambda start: batches(cfg, processor, get, start, state.process_index, state.num_processes),
                 cfg.train, desc="sft", save_model=save)

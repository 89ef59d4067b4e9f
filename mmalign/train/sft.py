"""Supervised fine-tuning of an image-text model (stage 2 of the lab's base model; the same loop for any
Hugging Face MLLM given ``model.path``).

Loss: token-level NLL on the response (and its end-of-turn token), with a per-task weight on each example's
tokens. Weighting matters for one-token answers: a yes/no example carries one informative token against
~13 for a caption, and under a per-token mean the yes/no circuit forms late and unreliably. The mean is over the
weighted tokens of the whole optimiser step, on every process and micro-batch (the loop's ``units``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from functools import partial
from pathlib import Path

import numpy as np
import torch

from mmalign.data.records import load_sft_records
from mmalign.data.sampling import shuffled
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model, vision_tower
from mmalign.models.logprobs import token_weights, weighted_nll
from mmalign.train.guards import blank_image_inputs, has_images, text_only_term
from mmalign.train.loop import TrainConfig, train
from mmalign.world.model import LabModelConfig, build_lab_model
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import images_per_example, mixed_example


def default_mix() -> dict[str, float]:
    # video is left out: at a 2-3% share it stayed at chance within the lab's budget and slows every step
    return {"caption": 0.48, "exist": 0.3, "count": 0.08, "colour": 0.03, "spatial": 0.03, "ground": 0.02,
            "arithmetic": 0.02, "safety": 0.02, "multi_image": 0.02}


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


def batch_mix(cfg: SFTConfig, k: int) -> dict[str, float]:
    """The task weights of global micro-batch ``k``: one image-count group (single image, image pairs, video
    frames), drawn by its share of the mix, so single-image examples are never padded to a video's length."""
    groups: dict[int, dict[str, float]] = {}
    for task, w in cfg.data.mix.items():
        if w > 0:
            groups.setdefault(images_per_example(cfg.world, task), {})[task] = w
    keys = sorted(groups)
    p = np.asarray([sum(groups[g].values()) for g in keys])
    return groups[keys[int(np.random.default_rng([cfg.train.seed, k, 11]).choice(len(keys), p=p / p.sum()))]]


def record_source(cfg: SFTConfig):
    """index -> record of the file ``data.source``, a shuffled pass per epoch."""
    return shuffled(load_sft_records(cfg.data.source), cfg.train.seed)


def batches(cfg: SFTConfig, processor, start: int, rank: int = 0, world: int = 1, records=None):
    """Micro-batch k holds examples [(k*world + rank)*B, +B): the same global batch for any process count.
    ``records`` (index -> record) replaces the lab stream."""
    bs, k = cfg.train.batch_size, start
    while True:
        if records is None:
            mix = batch_mix(cfg, k)
            get = lambda i: mixed_example(cfg.world, "train", mix, i)
        else:
            get = records
        examples = [get((k * world + rank) * bs + i) for i in range(bs)]
        batch = dict(build_inputs(processor, examples, max_length=cfg.data.max_length))
        batch["weights"] = torch.tensor([cfg.data.task_weights.get(e.get("task", ""), 1.0) for e in examples])
        yield batch
        k += 1


def sft_loss(model, batch, blank=None):
    """The weighted NLL of ``batch``; a text-only batch runs the vision tower on ``blank`` (``text_only_term``)."""
    batch = dict(batch)
    weights, labels = batch.pop("weights"), batch.pop("labels")
    logits = model(**batch).logits
    return weighted_nll(logits, labels, weights) + text_only_term(model, blank, has_images(batch)), {}


def sft_units(batch) -> float:
    """The weighted response tokens ``sft_loss`` is a mean over."""
    return float(token_weights(batch["labels"], batch["weights"]).sum())


def run_sft(cfg: SFTConfig) -> dict:
    from mmalign.train.loop import process_state
    state = process_state()          # first, so a CPU launch forms its process group
    records = None if cfg.data.source == "lab" else record_source(cfg)  # validated before the model loads
    model, processor = _model(cfg)

    def save(unwrapped, folder: Path):
        unwrapped.save_pretrained(folder)
        processor.save_pretrained(folder)

    loss = partial(sft_loss, blank=blank_image_inputs(processor))
    return train(model, param_groups(model, cfg.vision_lr_scale), loss,
                 lambda start: batches(cfg, processor, start, state.process_index, state.num_processes, records),
                 cfg.train, desc="sft", save_model=save, units=sft_units)

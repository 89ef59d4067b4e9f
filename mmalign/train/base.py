"""The lab's base model, trained as real MLLMs are: (1) pretrain the vision tower on the world, (2) fine-tune
projector + decoder (vision tower at a lower rate) on the world's *noisy* training data. A control model with
clean captions (same seed, same steps) shows how much of the hallucination the caption noise causes.

``<out>/vision``: the vision tower and scorer head; ``<out>/base``, ``<out>/control``: model folders;
``<out>/eval/<name>``: held-out results; ``<out>/report.md``.
"""
from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from mmalign.train.loop import TrainConfig
from mmalign.train.sft import SFTConfig, SFTDataConfig, run_sft
from mmalign.train.vision import VisionConfig, pretrain_vision
from mmalign.world.model import LabModelConfig
from mmalign.world.scenes import WorldConfig


@dataclass
class BaseModelConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    lab_model: LabModelConfig = field(default_factory=LabModelConfig)
    out: str = "runs/base"
    vision: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=4000, batch_size=64, lr=2e-3, warmup_steps=50, log_every=100))
    sft: TrainConfig = field(default_factory=lambda: TrainConfig(
        max_steps=4000, batch_size=32, lr=2e-3, warmup_steps=100, log_every=100))
    sft_data: SFTDataConfig = field(default_factory=SFTDataConfig)
    vision_patch_weight: float = 0.0   # > 0: stage 1 adds the per-patch objective (mmalign.train.vision)
    vision_lr_scale: float = 0.3
    control: bool = True            # also train the clean-caption control
    eval_scenes: int = 600
    export_to: str = ""             # copy the vision, base and control model folders here (e.g. mmalign/assets/lab)


def stage_configs(cfg: BaseModelConfig) -> tuple[VisionConfig, SFTConfig, SFTConfig]:
    out = Path(cfg.out)
    vision = VisionConfig(world=cfg.world, model=cfg.lab_model, patch_weight=cfg.vision_patch_weight,
                          train=replace(cfg.vision, output_dir=str(out / "vision")))
    base = SFTConfig(world=cfg.world, lab_model=cfg.lab_model, vision_init=str(out / "vision" / "model"),
                     vision_lr_scale=cfg.vision_lr_scale, data=cfg.sft_data,
                     train=replace(cfg.sft, output_dir=str(out / "base")))
    clean_world = replace(cfg.world, partner_noise=[0.0] * len(cfg.world.pairs), colour_noise=0.0)
    control = replace(base, world=clean_world, train=replace(cfg.sft, output_dir=str(out / "control")))
    return vision, base, control


def train_base_model(cfg: BaseModelConfig) -> dict:
    from mmalign.eval.report import base_report
    from mmalign.eval.runner import evaluate_folder
    vision, base, control = stage_configs(cfg)
    timings = {}
    out = Path(cfg.out)
    t = time.time()
    if not (out / "vision" / "model").exists():  # a finished stage is reused: the command resumes
        pretrain_vision(vision)
        timings["vision_s"] = time.time() - t
    vision_metrics = json.loads((out / "vision" / "vision_eval.json").read_text())
    results = {}
    for name, sft_cfg in [("base", base)] + ([("control", control)] if cfg.control else []):
        t = time.time()
        if not (out / name / "model").exists():
            run_sft(sft_cfg)
            timings[f"{name}_sft_s"] = time.time() - t
        results[name] = evaluate_folder(str(Path(sft_cfg.train.output_dir) / "model"), cfg.world,
                                        Path(cfg.out) / "eval" / name, n_scenes=cfg.eval_scenes)
    summary = {"vision": vision_metrics, "timings": timings, "results": results}
    (Path(cfg.out) / "summary.json").write_text(json.dumps(summary, indent=2))
    base_report(summary, Path(cfg.out))
    if cfg.export_to:
        export(cfg, Path(cfg.export_to))
    return {"out": cfg.out, "timings": timings}


def export(cfg: BaseModelConfig, dest: Path) -> None:
    """Copy the finished model folders (not checkpoints) and the summary, ready to ship."""
    out = Path(cfg.out)
    for name in ["vision", "base"] + (["control"] if cfg.control else []):
        shutil.copytree(out / name / "model", dest / name, dirs_exist_ok=True)
    shutil.copy(out / "summary.json", dest / "summary.json")

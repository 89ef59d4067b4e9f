"""The one training loop every stage uses: accelerate for devices, mixed precision and distribution; gradient
accumulation; cosine schedule with warm-up; checkpoints every N steps and at the end; exact resume; metrics to
JSONL and to any accelerate tracker; a progress bar.

Data is a function ``batches(start)`` that yields this process's micro-batches from global micro-batch
``start`` on. Since the stream is indexed, resuming from step ``s`` restarts the data exactly where it stopped.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Literal

import torch
from accelerate import Accelerator
from accelerate.utils import set_seed
from tqdm.auto import tqdm

from mmalign.errors import MMAlignError

STATE_FILE = "trainer_state.json"


@dataclass
class TrainConfig:
    output_dir: str = "runs/train"
    max_steps: int = 1000
    batch_size: int = 32                 # per process, per micro-batch
    grad_accum: int = 1
    lr: float = 1e-3
    weight_decay: float = 0.01
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 50
    min_lr_ratio: float = 0.1            # cosine decays to lr * min_lr_ratio
    max_grad_norm: float = 1.0
    mixed_precision: Literal["no", "fp16", "bf16"] = "no"
    save_every: int = 0                  # 0: save only at the end
    eval_every: int = 0                  # 0: no periodic evaluation (for loops given an ``evaluate``)
    log_every: int = 10
    resume: str | None = None            # a checkpoint folder, or "latest" (the newest under output_dir)
    seed: int = 0
    trackers: list[str] = field(default_factory=list)   # accelerate trackers, e.g. ["tensorboard"]
    threads: int = 0                     # torch intra-op threads; 0 leaves torch's default


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def find_checkpoint(cfg: TrainConfig) -> Path | None:
    if cfg.resume is None:
        return None
    if cfg.resume != "latest":
        path = Path(cfg.resume)
        if not (path / STATE_FILE).exists():
            raise MMAlignError(f"resume: {path} is not a checkpoint folder (no {STATE_FILE})")
        return path
    ckpts = sorted((Path(cfg.output_dir) / "checkpoints").glob("step-*"))
    return ckpts[-1] if ckpts else None


def save_checkpoint(accelerator: Accelerator, out: Path, step: int) -> Path:
    path = out / "checkpoints" / f"step-{step:07d}"
    accelerator.save_state(str(path))
    if accelerator.is_main_process:
        (path / STATE_FILE).write_text(json.dumps({"step": step}))
    return path


def train(model: torch.nn.Module, param_groups: list[dict], loss_fn: Callable, batches: Callable[[int], Iterator],
          cfg: TrainConfig, *, desc: str = "train", save_model: Callable[[torch.nn.Module, Path], None] | None = None,
          evaluate: Callable[[torch.nn.Module], dict] | None = None,
          stop: Callable[[dict], str | None] | None = None) -> dict:
    """Run ``cfg.max_steps`` optimiser steps of ``loss_fn(model, batch) -> (loss, metrics)``.

    ``param_groups`` are AdamW groups (``lr_scale`` in a group multiplies ``cfg.lr``). ``save_model(unwrapped,
    folder)`` writes the final model. ``evaluate(model)`` runs every ``cfg.eval_every`` steps; ``stop(metrics)``
    sees every logged and evaluated metrics dict and returns a reason to stop early (or None). Returns the last
    logged metrics, with ``stopped`` set when training ended early.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              log_with=cfg.trackers or None, project_dir=str(out))
    set_seed(cfg.seed)
    groups = [{"params": g["params"], "lr": cfg.lr * g.get("lr_scale", 1.0)} for g in param_groups]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if cfg.trackers:
        accelerator.init_trackers(desc)

    start = 0
    ckpt = find_checkpoint(cfg)
    if ckpt is not None:
        accelerator.load_state(str(ckpt))
        start = json.loads((ckpt / STATE_FILE).read_text())["step"]
        accelerator.print(f"resumed from {ckpt} at step {start}")

    out.mkdir(parents=True, exist_ok=True)
    log_file = (out / "metrics.jsonl").open("a") if accelerator.is_main_process else None
    data = batches(start * cfg.grad_accum)
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc=desc,
               disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    model.train()
    last, sums, n, t0 = {}, {}, 0, time.time()
    for step in bar:
        for _ in range(cfg.grad_accum):
            with accelerator.accumulate(model):
                loss, metrics = loss_fn(model, next(data))
                accelerator.backward(loss)
                if accelerator.sync_gradients and cfg.max_grad_norm:
                    metrics["grad_norm"] = float(accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm))
                optimizer.step()
                optimizer.zero_grad()
            for k, v in {"loss": loss.detach(), **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
            n += 1
        scheduler.step()
        records = []
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
            last = {k: v / n for k, v in sums.items()} | {"step": step + 1, "lr": scheduler.get_last_lr()[0],
                                                          "steps_per_s": cfg.log_every / max(time.time() - t0, 1e-9)}
            bar.set_postfix(loss=f"{last['loss']:.4f}")
            records.append(last)
            sums, n, t0 = {}, 0, time.time()
        if evaluate is not None and cfg.eval_every and (step + 1) % cfg.eval_every == 0:
            model.eval()
            records.append({"step": step + 1, **evaluate(accelerator.unwrap_model(model))})
            model.train()
        reason = None
        for rec in records:
            accelerator.log(rec, step=step + 1)
            if log_file:
                log_file.write(json.dumps(rec) + "\n")
                log_file.flush()
            reason = reason or (stop(rec) if stop else None)
        if reason:
            accelerator.print(f"\nstopping early at step {step + 1}: {reason}")
            last = last | {"stopped": reason, "step": step + 1}
            break
        if cfg.save_every and (step + 1) % cfg.save_every == 0 and step + 1 < cfg.max_steps:
            save_checkpoint(accelerator, out, step + 1)
    bar.close()
    final = last.get("step", cfg.max_steps)
    if final > start:
        save_checkpoint(accelerator, out, final)
    accelerator.wait_for_everyone()
    if save_model is not None and accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), out / "model")
    if log_file:
        log_file.close()
    accelerator.end_training()
    return last

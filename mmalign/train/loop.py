"""The one training loop every stage uses: accelerate for devices, mixed precision and distribution; gradient
accumulation; cosine schedule with warm-up; atomic checkpoints every N steps and at the end; exact resume; a guard
against non-finite losses and gradients; metrics to JSONL and to any accelerate tracker; a progress bar.

Data is a function ``batches(start)`` that yields this process's micro-batches from global micro-batch
``start`` on. Since the stream is indexed, resuming from step ``s`` restarts the data exactly where it stopped.

Under several processes each one sees an equal share of the global batch; gradients are averaged by DDP, FSDP or
DeepSpeed, and the logged metrics are averaged across processes, so a run on 2 processes with batch 2 logs what one
process with batch 4 logs (``docs/scale.md``). A loss that is a mean over a count that varies between micro-batches
(response tokens) names that count (``units``), and the loop re-weights each micro-batch so the step's loss is the
mean over the global batch, whatever the split into processes and micro-batches.
"""
from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import torch
from accelerate import Accelerator, PartialState
from accelerate.utils import DistributedDataParallelKwargs, DistributedType, set_seed
from tqdm.auto import tqdm

from mmalign.errors import MMAlignError
from mmalign.train.checkpoint import (
    latest_checkpoint,
    load_checkpoint,
    rewind_metrics,
    save_checkpoint,
)
from mmalign.train.guards import NonFiniteError, NonFiniteGuard, Stateful


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
    resume: str | None = None            # a checkpoint folder, or "latest" (the newest complete one under output_dir)
    seed: int = 0
    trackers: list[str] = field(default_factory=list)   # accelerate trackers, e.g. ["tensorboard"]
    threads: int = 0                     # torch intra-op threads; 0 leaves torch's default
    # optimiser steps with a non-finite loss or gradient norm that are skipped (no update, counted as
    # ``nonfinite_skipped`` in the metrics) before the run stops; 0 stops at the first
    skip_nonfinite: int = 0


def lr_lambda(cfg: TrainConfig) -> Callable[[int], float]:
    def f(step: int) -> float:
        if step < cfg.warmup_steps:
            return (step + 1) / cfg.warmup_steps
        progress = (step - cfg.warmup_steps) / max(1, cfg.max_steps - cfg.warmup_steps)
        return cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    return f


def process_state() -> PartialState:
    """This process's place in the run. accelerate joins the processes of a launcher (``torchrun``, ``accelerate
    launch``) into one group only when it finds a GPU, or when asked for the CPU; so a launch on a machine without
    CUDA asks for the CPU, and its processes form a gloo group. Call it before anything else creates the state."""
    launched = int(os.environ.get("WORLD_SIZE", "1")) > 1
    return PartialState(cpu=launched and not torch.cuda.is_available())


def train(model: torch.nn.Module, param_groups: list[dict], loss_fn: Callable, batches: Callable[[int], Iterator],
          cfg: TrainConfig, *, desc: str = "train", save_model: Callable[[torch.nn.Module, Path], None] | None = None,
          evaluate: Callable[[torch.nn.Module], dict] | None = None,
          stop: Callable[[dict], str | None] | None = None, units: Callable[[object], float] | None = None) -> dict:
    """Run ``cfg.max_steps`` optimiser steps of ``loss_fn(model, batch) -> (loss, metrics)``.

    ``param_groups`` are AdamW groups (``lr_scale`` in a group multiplies ``cfg.lr``). ``save_model(unwrapped,
    folder)`` writes the final model. ``evaluate(model)`` runs every ``cfg.eval_every`` steps; ``stop(metrics)``
    sees every logged and evaluated metrics dict and returns a reason to stop early (or None). ``units(batch)`` is
    what ``loss_fn``'s loss of ``batch`` is a mean over (``unit_share``). A ``loss_fn`` with
    ``state_dict``/``load_state_dict`` is checkpointed with the run. Returns the last logged metrics, with
    ``stopped`` set when training ended early; raises ``NonFiniteError`` when the guard stops the run.
    """
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    out = Path(cfg.output_dir)
    process_state()
    # DDP must be told that some parameters may get no gradient: MLLMs read the vision tower's features before
    # its last layer (LLaVA's vision_feature_layer -2, the lab's too), and a text-only batch skips the tower
    ddp = DistributedDataParallelKwargs(find_unused_parameters=True)
    accelerator = Accelerator(gradient_accumulation_steps=cfg.grad_accum, mixed_precision=cfg.mixed_precision,
                              log_with=cfg.trackers or None, project_dir=str(out), kwargs_handlers=[ddp])
    if cfg.skip_nonfinite and accelerator.distributed_type == DistributedType.DEEPSPEED:
        raise MMAlignError("train.skip_nonfinite needs the loop to decide on each optimiser step, but DeepSpeed steps "
                           "inside backward; set it to 0 under DeepSpeed (a non-finite loss still stops the run)")
    set_seed(cfg.seed)
    groups = [{"params": g["params"], "lr": cfg.lr * g.get("lr_scale", 1.0)} for g in param_groups]
    optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=tuple(cfg.betas), weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg))
    model, optimizer = accelerator.prepare(model, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    if isinstance(loss_fn, Stateful):
        accelerator.register_for_checkpointing(loss_fn)
    if cfg.trackers:
        accelerator.init_trackers(desc)

    start, state = load_checkpoint(accelerator, cfg.resume, out)
    guard = NonFiniteGuard(cfg.skip_nonfinite, state.get("nonfinite_skipped", 0))
    out.mkdir(parents=True, exist_ok=True)
    log_file = None
    if accelerator.is_main_process:
        rewind_metrics(out / "metrics.jsonl", start)  # a resumed run rewrites what the killed one logged after it
        log_file = (out / "metrics.jsonl").open("a")
    data = batches(start * cfg.grad_accum)
    bar = tqdm(range(start, cfg.max_steps), initial=start, total=cfg.max_steps, desc=desc,
               disable=not accelerator.is_local_main_process, dynamic_ncols=True)
    model.train()
    last, sums, n, t0 = {}, {}, 0, time.time()
    for step in bar:
        try:
            done = optimizer_step(accelerator, model, optimizer, loss_fn, data, cfg, guard, units)
        except NonFiniteError as e:
            _close(accelerator, log_file, bar)
            raise NonFiniteError(f"step {step + 1}: {e}; {_last_good(out)}") from None
        for k, v in (done or {}).items():
            sums[k] = sums.get(k, 0.0) + v
        n += cfg.grad_accum if done is not None else 0
        scheduler.step()
        records = []
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.max_steps:
            last = logged(accelerator, sums, n) | {"step": step + 1, "lr": scheduler.get_last_lr()[0],
                                                   "steps_per_s": cfg.log_every / max(time.time() - t0, 1e-9)}
            if cfg.skip_nonfinite:
                last["nonfinite_skipped"] = guard.skipped
            if "loss" in last:
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
            save_checkpoint(accelerator, out, step + 1, {"nonfinite_skipped": guard.skipped})
    final = last.get("step", cfg.max_steps)
    if final > start:
        save_checkpoint(accelerator, out, final, {"nonfinite_skipped": guard.skipped})
    accelerator.wait_for_everyone()
    if save_model is not None and accelerator.is_main_process:
        save_model(accelerator.unwrap_model(model), out / "model")
    _close(accelerator, log_file, bar)
    return last


def optimizer_step(accelerator: Accelerator, model, optimizer, loss_fn: Callable, data: Iterator, cfg: TrainConfig,
                   guard: NonFiniteGuard, units: Callable[[object], float] | None = None) -> dict[str, float] | None:
    """One optimiser step over ``cfg.grad_accum`` micro-batches: the summed metrics of its micro-batches, or None
    when the guard skipped it (no update). Every process reaches the same verdict: the gradient norm is computed
    on the synchronised gradients, and the count of non-finite losses is summed across processes. With ``units``
    the step's micro-batches are drawn first, to count the step's units on every process before any backward."""
    sums, bad_losses = {}, 0
    micro = [next(data) for _ in range(cfg.grad_accum)]
    shares = [1.0] * len(micro)
    if units:
        counts = [float(units(b)) for b in micro]
        shares = unit_share(counts, _sum_over_processes(accelerator, sum(counts)), accelerator.num_processes)
    for batch, share in zip(micro, shares):
        with accelerator.accumulate(model):
            loss, metrics = loss_fn(model, batch)
            loss = loss * share
            bad_losses += int(not torch.isfinite(loss.detach()).all())
            accelerator.backward(loss)
            if accelerator.sync_gradients:
                norm = accelerator.clip_grad_norm_(model.parameters(), cfg.max_grad_norm or math.inf)
                if norm is not None:   # one norm per step, where logged() divides by micro-batches
                    metrics["grad_norm"] = float(norm) * cfg.grad_accum
                problem = guard.problem(int(_sum_over_processes(accelerator, bad_losses)),
                                        float(norm) if norm is not None and _norm_is_ours(accelerator) else None)
                if problem is None:
                    optimizer.step()
                elif guard.allow_skip():
                    accelerator.print(f"\nskipping an optimiser step: {problem} "
                                      f"({guard.skipped} of train.skip_nonfinite={guard.budget} skips used)")
                    if accelerator.scaler is not None:
                        accelerator.scaler.update()  # the step that would have done it was skipped
                    sums = None
                else:
                    raise NonFiniteError(problem)
            optimizer.zero_grad()
        if sums is not None:
            for k, v in {"loss": loss.detach(), **metrics}.items():
                sums[k] = sums.get(k, 0.0) + float(v)
    return sums


def unit_share(counts: list[float], total: float, processes: int) -> list[float]:
    """The factor on each of this process's micro-batch losses, each a mean over its ``counts[m]`` units, that makes
    the optimiser step's gradient that of the mean over the step's ``total`` units (all processes and micro-batches)::

        share_m = counts[m] * processes * grad_accum / total

    since accelerate divides each micro-batch's loss by ``grad_accum`` and DDP, FSDP and DeepSpeed average the
    gradients over processes. A per-process mean would weigh a process's tokens by the inverse of its count, so
    2 processes x batch 2 would not follow 1 x batch 4 when answers differ in length; Hugging Face's Trainer
    counts ``num_items_in_batch`` over the step the same way. The logged loss is then the global mean too."""
    return [c * processes * len(counts) / max(total, 1e-8) for c in counts]


def logged(accelerator: Accelerator, sums: dict[str, float], n: int) -> dict[str, float]:
    """Means over the ``n`` micro-batches since the last log, averaged across processes (whose shards are equal,
    so this is the mean over the global batch)."""
    if not n:
        return {}
    keys = sorted(sums)
    if accelerator.num_processes > 1 and keys:
        values = torch.tensor([sums[k] for k in keys], dtype=torch.float64, device=accelerator.device)
        sums = dict(zip(keys, accelerator.reduce(values, reduction="mean").tolist()))
    return {k: sums[k] / n for k in keys}


def _norm_is_ours(accelerator: Accelerator) -> bool:
    """Whether a non-finite gradient norm is an error: under fp16 it is the loss scaler's (and under DeepSpeed
    its engine's) to skip, with a lower scale, and it happens by design."""
    return accelerator.scaler is None and accelerator.distributed_type != DistributedType.DEEPSPEED


def _sum_over_processes(accelerator: Accelerator, value: float) -> float:
    if accelerator.num_processes == 1:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=accelerator.device)
    return float(accelerator.reduce(t, reduction="sum").item())


def _last_good(out: Path) -> str:
    ckpt = latest_checkpoint(out)
    if ckpt is None:
        return "no checkpoint was written before it (nothing of this run is saved)"
    return f"the last good checkpoint is {ckpt} (resume from it with train.resume=latest)"


def _close(accelerator: Accelerator, log_file, bar) -> None:
    bar.close()
    if log_file:
        log_file.close()
    # trackers only: accelerate's end_training also destroys the process group, which a command that trains
    # several stages in one process (mmalign base: vision, then SFT) still needs
    for tracker in accelerator.trackers:
        tracker.finish()

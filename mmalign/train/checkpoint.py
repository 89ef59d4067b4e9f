"""Checkpoints of the training loop: written atomically, found only when complete, and the metrics log rewound to
the step a run resumes from.

A checkpoint is ``<output_dir>/checkpoints/step-NNNNNNN``: accelerate's state (model, optimiser, scheduler, the RNG
states of every process, registered objects) plus ``trainer_state.json`` with the step, the loop's own counters
and the size of every file. It is written under ``step-NNNNNNN.tmp`` and renamed when complete, so a process killed
while saving leaves a ``.tmp`` folder that nothing reads; a folder whose files do not match the sizes recorded
(copied in part, truncated) is passed over too.
"""
from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from accelerate import Accelerator

from mmalign.errors import MMAlignError

STATE_FILE = "trainer_state.json"
NAME = re.compile(r"step-\d{7}")


def save_checkpoint(accelerator: Accelerator, out: Path, step: int, counters: dict) -> Path:
    """Write the state at ``step`` under a temporary name, then rename it into place (all processes call this)."""
    final = out / "checkpoints" / f"step-{step:07d}"
    tmp = final.with_name(final.name + ".tmp")
    if accelerator.is_main_process and tmp.exists():
        shutil.rmtree(tmp)                       # left by a run killed while saving
    accelerator.wait_for_everyone()
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()              # every process has written its RNG state
    if accelerator.is_main_process:
        files = {str(p.relative_to(tmp)): p.stat().st_size for p in sorted(tmp.rglob("*")) if p.is_file()}
        (tmp / STATE_FILE).write_text(json.dumps({"step": step, **counters, "files": files}))
        if final.exists():                       # an earlier run in the same folder reached this step
            shutil.rmtree(final)
        os.replace(tmp, final)
    accelerator.wait_for_everyone()
    return final


def checkpoint_problem(path: Path) -> str | None:
    """Why ``path`` is not a complete checkpoint, or None."""
    if not (path / STATE_FILE).is_file():
        return f"has no {STATE_FILE} (not a checkpoint, or one whose writing did not finish)"
    try:
        state = json.loads((path / STATE_FILE).read_text())
        files, step = state.get("files", {}), int(state["step"])
    except (ValueError, KeyError, TypeError, AttributeError):
        return f"has an unreadable {STATE_FILE}"
    for name, size in files.items():
        f = path / name
        if not f.is_file() or f.stat().st_size != size:
            return f"is incomplete: {name} is missing or not the {size} bytes recorded at step {step}"
    return None


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint under ``out/checkpoints``; temporary and incomplete folders are passed over."""
    folders = sorted((out / "checkpoints").glob("step-*"), reverse=True)
    return next((p for p in folders if NAME.fullmatch(p.name) and checkpoint_problem(p) is None), None)


def load_checkpoint(accelerator: Accelerator, resume: str | None, out: Path) -> tuple[int, dict]:
    """Restore the state ``resume`` names (a folder, or "latest" under ``out``); ``(step, trainer state)``, or
    ``(0, {})`` when there is nothing to resume."""
    if resume is None:
        return 0, {}
    path = latest_checkpoint(out) if resume == "latest" else Path(resume)
    if path is None:
        return 0, {}
    problem = checkpoint_problem(path)
    if problem:
        raise MMAlignError(f"resume: {path} {problem}")
    accelerator.load_state(str(path))
    state = json.loads((path / STATE_FILE).read_text())
    accelerator.print(f"resumed from {path} at step {state['step']}")
    return int(state["step"]), state


def rewind_metrics(path: Path, step: int) -> None:
    """Keep the records of steps up to ``step`` (all of them gone for a fresh run): what a killed run logged after
    its last checkpoint is logged again by the resumed one, exactly once."""
    if not path.exists():
        return
    kept = [line for line in path.read_text().splitlines() if line.strip() and _step(line) <= step]
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(line + "\n" for line in kept))
    os.replace(tmp, path)


def _step(line: str) -> float:
    try:
        return json.loads(line).get("step", 0)
    except (ValueError, AttributeError):
        return float("inf")                      # a line cut by a kill: dropped

"""How an iterative run keeps its stages on disk, so that it resumes after an interruption at any point.

A stage writes into ``<stage>.tmp/`` and the folder is renamed to ``<stage>/`` once the stage has returned: a
stage folder exists only complete, and a finished stage is skipped on a rerun. A ``.tmp`` folder is what an
interrupted stage left; it is removed and the stage redone, except for training, which resumes inside it from
its last complete checkpoint (``train.resume=latest``). Single files are written beside their place and renamed
onto it, so none is ever half-written either.
"""
from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from pathlib import Path


def run_stage(path: Path, fn: Callable[[Path], None], *, resume_partial: bool = False) -> bool:
    """Run ``fn(tmp)`` unless ``path`` exists, then move ``tmp`` to ``path``; whether it ran."""
    if path.is_dir():
        return False
    tmp = path.with_name(path.name + ".tmp")
    if tmp.exists() and not resume_partial:
        shutil.rmtree(tmp)
    tmp.mkdir(parents=True, exist_ok=True)
    fn(tmp)
    os.replace(tmp, path)
    return True


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
    return path


def write_json(path: Path, obj) -> Path:
    return write_text(path, json.dumps(obj, indent=2, default=str))


def read_json(path: Path):
    return json.loads(path.read_text())

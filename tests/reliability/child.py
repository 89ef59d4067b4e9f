"""Training processes for the reliability tests: ``python child.py ARGS_JSON`` runs each ``mmalign`` command of
ARGS_JSON (a list of argument lists) in turn, alone or as one process of a launch (torchrun, accelerate launch).

It creates the process state first, as the trainers' ``process_state()`` does (docs/scale.md), so a launch's
processes join one gloo group on a machine without a GPU. With ``STALL_AT=N`` and ``STALL_MARKER=FILE`` in the
environment, the N-th call of the SFT loss writes FILE and sleeps: the test kills the process there. With
``REFERENCE_LOG=FILE`` each process appends ``RANK RECORDS`` to FILE for every reference computation it runs.
"""
import json
import os
import sys
import time
from pathlib import Path

import torch

from mmalign.cli import main
from mmalign.train import reference, sft
from mmalign.train.loop import process_state


def stalling(loss_fn, at: int, marker: Path):
    calls = 0

    def wrapped(model, batch, **kw):
        nonlocal calls
        calls += 1
        if calls == at:
            marker.write_text("stalled")
            time.sleep(600)
        return loss_fn(model, batch, **kw)
    return wrapped


def logging_records(compute, log: Path, rank: int):
    def wrapped(ref_model, processor, records, views, **kw):
        with log.open("a") as f:
            f.write(f"{rank} {len(records)}\n")
        return compute(ref_model, processor, records, views, **kw)
    return wrapped


if __name__ == "__main__":
    torch.set_num_threads(1)
    state = process_state()
    if "REFERENCE_LOG" in os.environ:
        reference.compute_reference = logging_records(reference.compute_reference, Path(os.environ["REFERENCE_LOG"]),
                                                      state.process_index)
    if "STALL_AT" in os.environ:
        sft.sft_loss = stalling(sft.sft_loss, int(os.environ["STALL_AT"]), Path(os.environ["STALL_MARKER"]))
    for argv in json.loads(sys.argv[1]):
        code = main(argv)
        if code:
            sys.exit(code)

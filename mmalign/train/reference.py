"""The reference model pi_ref: a frozen copy, the policy with its LoRA adapters disabled, or log-probs
precomputed once and cached on disk.

The cache is a safetensors file keyed by a fingerprint of the reference weights and of the data (every view's
images, prompts and responses, token-weight settings), so it is reused across epochs and runs and never
served for different weights or data. Image datasets work like text ones: the images are part of the key.

Under several processes each computes the reductions of its contiguous share of the records, all gather them,
and process 0 writes the file (under a temporary name, then renamed, so a killed run never leaves a partial file
under the cache's name). Whether the file is there is process 0's verdict, and a table read from it is sent to the
others: every process agrees on computing or not, and ``cache_dir`` need not be on a shared filesystem.
"""
from __future__ import annotations

import contextlib
import copy
import hashlib
import json
import os
from pathlib import Path

import numpy as np
import torch
from accelerate import PartialState
from accelerate.utils import broadcast_object_list, gather_object
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from mmalign.data.collate import collate_preference
from mmalign.data.pack import collate_packed
from mmalign.models.logprobs import preference_logps
from mmalign.models.packed import packed_logps
from mmalign.types import PreferenceLogps, SeqLogps

FIELDS = ("sum", "count", "weighted", "weight_sum")
VIEW_FIELDS = ("chosen", "rejected", "chosen_corrupt", "noise", "kl")


def logps_path(packed: bool):
    """``(collate, score)``: the concatenated batch and forward, or the prefix-shared packed ones
    (``data.packed``). Both give the same ``PreferenceLogps``, so the cache key leaves the choice out."""
    return (collate_packed, packed_logps) if packed else (collate_preference, preference_logps)


def frozen_copy(model: torch.nn.Module) -> torch.nn.Module:
    ref = copy.deepcopy(model).eval()
    ref.requires_grad_(False)
    return ref


@contextlib.contextmanager
def adapters_disabled(model):
    """The LoRA-wrapped policy acting as its own reference (no second copy of the weights)."""
    with model.disable_adapter():
        yield model


def model_fingerprint(model: torch.nn.Module) -> str:
    h = hashlib.sha256()
    for name, t in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(t.detach().cpu().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes())  # 0-dim too
    return h.hexdigest()


def data_fingerprint(records: list, views: tuple[str, ...], settings: dict) -> str:
    h = hashlib.sha256(json.dumps({"views": list(views), **settings}, sort_keys=True).encode())
    for r in records:
        h.update(json.dumps([r.id, r.prompt, r.chosen, r.rejected, r.chosen_spans, r.rejected_spans]).encode())
        for img in list(r.images) + list(r.corrupt_images or []):
            pixels = np.asarray(img.convert("RGB"))
            h.update(str(pixels.shape).encode() + pixels.tobytes())  # the shape too: same bytes, other image
        for clip in list(r.audios) + list(r.corrupt_audios or []):   # silence and a tone differ only here
            h.update(f"{r.sampling_rate}:{len(clip)}".encode() + np.asarray(clip, dtype=np.float32).tobytes())
    return h.hexdigest()


def _to_rows(logps: PreferenceLogps) -> dict[str, torch.Tensor]:
    out = {}
    for v in VIEW_FIELDS:
        seq = getattr(logps, v, None)
        if seq is not None:
            for f in FIELDS:
                val = getattr(seq, f)
                if val is not None:
                    out[f"{v}.{f}"] = val.detach().float().cpu()
    return out


@torch.no_grad()
def compute_reference(ref_model, processor, records: list, views: tuple[str, ...], *, batch_size: int,
                      noise: bool, kl_partners: list | None = None, desc: str = "reference log-probs",
                      packed: bool = False, **collate_kw) -> dict[str, torch.Tensor]:
    """Reference reductions for every record, stacked in record order: ``{"chosen.sum": (N,), ...}``;
    ``collate_kw`` as the trainer collates its batches (token weights, max length, ...)."""
    collate, score = logps_path(packed)
    parts: dict[str, list] = {}
    device = next(ref_model.parameters()).device
    quiet = not PartialState().is_local_main_process
    for start in tqdm(range(0, len(records), batch_size), desc=desc, unit="batch", disable=quiet):
        end = start + batch_size
        batch = collate(processor, records[start:end], views, **collate_kw,
                        kl_partners=kl_partners[start:end] if kl_partners else None).to(device)
        for k, v in _to_rows(score(ref_model, batch, noise=noise)).items():
            parts.setdefault(k, []).append(v)
    return {k: torch.cat(v) for k, v in parts.items()}


def sharded_reference(ref_model, processor, records: list, views: tuple[str, ...], *, kl_partners: list | None = None,
                      **kw) -> dict[str, torch.Tensor]:
    """``compute_reference`` with the records split between the processes (contiguous shares, the first
    ``len(records) % processes`` one longer) and the shares gathered in record order on every process."""
    state = PartialState()
    with state.split_between_processes(list(range(len(records)))) as mine:
        part = compute_reference(ref_model, processor, [records[i] for i in mine], views,
                                 kl_partners=[kl_partners[i] for i in mine] if kl_partners else None, **kw)
    shares = [p for p in gather_object([part]) if p]      # a process with no records has an empty table
    return {k: torch.cat([p[k] for p in shares]) for k in (shares[0] if shares else {})}


def save_atomically(table: dict[str, torch.Tensor], path: Path, metadata: dict[str, str]) -> None:
    """``save_file`` under a temporary name in ``path``'s folder, then renamed to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.{os.getpid()}.tmp")
    try:
        save_file(table, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class ReferenceCache:
    """Reference reductions for a fixed list of records, looked up by record id."""

    def __init__(self, table: dict[str, torch.Tensor], ids: list[str]):
        self.table, self.index = table, {i: k for k, i in enumerate(ids)}

    @classmethod
    def load_or_compute(cls, path: Path, ref_model, processor, records: list, views, **kw) -> ReferenceCache:
        """Every process calls it (module docstring)."""
        state, ids = PartialState(), [r.id for r in records]
        [table] = broadcast_object_list([load_file(str(path)) if state.is_main_process and path.exists() else None])
        if table is None:
            table = sharded_reference(ref_model, processor, records, views, **kw)
            if state.is_main_process:
                save_atomically(table, path, {"n": str(len(ids))})
            state.wait_for_everyone()
        return cls(table, ids)

    def lookup(self, ids: list[str]) -> PreferenceLogps:
        rows = torch.tensor([self.index[i] for i in ids])

        def seq(view: str) -> SeqLogps | None:
            if f"{view}.sum" not in self.table:
                return None
            get = (lambda f: self.table[f"{view}.{f}"][rows] if f"{view}.{f}" in self.table else None)
            return SeqLogps(*(get(f) for f in FIELDS))

        return PreferenceLogps(**{v: seq(v) for v in VIEW_FIELDS})

"""LLaMA-Factory's ShareGPT preference format (LLaMA-Factory ``data/README.md``, "Preference Dataset" and
"Multimodal Dataset"; the pre-registered ``rlhf_v`` entry of ``data/dataset_info.json``).

Schema: ``conversations``, a list of ``{"from": "human"|"gpt"|"system"|..., "value": text}`` ending with the
user turn, where each ``<image>`` in the text marks the next image; ``chosen`` and ``rejected``, one assistant
message each; ``images``, a list of paths (relative to the file's folder here, as LLaMA-Factory resolves them
against the dataset folder); optional ``system``. The OpenAI tag variant (``messages`` with ``{"role",
"content"}``) is read too. Register a written file in ``dataset_info.json`` with ``"formatting": "sharegpt",
"ranking": true`` and ``columns`` ``messages: conversations, chosen, rejected, images``.

Not carried: the tag style (written as ``from``/``value``) and whether the system prompt was a ``system`` column or
a system turn (read into a leading system turn, written as one). ``videos`` and other columns travel in ``meta``.
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import (
    message_text,
    parse_turns,
    prompt_to_turns,
    sharegpt,
    turns_to_prompt,
)
from mmalign.data.formats.pairs import read_pairs, split_extras, write_pairs
from mmalign.data.preference import PreferenceRecord

DOCUMENTED = {"conversations", "messages", "chosen", "rejected", "images", "system"}
# record field -> the column a problem about it names
COLUMNS = {"prompt": "conversations"}


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    key = "conversations" if "conversations" in raw else "messages"
    turns, problems = parse_turns(raw.get(key), key)
    system = raw.get("system")
    if isinstance(system, str):
        turns = [("system", system)] + turns
    elif system is not None:
        problems.append(f"field 'system': a {type(system).__name__}, expected a string")
    chosen, found = message_text(raw.get("chosen"), "chosen")
    rejected, found2 = message_text(raw.get("rejected"), "rejected")
    problems += found + found2
    if problems:
        return [], problems
    return [{"prompt": turns_to_prompt(turns), "images": raw.get("images") or [], "chosen": chosen,
             "rejected": rejected, **split_extras(raw, DOCUMENTED)}], []


def write(records: list, path: Path) -> Path:
    return write_pairs(records, path, _row, documented=DOCUMENTED, images={"images": True})


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    return {"conversations": sharegpt(prompt_to_turns(rec.prompt, len(rec.images))),
            "chosen": {"from": "gpt", "value": rec.chosen}, "rejected": {"from": "gpt", "value": rec.rejected},
            "images": sink.refs(rec.images, f"{n:06d}")}


def detect(row: dict) -> bool:
    return isinstance(row.get("chosen"), dict) and ("conversations" in row or "messages" in row)

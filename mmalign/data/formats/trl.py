"""TRL's conversational vision preference format (TRL ``docs/source/dataset_formats.md``, "Vision datasets";
``trl-lib/rlaif-v``, ``HuggingFaceH4/rlaif-v_formatted``).

Schema: ``prompt`` a list of ``{"role", "content"}`` messages whose content is typed blocks (``{"type": "image"}``,
``{"type": "text", "text": ...}``); ``chosen`` and ``rejected`` lists of assistant messages; the images in an
``images`` column (a list; HF ``Image`` features in parquet) or an ``image`` column (one). The implicit-prompt
variant, with no ``prompt`` and full conversations in ``chosen``/``rejected``, is read by taking their common
leading messages as the prompt. Read by ``preference.py``'s TRL layout (columns named like record fields are kept
as such, other columns go to ``meta``); written as JSONL, JSON or parquet with the other record fields as extra
columns (``pairs.py``).

Not carried: content of ``chosen``/``rejected`` other than their text blocks (only the text is kept).
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import (
    clean,
    is_messages,
    prompt_to_turns,
    turns_to_prompt,
)
from mmalign.data.formats.pairs import write_pairs
from mmalign.data.formats.rows import read_rows
from mmalign.data.preference import FIELDS, PreferenceRecord, parse_rows

DOCUMENTED = {"image", *FIELDS}   # TRL's reader takes a column named like a record field as that field


def read(path: Path) -> tuple[list, list[str]]:
    rows, problems = read_rows(path)
    rows = [(where, default_id, _explicit(raw)) for where, default_id, raw in rows]
    records, found = parse_rows(rows, path.parent, trl=True)
    return records, problems + found


def _explicit(raw):
    """The row with its prompt explicit and the parquet nulls in message blocks dropped."""
    if not isinstance(raw, dict):
        return raw
    raw = {k: clean(v) if k in ("prompt", "chosen", "rejected") and is_messages(v) else v for k, v in raw.items()}
    chosen, rejected = raw.get("chosen"), raw.get("rejected")
    if "prompt" in raw or not (is_messages(chosen) and is_messages(rejected)):
        return raw
    k = 0
    while k < min(len(chosen), len(rejected)) - 1 and chosen[k] == rejected[k]:
        k += 1
    return {**raw, "prompt": chosen[:k], "chosen": chosen[k:], "rejected": rejected[k:]}


def write(records: list, path: Path) -> Path:
    return write_pairs(records, path, _row, documented=DOCUMENTED, images={"images": True})


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    prompt = rec.prompt if isinstance(rec.prompt, list) else \
        turns_to_prompt(prompt_to_turns(rec.prompt, len(rec.images)))
    return {"prompt": prompt, "chosen": _answer(rec.chosen), "rejected": _answer(rec.rejected),
            "images": sink.refs(rec.images, f"{n:06d}")}


def _answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


def detect(row: dict) -> bool:
    return isinstance(row.get("chosen"), list)

"""Supervised records: ``{"images": [path, ...], "prompt": str | messages, "response": str, "task"?: str}``.

Image paths are relative to the record file's folder (or absolute). Every problem in a file is collected and
reported at once, each naming the file, the line and the field; nothing is skipped silently.
"""
from __future__ import annotations

import json
from pathlib import Path

from PIL import Image

from mmalign.errors import MMAlignError

MAX_LISTED = 20


def _problems(rec, root: Path) -> list[str]:
    if not isinstance(rec, dict):
        return [f"record is a {type(rec).__name__}, expected an object"]
    out = []
    if not isinstance(rec.get("prompt"), (str, list)):
        out.append("field 'prompt': missing or not a string/message list")
    if not isinstance(rec.get("response"), str):
        out.append("field 'response': missing or not a string")
    images = rec.get("images", [])
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
        out.append("field 'images': expected a list of paths")
    else:
        out += [f"field 'images': file not found: {p}" for p in images if not (root / p).exists()]
    return out


def load_sft_records(path: str | Path) -> "SFTRecords":
    path = Path(path)
    if not path.exists():
        raise MMAlignError(f"data file not found: {path}")
    records, problems = [], []
    for line_no, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{line_no}: invalid JSON ({e.msg})")
            continue
        problems += [f"{path}:{line_no}: {p}" for p in _problems(rec, path.parent)]
        records.append(rec)
    raise_problems(problems, records, path)
    return SFTRecords(records, path.parent)


def raise_problems(problems: list[str], records: list, source) -> None:
    """One error listing every problem found in ``source`` (the first MAX_LISTED, then a count), or one for
    a file with no records at all."""
    if problems:
        listed = "\n  ".join(problems[:MAX_LISTED])
        more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
        raise MMAlignError(f"{len(problems)} problem(s) in {source}:\n  {listed}{more}")
    if not records:
        raise MMAlignError(f"{source}: no records")


class SFTRecords:
    """The records of one file; images are opened when a record is read."""

    def __init__(self, records: list[dict], root: Path):
        self.records, self.root = records, root

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> dict:
        rec = self.records[i]
        return rec | {"images": [Image.open(self.root / p).convert("RGB") for p in rec.get("images", [])]}

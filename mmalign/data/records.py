"""Supervised records: ``{"images": [path, ...], "prompt": str | messages, "response": str, "task"?: str}``.

Files are JSONL, a JSON array or parquet (``formats/rows.py``). Image paths are relative to the record file's folder
(or absolute); every image is opened once when the file is read, so a missing, broken or too large image is found
before training. Every problem in a file is collected and reported at once, each naming the file, the line and the
field; nothing is skipped silently.
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.images import image_ref, load_images
from mmalign.data.formats.messages import is_messages, prompt_texts, text_problems
from mmalign.data.formats.rows import read_rows
from mmalign.errors import MMAlignError

MAX_LISTED = 20


def _problems(rec, root: Path, where: str) -> list[str]:
    if not isinstance(rec, dict):
        return [f"record is a {type(rec).__name__}, expected an object"]
    out = _text_problems(rec)
    if "task" in rec and not isinstance(rec["task"], str):
        out.append(f"field 'task': a {type(rec['task']).__name__}, expected a string")
    images = rec.get("images", [])
    if not isinstance(images, list) or not all(isinstance(p, str) for p in images):
        return out + ["field 'images': expected a list of paths"]
    out += [f"field 'images': file not found: {p}" for p in images if not (root / p).is_file()]
    out += [p for p in load_images(images, root, "images", where)[1] if ": file not found: " not in p]
    prompt = rec.get("prompt")
    if is_messages(prompt) and (n := sum(b.get("type") == "image" for m in prompt if isinstance(m["content"], list)
                                         for b in m["content"])) != len(images):
        out.append(f"field 'prompt': {n} image block(s) for {len(images)} image(s) in 'images'")
    return out


def _text_problems(rec: dict) -> list[str]:
    out = []
    prompt, response = rec.get("prompt"), rec.get("response")
    if not (isinstance(prompt, str) or is_messages(prompt) and prompt and
            all(isinstance(m.get("role"), str) for m in prompt)):
        out.append("field 'prompt': missing or not a string/message list")
    else:
        out += [p for text in prompt_texts(prompt) for p in text_problems("prompt", text)]
    if not isinstance(response, str):
        out.append("field 'response': missing or not a string")
    elif not response.strip():
        out.append("field 'response': empty")
    else:
        out += text_problems("response", response)
    return out


def load_sft_records(path: str | Path) -> SFTRecords:
    path = Path(path)
    rows, problems = read_rows(path)
    for where, _, rec in rows:
        problems += [f"{where}: {p}" for p in _problems(rec, path.parent, where)]
    records = [rec for _, _, rec in rows]
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
        return rec | {"images": [image_ref(p, self.root, f"record {i}") for p in rec.get("images", [])]}

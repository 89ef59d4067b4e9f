"""Reading official benchmark files: every problem names the file, the record (line or index) and the field.

A field rule is a type (``str``), a tuple of types (``(int, str)``) or a set of allowed values
(``{"yes", "no"}``). Problems are collected over the whole file and raised together through
``mmalign.data.records.raise_problems``, the one place that formats them.
"""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

from mmalign.data.records import raise_problems
from mmalign.errors import MMAlignError


def need_file(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise MMAlignError(f"benchmark file not found: {path}")
    return path


def read_json(path: str | Path):
    """The parsed content of one JSON file."""
    path = need_file(path)
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise MMAlignError(f"{path}:{e.lineno}: invalid JSON ({e.msg})") from None


def read_records(path: str | Path, fields: dict) -> list[dict]:
    """The records of a JSON array file or a JSON Lines file (whichever the content is), checked against
    ``fields``. Official files mix the two: POPE's ``coco_pope_random.json`` is JSON Lines."""
    path = need_file(path)
    text = path.read_text(encoding="utf-8")
    if text.lstrip().startswith("["):
        rows = [(f"{path}: record {i}", rec) for i, rec in enumerate(read_json(path))]
        problems = []
    else:
        rows, problems = _json_lines(path, text)
    return _checked(rows, fields, problems, path)


def read_tsv(path: str | Path, fields: dict) -> list[dict]:
    """The rows of a tab-separated file with a header line (VLMEvalKit's layout), checked against ``fields``."""
    path = need_file(path)
    csv.field_size_limit(sys.maxsize)     # VLMEvalKit TSVs carry base64 images in one cell
    with path.open(newline="", encoding="utf-8") as f:
        rows = [(f"{path}: row {i} (index {rec.get('index')})", rec)
                for i, rec in enumerate(csv.DictReader(f, delimiter="\t"))]
    return _checked(rows, fields, [], path)


def _json_lines(path: Path, text: str) -> tuple[list, list[str]]:
    rows, problems = [], []
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{n}", json.loads(line)))
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{n}: invalid JSON ({e.msg})")
    return rows, problems


def _checked(rows: list, fields: dict, problems: list[str], path: Path) -> list[dict]:
    for where, rec in rows:
        problems += [f"{where}: {p}" for p in field_problems(rec, fields)]
    records = [rec for _, rec in rows]
    raise_problems(problems, records, path)
    return records


def field_problems(rec, fields: dict) -> list[str]:
    if not isinstance(rec, dict):
        return [f"record is a {type(rec).__name__}, expected an object"]
    out = []
    for name, rule in fields.items():
        if name not in rec:
            out.append(f"field '{name}': missing")
        elif isinstance(rule, (set, frozenset)):
            if rec[name] not in rule:
                out.append(f"field '{name}': {rec[name]!r} is not one of {sorted(rule)}")
        elif not isinstance(rec[name], rule) or isinstance(rec[name], bool) and bool not in _types(rule):
            out.append(f"field '{name}': expected {_names(rule)}, got {type(rec[name]).__name__}")
    return out


def _types(rule) -> tuple:
    return rule if isinstance(rule, tuple) else (rule,)


def _names(rule) -> str:
    return " or ".join(t.__name__ for t in _types(rule))

"""mmalign's own layout: one JSONL object per record with the fields of ``PreferenceRecord``
(``data/preference.py`` documents it); a parquet file with the same columns is read too. Carries everything,
images written as PNG files beside the file."""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.rows import read_rows
from mmalign.data.preference import FIELDS, parse_rows, write_preference_file
from mmalign.errors import MMAlignError


def read(path: Path) -> tuple[list, list[str]]:
    rows, problems = read_rows(path)
    records, found = parse_rows(rows, path.parent, trl=False)
    return records, problems + found


def write(records: list, path: Path) -> Path:
    if path.suffix != ".jsonl":
        raise MMAlignError(f"cannot write {path}: mmalign's layout is written as .jsonl")
    return write_preference_file(records, path)


def detect(row: dict) -> bool:
    return isinstance(row.get("chosen"), str) and set(row) <= set(FIELDS)

"""Rows of a data file (JSONL, a JSON array or parquet), each with the place its problems are reported at.

A row's place is ``FILE:LINE`` for JSONL, ``FILE:N`` (the 1-based row) for parquet and ``FILE record N`` for a JSON
array; its default id is ``STEM-N`` with N that line, row or record number. Parquet stores a missing value as
null, so a null reads back as absent; an object whose keys differ between rows reads back with the missing keys
null. Parquet image columns are read undecoded (``{"bytes", "path"}``), so a broken image is a problem of its row,
not an error of the file. Text that is not UTF-8 is a problem of its line.
"""
from __future__ import annotations

import json
from pathlib import Path

import datasets
from datasets.exceptions import DatasetGenerationError

from mmalign.errors import MMAlignError

Row = tuple[str, str, object]          # (where, default id, the parsed row)
SUFFIXES = (".jsonl", ".json", ".parquet")


def read_rows(path: str | Path) -> tuple[list[Row], list[str]]:
    """Every row of the file, and a problem for each line or file that is not valid JSON."""
    path = Path(path)
    if not path.exists():
        raise MMAlignError(f"data file not found: {path}")
    if path.suffix == ".parquet":
        return _parquet_rows(path)
    if path.suffix == ".json":
        return _json_rows(path)
    return _jsonl_rows(path)


def _parquet_rows(path: Path) -> tuple[list[Row], list[str]]:
    try:
        rows = datasets.Dataset.from_parquet(str(path)).to_list()    # to_list leaves images undecoded
    except (ValueError, OSError, DatasetGenerationError) as e:   # pyarrow's ArrowInvalid is a ValueError
        return [], [f"{path}: not a readable parquet file ({type(e).__name__}: {str(e).splitlines()[0][:200]})"]
    return [(f"{path}:{n}", f"{path.stem}-{n}", row) for n, row in enumerate(rows, start=1)], []


def _jsonl_rows(path: Path) -> tuple[list[Row], list[str]]:
    rows, problems = [], []
    for n, raw in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            problems.append(f"{path}:{n}: not UTF-8 text (byte {e.start + 1} of the line)")
            continue
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{n}", f"{path.stem}-{n}", json.loads(line)))
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{n}: invalid JSON ({e.msg})")
    return rows, problems


def _json_rows(path: Path) -> tuple[list[Row], list[str]]:
    data = path.read_bytes()
    try:
        data = json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as e:
        line = data[:e.start].count(b"\n") + 1
        return [], [f"{path}:{line}: not UTF-8 text"]
    except json.JSONDecodeError as e:
        return [], [f"{path}:{e.lineno}: invalid JSON ({e.msg})"]
    if not isinstance(data, list):
        return [], [f"{path}: a JSON {type(data).__name__}, expected an array of records"]
    return [(f"{path} record {n}", f"{path.stem}-{n}", row) for n, row in enumerate(data, start=1)], []


def write_rows(rows: list[dict], path: str | Path, images: dict[str, bool] | None = None) -> Path:
    """Rows to JSONL, a JSON array or parquet (by the suffix). ``images`` names the parquet columns that hold
    images, True for a list of them; they are stored as HF ``Image`` features so ``datasets`` decodes them."""
    path = Path(path)
    if path.suffix not in SUFFIXES:
        raise MMAlignError(f"cannot write {path}: the file name must end in {', '.join(SUFFIXES)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(row) + "\n" for row in rows))
    elif path.suffix == ".json":
        path.write_text(json.dumps(rows, indent=1) + "\n")
    else:
        columns = list(dict.fromkeys(k for row in rows for k in row))  # from_list keeps only the first row's keys
        ds = datasets.Dataset.from_list([{k: row.get(k) for k in columns} for row in rows])
        for name, many in (images or {}).items():
            if name in columns:
                ds = ds.cast_column(name, datasets.Sequence(datasets.Image()) if many else datasets.Image())
        ds.to_parquet(str(path))
    return path

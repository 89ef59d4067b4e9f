"""Reading and writing pair formats row by row, and the columns a format has no slot for.

A format module gives ``to_fields(raw) -> (field dicts in mmalign's layout, problems)`` for one row (a ranked
row gives several); validation, image loading and id checks are ``preference.records_from_fields``'s, the same
as for mmalign's own files. To write, it gives ``check(record) -> problems`` (what keeps a record out of the
format) and ``to_row(record, sink, n) -> row``; every record is checked before any image or row is written.
Problems name the file, the record and the field when reading, and the record id when writing; nothing is
skipped.

**Extra columns.** A record field the format has no column for travels as an extra column named after it
(``RECORD_COLUMNS``), the way TRL's reader keeps such columns, and each ``meta`` entry travels as a column of its
own. Reading, those columns return to their fields and every other column the format does not define goes to
``meta``. Trainers that read the format ignore extra columns, so a conversion through any format loses only
what its docstring lists.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import question
from mmalign.data.formats.rows import read_rows, write_rows
from mmalign.data.preference import PreferenceRecord, records_from_fields
from mmalign.data.records import raise_problems

RECORD_COLUMNS = ("id", "task", "reward_margin", "scores", "ref_logps", "chosen_spans", "rejected_spans",
                  "corrupt_images")


def read_pairs(path: Path, to_fields: Callable, columns: dict[str, str] | None = None) -> tuple[list, list[str]]:
    """Records and problems; ``columns`` names the format's column for a record field, so that a problem found
    on the record (``field 'prompt': ...``) names the column the file has (``field 'question': ...``)."""
    rows, problems = read_rows(path)
    items = []
    for where, default_id, raw in rows:
        if not isinstance(raw, dict):
            problems.append(f"{where}: record is a {type(raw).__name__}, expected an object")
            continue
        found_fields, found = to_fields(raw)
        problems += [f"{where}: {p}" for p in found]
        items += [(where, default_id, f) for f in found_fields]
    records, found = records_from_fields(items, path.parent)
    for field_name, column in (columns or {}).items():
        found = [p.replace(f"field '{field_name}'", f"field '{column}'", 1) for p in found]
    return records, problems + found


def write_pairs(records: list, path: Path, to_row: Callable, *, documented: set, native: set = frozenset(),
                check: Callable = lambda rec: [], images: dict[str, bool] | None = None) -> Path:
    """``documented``: the format's columns; ``native``: the ``RECORD_COLUMNS`` it holds in its own way;
    ``images``: its image columns (see ``write_rows``)."""
    problems = [f"record '{rec.id}': {p}" for rec in records for p in check(rec) + _clashes(rec, native, documented)]
    raise_problems(problems, records, f"the records for {path}")
    sink = ImageSink(path)
    rows = [to_row(rec, sink, n) | _extra_columns(rec, native, sink, n) for n, rec in enumerate(records)]
    return write_rows(rows, path, (images or {}) | {"corrupt_images": True})


def unfit(rec: PreferenceRecord, label: str, images: str | None = None, one_question: bool = False) -> list[str]:
    """What keeps a record out of a format whose rows hold ``images`` ("exactly one" or "at most one") image and,
    with ``one_question``, a prompt of one question."""
    problems = []
    if images is not None and len(rec.images) not in {"exactly one": (1,), "at most one": (0, 1)}[images]:
        problems.append(f"{label} rows hold {images} image, this record has {len(rec.images)}")
    if one_question and question(rec.prompt) is None:
        problems.append(f"{label} rows hold one question, this record's prompt has several turns")
    return problems


def split_extras(raw: dict, documented: set) -> dict:
    """Fields from the columns outside ``documented``: record fields by name, the rest in ``meta`` (a null
    column counts as absent)."""
    f, meta = {}, {}
    for k, v in raw.items():
        if k not in documented and v is not None:
            (f if k in RECORD_COLUMNS else meta)[k] = str(v) if k == "id" else v
    return f | ({"meta": meta} if meta else {})


def _extras(rec: PreferenceRecord, native: set) -> dict:
    """The record fields that travel as extra columns, unencoded."""
    return {name: getattr(rec, name) for name in RECORD_COLUMNS
            if name not in native and getattr(rec, name) not in (None, "")}


def _clashes(rec: PreferenceRecord, native: set, documented: set) -> list[str]:
    taken = documented | _extras(rec, native).keys()
    return [f"meta key '{k}' would overwrite the '{k}' column" for k in rec.meta if k in taken]


def _extra_columns(rec: PreferenceRecord, native: set, sink: ImageSink, n: int) -> dict:
    extras = _extras(rec, native)
    if "corrupt_images" in extras:
        extras["corrupt_images"] = sink.refs(extras["corrupt_images"], f"{n:06d}-corrupt")
    return extras | rec.meta

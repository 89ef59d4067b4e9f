"""The formats: one plain dict from name to its reader, writer and detector, and the file-level operations on it.

``read(path) -> (records, problems)`` gives the records that could be built and every problem as
``FILE:LINE: field 'x': ...`` (a row that gives no record always has problems); ``write(records, path)`` raises one
``MMAlignError`` listing every record the format cannot hold; ``detect(row)`` says whether a file's first row
looks like the format. ``kind`` is ``"pairs"`` (``PreferenceRecord``) or ``"prompts"`` (``verl.PromptRecord``);
conversion keeps to one kind.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmalign.data.formats import (
    llamafactory,
    llava_rlhf,
    mmrlhf,
    own,
    povid,
    rlaif_v,
    rlhfv,
    swift,
    trl,
    verl,
    vlfeedback,
)
from mmalign.data.formats.rows import read_rows
from mmalign.data.records import raise_problems
from mmalign.errors import MMAlignError


@dataclass(frozen=True)
class Format:
    read: Callable[[Path], tuple[list, list[str]]]
    write: Callable[[list, Path], Path]
    detect: Callable[[dict], bool]
    kind: str = "pairs"


FORMATS = {
    "mmalign": Format(own.read, own.write, own.detect),
    "trl": Format(trl.read, trl.write, trl.detect),
    "llamafactory": Format(llamafactory.read, llamafactory.write, llamafactory.detect),
    "swift": Format(swift.read, swift.write, swift.detect),
    "verl": Format(verl.read, verl.write, verl.detect, kind="prompts"),
    "rlaif_v": Format(rlaif_v.read, rlaif_v.write, rlaif_v.detect),
    "vlfeedback": Format(vlfeedback.read, vlfeedback.write, vlfeedback.detect),
    "mmrlhf": Format(mmrlhf.read, mmrlhf.write, mmrlhf.detect),
    "llava_rlhf": Format(llava_rlhf.read, llava_rlhf.write, llava_rlhf.detect),
    "rlhfv": Format(rlhfv.read, rlhfv.write, rlhfv.detect),
    "povid": Format(povid.read, povid.write, povid.detect),
}


def detect_format(path: str | Path) -> str:
    """The one format whose detector accepts the file's first record."""
    rows, _ = read_rows(path)
    first = next((raw for _, _, raw in rows if isinstance(raw, dict)), None)
    if first is None:
        raise MMAlignError(f"{path}: no record to detect the format from; name it (one of {', '.join(FORMATS)})")
    matches = [name for name, fmt in FORMATS.items() if fmt.detect(first)]
    if len(matches) != 1:
        found = f"it looks like {' and '.join(matches)}" if matches else f"its columns are {', '.join(first)}"
        raise MMAlignError(f"{path}: cannot tell the format ({found}); name it (one of {', '.join(FORMATS)})")
    return matches[0]


def check_file(path: str | Path, fmt: str | None = None) -> tuple[str, list, list[str]]:
    """``(format, records, problems)`` of a file, the format detected when not given, the problems in the
    order of the file."""
    path = Path(path)
    fmt = fmt or detect_format(path)
    if fmt not in FORMATS:
        raise MMAlignError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    records, problems = FORMATS[fmt].read(path)
    return fmt, records, sorted(problems, key=lambda p: _place(p, str(path)))


def _place(problem: str, path: str) -> int:
    """The line, row or record number a problem starts with (after the file name)."""
    m = re.match(r"(?::| record )(\d+):", problem[len(path):])
    return int(m.group(1)) if m else 0


def read_records(path: str | Path, fmt: str | None = None) -> list:
    """The records of a file, raising one error that lists every problem."""
    _, records, problems = check_file(path, fmt)
    raise_problems(problems, records, path)
    return records


def write_records(records: list, path: str | Path, fmt: str) -> Path:
    if fmt not in FORMATS:
        raise MMAlignError(f"unknown format '{fmt}' (known: {', '.join(FORMATS)})")
    return FORMATS[fmt].write(records, Path(path))


def convert(src: str | Path, dst: str | Path, to: str, source_format: str | None = None) -> tuple[str, int]:
    """Read ``src`` (format detected when not given), write ``dst`` as ``to``; ``(source format, records)``."""
    source_format = source_format or detect_format(src)
    if to in FORMATS and source_format in FORMATS and FORMATS[to].kind != FORMATS[source_format].kind:
        raise MMAlignError(f"{source_format} holds {FORMATS[source_format].kind} and {to} holds {FORMATS[to].kind}; "
                           "they do not convert into each other")
    records = read_records(src, source_format)
    write_records(records, dst, to)
    return source_format, len(records)

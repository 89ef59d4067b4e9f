"""RLHF-V's correction data (``openbmb/RLHF-V-Dataset`` dataset card; RLHF-V ``convert_parquet_to_tsv_demo.py``).

Schema: ``image``, an HF image; ``text``, a JSON string ``{"question", "chosen", "rejected"}`` where ``chosen`` is
the human-corrected answer and ``rejected`` the model's original; metadata ``ds_name``, ``origin_dataset``,
``origin_split``, ``idx``, ``image_path`` (kept in ``meta``).

DDPO weights the tokens that differ between the two answers (ALGORITHMS.md 4.1). The release has no span column,
so the corrected spans are derived here: a word-level diff (``difflib``) of ``rejected`` against ``chosen`` gives
``chosen_spans`` (character ranges of the words the annotator wrote) and ``rejected_spans`` (those they replaced or
removed). ``chosen_spans``/``rejected_spans`` columns, when present, take precedence, and are written only when
they differ from the diff.

Not carried: the position of the image in a message prompt (RLHF-V puts it before the question).
"""
from __future__ import annotations

import difflib
import json
import re
from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import question
from mmalign.data.formats.pairs import read_pairs, split_extras, unfit, write_pairs
from mmalign.data.preference import PreferenceRecord

DOCUMENTED = {"image", "text"}
# record field -> the column a problem about it names
COLUMNS = {"prompt": "text", "chosen": "text", "rejected": "text", "images": "image"}


def correction_spans(chosen: str, rejected: str) -> tuple[list[list[int]], list[list[int]]]:
    """``(chosen_spans, rejected_spans)``: ``[start, end)`` character ranges of the words that differ."""
    words_c = [m.span() for m in re.finditer(r"\S+", chosen)]
    words_r = [m.span() for m in re.finditer(r"\S+", rejected)]
    matcher = difflib.SequenceMatcher(None, [rejected[a:b] for a, b in words_r], [chosen[a:b] for a, b in words_c],
                                      autojunk=False)
    spans_c, spans_r = [], []
    for tag, i1, i2, j1, j2 in matcher.get_opcodes():
        if tag != "equal" and j2 > j1:
            spans_c.append([words_c[j1][0], words_c[j2 - 1][1]])
        if tag != "equal" and i2 > i1:
            spans_r.append([words_r[i1][0], words_r[i2 - 1][1]])
    return spans_c, spans_r


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    problems = [] if raw.get("image") is not None else ["field 'image': missing"]
    try:
        text = json.loads(raw.get("text"))
        q, chosen, rejected = text["question"], text["chosen"], text["rejected"]
    except (TypeError, ValueError, KeyError):
        return [], problems + ["field 'text': expected a JSON string {\"question\", \"chosen\", \"rejected\"}"]
    if not all(isinstance(t, str) for t in (q, chosen, rejected)):
        problems.append("field 'text': question, chosen and rejected must be strings")
    if problems:
        return [], problems
    spans_c, spans_r = correction_spans(chosen, rejected)
    return [{"prompt": q, "images": [raw["image"]], "chosen": chosen, "rejected": rejected,
             "chosen_spans": spans_c, "rejected_spans": spans_r, **split_extras(raw, DOCUMENTED)}], []


def write(records: list, path: Path) -> Path:
    return write_pairs(records, path, _row, documented=DOCUMENTED, native={"chosen_spans", "rejected_spans"},
                       images={"image": False}, check=lambda rec: unfit(rec, "RLHF-V", "exactly one", one_question=True))


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    ref = sink.ref(rec.images[0], f"{n:06d}")
    row = {"image": ref if isinstance(ref, dict) else {"bytes": None, "path": ref},
           "text": json.dumps({"question": question(rec.prompt), "chosen": rec.chosen, "rejected": rec.rejected})}
    derived = correction_spans(rec.chosen, rec.rejected)
    for name, spans, same in zip(("chosen_spans", "rejected_spans"), (rec.chosen_spans, rec.rejected_spans), derived):
        if spans is not None and spans != same:
            row[name] = spans
    return row


def detect(row: dict) -> bool:
    return isinstance(row.get("text"), str) and "image" in row

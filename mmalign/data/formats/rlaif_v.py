"""RLAIF-V's flat preference rows (``openbmb/RLAIF-V-Dataset`` dataset card; read by RLAIF-V's
``muffin/data/datasets.py`` and align-anything's ``RLAIFV`` template).

Schema: ``image``, an HF image (``{"bytes", "path"}``); ``question``; ``chosen``; ``rejected``; metadata
``ds_name``, ``origin_dataset``, ``origin_split``, ``idx``, ``image_path`` (kept in ``meta``); after RLAIF-V's
reference pass, ``logps``, a JSON string of ``[win_logp, win_avg_logp, win_per_token_logp, rej_logp,
rej_avg_logp, rej_per_token_logp]`` (or ``{"logps": [...]}``), whose sums become ``ref_logps``. One image and one
question per row: other records are reported when writing.

Not carried: the averaged and per-token reference log-probs of ``logps`` (``ref_logps`` travels as an extra
column instead); the position of the image in a message prompt (RLAIF-V puts it before the question).
"""
from __future__ import annotations

import json
from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import question
from mmalign.data.formats.pairs import read_pairs, split_extras, unfit, write_pairs
from mmalign.data.preference import PreferenceRecord

DOCUMENTED = {"image", "question", "chosen", "rejected", "logps"}
# record field -> the column a problem about it names
COLUMNS = {"prompt": "question", "images": "image"}


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    f = {"prompt": raw.get("question"), "images": [raw["image"]] if raw.get("image") is not None else [],
         "chosen": raw.get("chosen"), "rejected": raw.get("rejected"), **split_extras(raw, DOCUMENTED)}
    problems = [] if f["images"] else ["field 'image': missing"]
    if raw.get("logps") is not None:
        f["ref_logps"], found = _ref_logps(raw["logps"])
        problems += found
    return ([f], []) if not problems else ([], problems)


def _ref_logps(logps) -> tuple[dict | None, list[str]]:
    try:
        values = json.loads(logps) if isinstance(logps, str) else logps
        values = values["logps"] if isinstance(values, dict) else values
        return {"chosen": float(values[0]), "rejected": float(values[3])}, []
    except (ValueError, TypeError, KeyError, IndexError):
        return None, ["field 'logps': expected RLAIF-V's six reference log-prob values (a list or {\"logps\": [...]})"]


def write(records: list, path: Path) -> Path:
    return write_pairs(records, path, _row, documented=DOCUMENTED, images={"image": False},
                       check=lambda rec: unfit(rec, "RLAIF-V", "exactly one", one_question=True))


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    ref = sink.ref(rec.images[0], f"{n:06d}")
    return {"image": ref if isinstance(ref, dict) else {"bytes": None, "path": ref}, "question": question(rec.prompt),
            "chosen": rec.chosen, "rejected": rec.rejected}


def detect(row: dict) -> bool:
    return "question" in row and "chosen" in row

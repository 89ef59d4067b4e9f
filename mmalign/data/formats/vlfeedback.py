"""VLFeedback, the GPT-4V-rated preference data behind Silkie (``MMInstruction/VLFeedback``; pairs built as in
VLFeedback's ``run_dpo.py``, ``make_vlfeedback_paired_dataset``).

Schema: one row per instruction: ``id``, ``prompt``, ``models`` and ``completions``, each completion ``{"model",
"response", "annotations"}`` with ``annotations`` mapping an aspect ("Helpfulness", "Visual Faithfulness",
"Ethical Considerations") to ``{"Rating": "1".."5", "Rationale": ...}``; the image in ``image`` (an HF image) or
``img_path``. ``completions`` may be a list of objects or, as parquet stores it, an object of lists.

**Aspect aggregation (Silkie's).** A completion's score is the mean of its aspect ratings; every two completions
make a pair, the higher score chosen, ``reward_margin`` the difference of the means (``preference.ranked_to_pairs``);
equal means are skipped (counted in ``meta["ties_skipped"]``; a row whose completions all tie gives no pair), and
a completion with a rating that is not a finite number ("N/A") enters no pair, as Silkie skips it. A pair's id is
``ROW-W-L`` (W, L: completion positions); its ``meta`` keeps the row id (``source_id``), the positions, both models
and both annotations, from which the writer rebuilds the rows. Writing needs those, so only records read from
VLFeedback can be written.

Not carried: completions that enter no pair (unrated, or tied with every other), so a rewritten row may number
its completions differently; extra record fields (written rows hold only what VLFeedback defines).
"""
from __future__ import annotations

import math
from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import question
from mmalign.data.formats.pairs import read_pairs
from mmalign.data.formats.rows import write_rows
from mmalign.data.preference import PreferenceRecord, ranked_to_pairs
from mmalign.data.records import raise_problems

DOCUMENTED = {"id", "prompt", "models", "completions", "image", "img_path"}
PAIR_META = {"source_id", "winner", "loser", "ties_skipped", "models", "annotations"}
# record field -> the column a problem about it names
COLUMNS = {"chosen": "completions", "rejected": "completions"}


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _completions(raw) -> list:
    """List-of-objects completions; parquet's object of lists is turned around, and the null aspects parquet
    gives a completion rated on fewer aspects than another are dropped."""
    if isinstance(raw, dict) and all(isinstance(v, list) for v in raw.values()):
        n = len(next(iter(raw.values()), []))
        raw = [{k: v[i] for k, v in raw.items()} for i in range(n)]
    if not isinstance(raw, list):
        return raw
    return [{**c, "annotations": {k: v for k, v in c["annotations"].items() if v is not None}}
            if isinstance(c, dict) and isinstance(c.get("annotations"), dict) else c for c in raw]


def _rated(c) -> bool:
    """A completion with a response and at least one aspect with a rating (a number, or text such as "N/A")."""
    return isinstance(c, dict) and isinstance(c.get("response"), str) and isinstance(c.get("annotations"), dict) \
        and bool(c["annotations"]) and all(isinstance(a, dict) and isinstance(a.get("Rating"), (str, int, float))
                                           for a in c["annotations"].values())


def _score(annotations: dict) -> float | None:
    """The mean rating, or None when a rating is not a finite number ("N/A": Silkie leaves the completion out)."""
    try:
        ratings = [float(a["Rating"]) for a in annotations.values()]
    except ValueError:
        return None
    mean = sum(ratings) / len(ratings)
    return mean if math.isfinite(mean) else None


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    completions, problems = _completions(raw.get("completions")), []
    if not isinstance(completions, list) or len(completions) < 2:
        return [], ["field 'completions': missing or fewer than two completions"]
    problems += [f"field 'completions': completion {i}: expected {{\"response\": text, \"annotations\": "
                 "{aspect: {\"Rating\": ...}}, \"model\"}" for i, c in enumerate(completions) if not _rated(c)]
    if raw.get("id") is None:
        problems.append("field 'id': missing (pair ids are built from it)")
    image = raw.get("image") if raw.get("image") is not None else raw.get("img_path")
    if image is None:
        problems.append("field 'image': missing (neither 'image' nor 'img_path')")
    if problems:
        return [], problems
    row_id = str(raw.get("id"))
    rated = [i for i, c in enumerate(completions) if _score(c["annotations"]) is not None]
    pairs = ranked_to_pairs(raw.get("prompt"), [image], [completions[i]["response"] for i in rated],
                            [_score(completions[i]["annotations"]) for i in rated])
    extras = {k: v for k, v in raw.items() if k not in DOCUMENTED and v is not None}  # shared by the row's pairs
    out = []
    for p in pairs:
        w, lo = rated[p.meta["winner"]], rated[p.meta["loser"]]
        meta = {**extras, "source_id": row_id, "winner": w, "loser": lo, "ties_skipped": p.meta["ties_skipped"],
                "models": {"chosen": completions[w].get("model"), "rejected": completions[lo].get("model")},
                "annotations": {"chosen": completions[w]["annotations"], "rejected": completions[lo]["annotations"]}}
        out.append({"id": f"{row_id}-{w}-{lo}", "prompt": p.prompt, "images": p.images, "chosen": p.chosen,
                    "rejected": p.rejected, "reward_margin": p.reward_margin, "scores": p.scores, "meta": meta})
    return out, []


def write(records: list, path: Path) -> Path:
    """One row per source row, its completions rebuilt from the pairs' meta."""
    problems = [f"record '{rec.id}': {p}" for rec in records for p in _problems(rec)]
    rows: dict[str, tuple[dict, PreferenceRecord]] = {}
    for rec in records if not problems else []:
        m = rec.meta
        completions = rows.setdefault(m["source_id"], ({}, rec))[0]
        for side, index, text in (("chosen", m["winner"], rec.chosen), ("rejected", m["loser"], rec.rejected)):
            c = {"model": m["models"][side], "response": text, "annotations": m["annotations"][side]}
            if completions.setdefault(index, c) != c:
                problems.append(f"record '{rec.id}': completion {index} of row '{m['source_id']}' differs from "
                                "the one an earlier pair gives")
    raise_problems(problems, records, f"the records for {path}")
    sink, out = ImageSink(path), []
    for n, (source_id, (completions, rec)) in enumerate(rows.items()):
        ordered = [c for _, c in sorted(completions.items())]
        out.append({"id": source_id, "prompt": question(rec.prompt), "models": [c["model"] for c in ordered],
                    "completions": ordered, "image": sink.ref(rec.images[0], f"{n:06d}"),
                    **{k: v for k, v in rec.meta.items() if k not in PAIR_META}})
    return write_rows(out, path, {"image": False})


def _problems(rec: PreferenceRecord) -> list[str]:
    missing = sorted(PAIR_META - rec.meta.keys())
    problems = [(f"VLFeedback rows are rebuilt from a pair's meta, this record lacks {', '.join(missing)} "
                 "(only records read from VLFeedback can be written)")] if missing else []
    if len(rec.images) != 1:
        problems.append(f"VLFeedback rows hold exactly one image, this record has {len(rec.images)}")
    if question(rec.prompt) is None:
        problems.append("VLFeedback rows hold one prompt text, this record's prompt has several turns")
    return problems


def detect(row: dict) -> bool:
    return "completions" in row

"""Preference records ``D = (x, I, y_w, y_l)``, their files, and DDPO token weights.

Files are JSONL or parquet (read with ``datasets``), in one of two layouts, detected from the first record (TRL's
when its ``chosen`` is a message list):

* **mmalign's own**: one object per record with the fields of ``PreferenceRecord``. ``images`` and
  ``corrupt_images`` hold paths relative to the file's folder, absolute paths, or ``data:image/...;base64,``
  strings. Unknown fields are errors. ``write_preference_file`` writes this layout.
* **TRL's conversational vision format**: ``prompt`` a message list with ``{"type": "image"}`` blocks, ``chosen``
  and ``rejected`` assistant message lists (their text is kept), images in an ``images`` (or ``image``) column;
  columns named like record fields are kept as such, other columns go to ``meta``.

In both, ``chosen``/``rejected`` may be strings or assistant message lists, an image may also be bytes, a PIL
image or a ``{"bytes", "path"}`` dict, and a message-list prompt must have one image block per image. Every
problem is collected and reported at once as ``FILE:LINE: field 'x': what is wrong`` (parquet: the 1-based row
stands for the line); nothing is skipped. Loaded images are RGB.
"""
from __future__ import annotations

import base64
import io
import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import datasets
from PIL import Image

from mmalign.data.records import raise_problems
from mmalign.errors import MMAlignError


@dataclass
class PreferenceRecord:
    id: str
    prompt: str | list[dict]          # x: a string (images go first) or TRL-style messages with image blocks
    images: list                      # I: PIL images, zero or more (video = frames)
    chosen: str                       # y_w
    rejected: str                     # y_l
    corrupt_images: list | None = None        # I' (mDPO, POVID, Image-DPO), one per image
    chosen_spans: list | None = None          # DDPO: [[start, end], ...] character offsets of corrected text
    rejected_spans: list | None = None
    reward_margin: float | None = None        # MM-DPO: r(y_w) - r(y_l)
    scores: dict | None = None
    ref_logps: dict | None = None             # precomputed {"chosen": float, "rejected": float}
    task: str = ""
    meta: dict = field(default_factory=dict)


def spans_to_token_weights(offsets, spans: list | None, gamma: float) -> list[float]:
    """DDPO token weights (RLHF-V; ALGORITHMS.md §4.1): ``gamma`` for each token whose character range
    ``offsets[t] = (start, end)`` (a tokenizer's ``offset_mapping`` of the response alone) overlaps a corrected
    span ``[s, e)``, 1 otherwise. Zero-width tokens (specials) overlap nothing."""
    return [gamma if any(a < e and s < b for s, e in spans or ()) else 1.0 for a, b in offsets]


def ranked_to_pairs(prompt, images: list, responses: list[str], scores: list[float], *, mode: str = "all",
                    id: str = "ranked", task: str = "") -> list[PreferenceRecord]:
    """Pairs from one prompt's scored responses (ranked lists such as MM-RLHF's): every pair of responses
    (``all``) or the best against the worst (``best_worst``), higher score chosen, ``reward_margin = score_w -
    score_l``. Tied pairs are skipped and counted in each pair's ``meta["ties_skipped"]``."""
    if mode == "all":
        candidates = list(itertools.combinations(range(len(responses)), 2))
    elif mode == "best_worst":
        order = sorted(range(len(responses)), key=scores.__getitem__)
        candidates = [(order[-1], order[0])]
    else:
        raise ValueError(f"mode must be 'all' or 'best_worst', not {mode!r}")
    ties = sum(scores[i] == scores[j] for i, j in candidates)
    pairs = [(i, j) if scores[i] > scores[j] else (j, i) for i, j in candidates if scores[i] != scores[j]]
    return [PreferenceRecord(id=f"{id}-{w}-{l}", prompt=prompt, images=list(images), chosen=responses[w],
                             rejected=responses[l], reward_margin=float(scores[w] - scores[l]),
                             scores={"chosen": float(scores[w]), "rejected": float(scores[l])}, task=task,
                             meta={"winner": w, "loser": l, "ties_skipped": ties})
            for w, l in pairs]


# ---- reading ---------------------------------------------------------------------------------------------------

def read_preference_file(path: str | Path) -> list[PreferenceRecord]:
    """Every record of a JSONL or parquet file, validated, images loaded."""
    path = Path(path)
    if not path.exists():
        raise MMAlignError(f"data file not found: {path}")
    problems = []
    if path.suffix == ".parquet":
        rows = [(f"{path}:{n}", f"{path.stem}-{n}", row)
                for n, row in enumerate(datasets.Dataset.from_parquet(str(path)), start=1)]
    else:
        rows, problems = _jsonl_rows(path)
    return _parse_rows(rows, path.parent, str(path), problems)


def from_hf_dataset(ds: datasets.Dataset, root: str | Path = ".") -> list[PreferenceRecord]:
    """The records of an in-memory dataset (either layout); relative image paths resolve against ``root``."""
    rows = [(f"dataset row {i}", f"row-{i}", row) for i, row in enumerate(ds)]
    return _parse_rows(rows, Path(root), "the dataset", [])


def _jsonl_rows(path: Path) -> tuple[list, list[str]]:
    rows, problems = [], []
    for n, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append((f"{path}:{n}", f"{path.stem}-{n}", json.loads(line)))
        except json.JSONDecodeError as e:
            problems.append(f"{path}:{n}: invalid JSON ({e.msg})")
    return rows, problems


def _parse_rows(rows: list, root: Path, source: str, problems: list[str]) -> list[PreferenceRecord]:
    trl = next((isinstance(raw.get("chosen"), list) for _, _, raw in rows if isinstance(raw, dict)), False)
    records, first_seen = [], {}
    for where, default_id, raw in rows:
        rec, found = _parse(raw, root, default_id, trl)
        if rec is not None and rec.id in first_seen:
            found.append(f"field 'id': '{rec.id}' is already used at {first_seen[rec.id]}")
        elif rec is not None:
            first_seen[rec.id] = where
        problems += [f"{where}: {p}" for p in found]
        records.append(rec)
    raise_problems(problems, records, source)
    return records


def _parse(raw, root: Path, default_id: str, trl: bool) -> tuple[PreferenceRecord | None, list[str]]:
    if not isinstance(raw, dict):
        return None, [f"record is a {type(raw).__name__}, expected an object"]
    f = _from_trl(raw) if trl else {k: v for k, v in raw.items() if v is not None}
    problems = [f"field '{k}': unknown (known: {', '.join(FIELDS)})" for k in f if k not in FIELDS]
    problems += _type_problems(f)
    images = {}
    for k in ("images", "corrupt_images"):
        if isinstance(f.get(k), list):
            images[k], found = _load_images(f[k], root, k)
            problems += found
    if problems:
        return None, problems
    rec = PreferenceRecord(**{**f, "id": f.get("id", default_id), "images": images.get("images", []),
                              "corrupt_images": images.get("corrupt_images"),
                              "chosen": _text(f["chosen"]), "rejected": _text(f["rejected"])})
    return rec, _record_problems(rec)


def _from_trl(raw: dict) -> dict:
    """TRL columns as record fields: an ``image`` column is a one-image ``images``; unknown columns go to meta."""
    f = {k: v for k, v in raw.items() if k in FIELDS and v is not None}
    if "images" not in f and raw.get("image") is not None:
        f["images"] = [raw["image"]]
    extra = {k: v for k, v in raw.items() if k not in FIELDS and k != "image"}
    if extra:
        f["meta"] = {**f.get("meta", {}), **extra}
    return f


# ---- validation ---------------------------------------------------------------------------------------------

def _is_content(c) -> bool:
    return isinstance(c, str) or isinstance(c, list) and all(isinstance(b, dict) for b in c)


def _is_messages(v) -> bool:
    return isinstance(v, list) and all(isinstance(m, dict) and _is_content(m.get("content")) for m in v)


def _is_number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _is_spans(v) -> bool:
    return isinstance(v, list) and all(isinstance(s, (list, tuple)) and len(s) == 2 and all(isinstance(x, int) for x in s)
                                       for s in v)


_TEXT = (lambda v: isinstance(v, str) or _is_messages(v), "a string or a list of assistant messages")
_SPANS = (_is_spans, "a list of [start, end] character offsets")
CHECKS = {  # field -> (test, what it should be); None means required
    "id": (lambda v: isinstance(v, str), "a string"),
    "prompt": (lambda v: isinstance(v, str) or _is_messages(v), "a string or a list of {role, content} messages"),
    "images": (lambda v: isinstance(v, list), "a list of images"),
    "chosen": _TEXT,
    "rejected": _TEXT,
    "corrupt_images": (lambda v: isinstance(v, list), "a list of images"),
    "chosen_spans": _SPANS,
    "rejected_spans": _SPANS,
    "reward_margin": (_is_number, "a number"),
    "scores": (lambda v: isinstance(v, dict), "an object"),
    "ref_logps": (lambda v: isinstance(v, dict) and {"chosen", "rejected"} <= v.keys() and all(map(_is_number, v.values())),
                  'an object {"chosen": number, "rejected": number}'),
    "task": (lambda v: isinstance(v, str), "a string"),
    "meta": (lambda v: isinstance(v, dict), "an object"),
}
FIELDS = tuple(CHECKS)
REQUIRED = ("prompt", "chosen", "rejected")


def _type_problems(f: dict) -> list[str]:
    out = [f"field '{k}': missing" for k in REQUIRED if k not in f]
    for k, v in f.items():
        if k in CHECKS and not CHECKS[k][0](v):
            out.append(f"field '{k}': a {type(v).__name__}, expected {CHECKS[k][1]}")
    return out


def _record_problems(rec: PreferenceRecord) -> list[str]:
    out = []
    for name, text in (("chosen_spans", rec.chosen), ("rejected_spans", rec.rejected)):
        out += [f"field '{name}': span [{s}, {e}] out of range for a text of {len(text)} characters"
                for s, e in getattr(rec, name) or [] if not 0 <= s < e <= len(text)]
    if rec.corrupt_images is not None and len(rec.corrupt_images) != len(rec.images):
        out.append(f"field 'corrupt_images': {len(rec.corrupt_images)} image(s) for {len(rec.images)} in 'images'")
    if not isinstance(rec.prompt, str) and (n := _image_blocks(rec.prompt)) != len(rec.images):
        out.append(f"field 'prompt': {n} image block(s) for {len(rec.images)} image(s) in 'images'")
    if rec.chosen == rec.rejected:
        out.append("field 'rejected': identical to 'chosen'")
    return out


def _image_blocks(messages: list[dict]) -> int:
    return sum(b.get("type") == "image" for m in messages if isinstance(m["content"], list) for b in m["content"])


def _text(v: str | list[dict]) -> str:
    """A string, or the text blocks of assistant messages joined."""
    if isinstance(v, str):
        return v
    return "".join(m["content"] if isinstance(m["content"], str) else
                   "".join(b.get("text", "") for b in m["content"] if b.get("type") == "text") for m in v)


# ---- images -------------------------------------------------------------------------------------------------

def _load_images(refs: list, root: Path, name: str) -> tuple[list, list[str]]:
    images, problems = [], []
    for k, ref in enumerate(refs):
        try:
            images.append(_open_image(ref, root))
        except FileNotFoundError as e:
            problems.append(f"field '{name}': image {k}: file not found: {e.args[0]}")
        except (OSError, ValueError) as e:
            problems.append(f"field '{name}': image {k}: not a decodable image ({e})")
        except TypeError:
            problems.append(f"field '{name}': image {k}: a {type(ref).__name__}, "
                            "expected a path, a data: URI, bytes or a PIL image")
    return images, problems


def _open_image(ref, root: Path) -> Image.Image:
    if isinstance(ref, dict):  # datasets' undecoded Image feature
        ref = ref.get("bytes") or ref.get("path")
    if isinstance(ref, Image.Image):
        return ref.convert("RGB")
    if isinstance(ref, str) and ref.startswith("data:"):
        ref = base64.b64decode(ref.partition(",")[2], validate=True)
    if isinstance(ref, bytes):
        return Image.open(io.BytesIO(ref)).convert("RGB")
    if not isinstance(ref, str):
        raise TypeError(ref)
    path = root / ref
    if not path.is_file():
        raise FileNotFoundError(str(path))
    with Image.open(path) as im:
        return im.convert("RGB")


# ---- writing ------------------------------------------------------------------------------------------------

def write_preference_file(records: list[PreferenceRecord], path: str | Path) -> Path:
    """JSONL in mmalign's layout, images as PNG files in ``images/`` beside it (named after the file and the
    record's position, so several files can share the folder). Reading it back gives equal records."""
    path = Path(path)
    (path.parent / "images").mkdir(parents=True, exist_ok=True)
    with path.open("w") as out:
        for n, rec in enumerate(records):
            row = {f.name: getattr(rec, f.name) for f in fields(rec) if getattr(rec, f.name) is not None}
            stem = f"images/{path.stem}-{n:06d}"
            row["images"] = _save_images(rec.images, path.parent, stem)
            if rec.corrupt_images is not None:
                row["corrupt_images"] = _save_images(rec.corrupt_images, path.parent, stem + "-corrupt")
            out.write(json.dumps(row) + "\n")
    return path


def _save_images(images: list, folder: Path, stem: str) -> list[str]:
    names = [f"{stem}-{k}.png" for k in range(len(images))]
    for img, name in zip(images, names):
        img.save(folder / name)
    return names

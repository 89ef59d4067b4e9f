"""Preference records ``D = (x, I, y_w, y_l)``, their files, and DDPO token weights.

Files are JSONL, a JSON array or parquet (``formats/rows.py``), in one of two layouts, detected from the first record (TRL's
when its ``chosen`` is a message list):

* **mmalign's own**: one object per record with the fields of ``PreferenceRecord``. ``images`` and
  ``corrupt_images`` hold paths relative to the file's folder, absolute paths, or ``data:image/...;base64,``
  strings; ``audios`` and ``corrupt_audios`` hold WAV files referenced the same way (``formats/audio.py``), their
  ``sampling_rate`` read from the files. Unknown fields are errors. ``write_preference_file`` writes this layout.
* **TRL's conversational vision format**: ``prompt`` a message list with ``{"type": "image"}`` blocks, ``chosen``
  and ``rejected`` assistant message lists (their text is kept), images in an ``images`` (or ``image``) column;
  columns named like record fields are kept as such, other columns go to ``meta``.

In both, ``chosen``/``rejected`` may be strings or assistant message lists, an image may be any reference
``formats/images.py`` reads (a path, URL, data URI, base64, bytes, a PIL image or a ``{"bytes", "path"}`` dict),
and a message-list prompt must have one image block per image. Every problem is collected and reported at once
as ``FILE:LINE: field 'x': what is wrong`` (parquet: the 1-based row stands for the line); nothing is skipped.
Loaded images are RGB; ``read_preference_file`` and ``from_hf_dataset`` fetch URLs as they read, while the
readers of ``mmalign.data.formats`` leave them to be fetched when opened. The readers of public formats build
their records with ``records_from_fields``.
"""
from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field, fields
from pathlib import Path

import datasets

from mmalign.data.formats.audio import AudioSink, clip_problems, load_audios
from mmalign.data.formats.images import ImageSink, load_images, open_image
from mmalign.data.formats.messages import prompt_texts, text_problems
from mmalign.data.formats.rows import read_rows
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
    audios: list = field(default_factory=list)   # A: mono float32 clips, zero or more (audio-language models)
    corrupt_audios: list | None = None           # A': silence or a wrong clip, one per clip (audio contrast)
    sampling_rate: int | None = None             # of every clip in audios and corrupt_audios


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
    """Every record of a JSONL, JSON-array or parquet file, validated, images loaded (URLs fetched)."""
    path = Path(path)
    rows, problems = read_rows(path)
    records, found = parse_rows(rows, path.parent)
    return _opened(records, problems + found, str(path))


def from_hf_dataset(ds: datasets.Dataset, root: str | Path = ".") -> list[PreferenceRecord]:
    """The records of an in-memory dataset (either layout); relative image paths resolve against ``root``."""
    rows = [(f"dataset row {i}", f"row-{i}", row) for i, row in enumerate(ds)]
    records, problems = parse_rows(rows, Path(root))
    return _opened(records, problems, "the dataset")


def parse_rows(rows: list, root: Path, trl: bool | None = None) -> tuple[list[PreferenceRecord], list[str]]:
    """The records of ``(where, default id, row)`` rows in mmalign's layout or TRL's (``trl=None``: TRL's when
    the first record's ``chosen`` is a message list), and every problem found; URLs are left unfetched."""
    if trl is None:
        trl = next((isinstance(raw.get("chosen"), list) for _, _, raw in rows if isinstance(raw, dict)), False)
    items, problems = [], []
    for where, default_id, raw in rows:
        if not isinstance(raw, dict):
            problems.append(f"{where}: record is a {type(raw).__name__}, expected an object")
            continue
        items.append((where, default_id, _from_trl(raw) if trl else {k: v for k, v in raw.items() if v is not None}))
    records, found = records_from_fields(items, root)
    return records, problems + found


def records_from_fields(items: list[tuple[str, str, dict]], root: Path) -> tuple[list[PreferenceRecord], list[str]]:
    """Records from ``(where, default id, fields)``, the fields in mmalign's layout; every problem as
    ``WHERE: field 'x': ...``; ids must be unique."""
    return unique_records([(where, *_parse(f, root, default_id, where)) for where, default_id, f in items])


def unique_records(built: list[tuple[str, object, list[str]]]) -> tuple[list, list[str]]:
    """The records (anything with an ``id``) of ``(where, record or None, problems)``, each id kept once (a repeat
    is a problem of its row), and every problem as ``WHERE: ...``."""
    records, problems, first_seen = [], [], {}
    for where, rec, found in built:
        if rec is not None and rec.id in first_seen:
            found = found + [f"field 'id': '{rec.id}' is already used at {first_seen[rec.id]}"]
        elif rec is not None:
            first_seen[rec.id] = where
            records.append(rec)
        problems += [f"{where}: {p}" for p in found]
    return records, problems


def _opened(records: list[PreferenceRecord], problems: list[str], source: str) -> list[PreferenceRecord]:
    """The records with every URL fetched, raising every problem met on the way."""
    for rec in records:
        for name in ("images", "corrupt_images"):
            images = getattr(rec, name) or []
            for k, image in enumerate(images):
                try:
                    images[k] = open_image(image)
                except MMAlignError as e:
                    problems.append(str(e))
    raise_problems(problems, records, source)
    return records


def _parse(f: dict, root: Path, default_id: str, where: str) -> tuple[PreferenceRecord | None, list[str]]:
    f = {k: v for k, v in f.items() if v is not None}
    problems = [f"field '{k}': unknown (known: {', '.join(FIELDS)})" for k in f if k not in FIELDS]
    problems += _type_problems(f)
    images = {}
    for k in ("images", "corrupt_images"):
        if isinstance(f.get(k), list):
            images[k], found = load_images(f[k], root, k, where)
            problems += found
    audio, rate, found = _audios(f, root, where)
    problems += found
    if problems:
        return None, problems
    rec = PreferenceRecord(**{**f, "id": f.get("id", default_id), "images": images.get("images", []),
                              "corrupt_images": images.get("corrupt_images"), **audio, "sampling_rate": rate,
                              "chosen": _text(f["chosen"]), "rejected": _text(f["rejected"])})
    return rec, _record_problems(rec)


def _audios(f: dict, root: Path, where: str) -> tuple[dict, int | None, list[str]]:
    """The record's clips (WAV files read) and its sampling rate: the files' own, which must agree with each other
    and with a ``sampling_rate`` given in the row."""
    clips, rates, problems = {}, [], []
    for k in ("audios", "corrupt_audios"):
        if isinstance(f.get(k), list):
            clips[k], found_rates, found = load_audios(f[k], root, k, where)
            rates += found_rates
            problems += found
    given = f.get("sampling_rate")
    if len(set(rates) | ({given} if given is not None else set())) > 1:
        problems.append(f"field 'sampling_rate': the clips' rates disagree ({sorted(set(rates))}"
                        + (f", given {given})" if given is not None else ")"))
    return clips, given if given is not None else (rates[0] if rates else None), problems


def _from_trl(raw: dict) -> dict:
    """TRL columns as record fields: an ``image`` column is a one-image ``images``; other columns go to meta
    (a null column counts as absent)."""
    f = {k: v for k, v in raw.items() if k in FIELDS and v is not None}
    if "images" not in f and raw.get("image") is not None:
        f["images"] = [raw["image"]]
    extra = {k: v for k, v in raw.items() if k not in FIELDS and k != "image" and v is not None}
    if extra and isinstance(f.get("meta", {}), dict):  # a meta of another type is reported as such
        f["meta"] = {**f.get("meta", {}), **extra}
    return f


# ---- validation ---------------------------------------------------------------------------------------------

def _is_content(c) -> bool:
    return isinstance(c, str) or isinstance(c, list) and all(
        isinstance(b, dict) and isinstance(b.get("text") or "", str) for b in c)   # parquet gives null texts


def _is_messages(v) -> bool:
    return isinstance(v, list) and all(isinstance(m, dict) and isinstance(m.get("role"), str)
                                       and _is_content(m.get("content")) for m in v)


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
    "audios": (lambda v: isinstance(v, list), "a list of audio clips"),
    "corrupt_audios": (lambda v: isinstance(v, list), "a list of audio clips"),
    "sampling_rate": (lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "a positive integer (Hz)"),
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
    if rec.prompt == []:
        out.append("field 'prompt': an empty list of messages")
    if not isinstance(rec.prompt, str) and (n := _blocks(rec.prompt, "image")) != len(rec.images):
        out.append(f"field 'prompt': {n} image block(s) for {len(rec.images)} image(s) in 'images'")
    out += _audio_problems(rec)
    if rec.chosen == rec.rejected:
        out.append("field 'rejected': identical to 'chosen'")
    for name in ("chosen", "rejected"):
        if not getattr(rec, name).strip():
            out.append(f"field '{name}': empty")
        out += text_problems(name, getattr(rec, name))
    return out + [p for text in prompt_texts(rec.prompt) for p in text_problems("prompt", text)]


def _audio_problems(rec: PreferenceRecord) -> list[str]:
    out = clip_problems("audios", rec.audios) + clip_problems("corrupt_audios", rec.corrupt_audios or [])
    if (rec.audios or rec.corrupt_audios) and rec.sampling_rate is None:
        out.append("field 'sampling_rate': missing (the record has audio clips)")
    if rec.corrupt_audios is not None and len(rec.corrupt_audios) != len(rec.audios):
        out.append(f"field 'corrupt_audios': {len(rec.corrupt_audios)} clip(s) for {len(rec.audios)} in 'audios'")
    if not isinstance(rec.prompt, str) and (n := _blocks(rec.prompt, "audio")) != len(rec.audios):
        out.append(f"field 'prompt': {n} audio block(s) for {len(rec.audios)} clip(s) in 'audios'")
    return out


def _blocks(messages: list[dict], kind: str) -> int:
    return sum(b.get("type") == kind for m in messages if isinstance(m["content"], list) for b in m["content"])


def _text(v: str | list[dict]) -> str:
    """A string, or the text blocks of assistant messages joined."""
    if isinstance(v, str):
        return v
    return "".join(m["content"] if isinstance(m["content"], str) else
                   "".join(b.get("text") or "" for b in m["content"] if b.get("type") == "text") for m in v)


# ---- writing ------------------------------------------------------------------------------------------------

def write_preference_file(records: list[PreferenceRecord], path: str | Path) -> Path:
    """JSONL in mmalign's layout, images as PNG files in ``images/`` beside it (named after the file and the
    record's position, so several files can share the folder; a URL stays a URL), clips as float WAV files in
    ``audio/``. Reading it back gives equal
    records."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    sink, sounds = ImageSink(path), AudioSink(path)
    with path.open("w") as out:
        for n, rec in enumerate(records):
            row = {f.name: getattr(rec, f.name) for f in fields(rec) if getattr(rec, f.name) is not None}
            row["images"] = sink.refs(rec.images, f"{n:06d}")
            if rec.corrupt_images is not None:
                row["corrupt_images"] = sink.refs(rec.corrupt_images, f"{n:06d}-corrupt")
            for name, tag in (("audios", f"{n:06d}"), ("corrupt_audios", f"{n:06d}-corrupt")):
                if getattr(rec, name):
                    row[name] = sounds.refs(getattr(rec, name), rec.sampling_rate, tag)
                else:
                    row.pop(name, None)    # no clips: the row stays as it was before audio
            out.write(json.dumps(row) + "\n")
    return path

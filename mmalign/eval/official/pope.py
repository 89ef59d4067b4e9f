"""POPE (Li et al., 2023): yes/no object probing on COCO, settings random / popular / adversarial.

Files: one JSON Lines label file per setting, ``<source>_pope_<setting>.json`` (e.g. ``coco_pope_random.json``),
each line ``{"question_id", "image", "text", "label": "yes" | "no"}``. ``load`` takes one such file or a folder
of them; the setting is read from the file name.

Official scoring (POPE repo / LLaVA ``llava/eval/eval_pope.py``), positive class "yes":
    pred = "no" if the response, cut at its first "." with "," deleted and split on " ", has a token
           "No", "no" or "not"; else "yes"            (case-sensitive: "NO" and "No\\nthere" are "yes")
    accuracy = (TP + TN) / N,  precision = TP / (TP + FP),  recall = TP / (TP + FN),  F1 = 2PR / (P + R),
    yes_ratio = #(pred yes) / N, per setting; the average row is the arithmetic mean over the settings.
Named variants change only the parser: ``pope_lmms_eval`` (exact "yes"/"no" after lower/strip, anything else
unparsed) and ``pope_vlmevalkit`` (VLMEvalKit's ``YOrN_Extraction``).

Deviations: a ratio whose denominator is 0 is 0 (the official script divides by zero). An unparsed
prediction (lmms-eval / VLMEvalKit parsers only) is wrong in accuracy, counts in N and in yes_ratio's
denominator, and is left out of TP/FP/FN, as lmms-eval does. lmms-eval's own ``pope_yes_ratio`` counts the
ground-truth labels (always about 0.5); we count predictions, as the POPE paper does.
"""
from __future__ import annotations

import re
from pathlib import Path

from mmalign.errors import MMAlignError
from mmalign.eval.official.files import read_records
from mmalign.eval.official.images import file_field

VERSION = "1"
images = file_field("image")         # COCO file name under the image folder
YES_NO_PARSERS = ("pope", "lmms_eval", "vlmevalkit")
SETTINGS = ("random", "popular", "adversarial")
SUFFIX = "\nAnswer the question using a single word or phrase."   # LLaVA-1.5's POPE prompt
FIELDS = {"question_id": (int, str), "image": str, "text": str, "label": {"yes", "no"}}

# VLMEvalKit process_punctuation: these characters are deleted when any of them touches a space (or a
# digit,digit comma exists), else replaced by a space; then periods not next to a digit are deleted.
_VLMEVAL_PUNCT = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`",
                  ",", "?", "!")
_DIGIT_COMMA = re.compile(r"(\d)(,)(\d)")
_LONE_PERIOD = re.compile(r"(?<!\d)\.(?!\d)")


def _vlmevalkit_words(text: str) -> list[str]:
    out = text
    for p in _VLMEVAL_PUNCT:
        touches = p + " " in text or " " + p in text or _DIGIT_COMMA.search(text) is not None
        out = out.replace(p, "" if touches else " ")
    # VLMEvalKit passes re.UNICODE (= 32) as sub's positional count: at most 32 periods go
    return _LONE_PERIOD.sub("", out, count=32).split()


def parse_yes_no(text: str, parser: str = "pope") -> str | None:
    """Read a yes/no answer: "yes", "no", or None when the parser cannot tell.

    pope (official): keep the text before the first ".", delete ",", split on " "; "no" if a token is exactly
      "No", "no" or "not", else "yes" -- never None.
    lmms_eval: lower/strip, then exactly "yes" or "no", else None ("Yes." is None).
    vlmevalkit: lower-cased words after VLMEvalKit's punctuation rule; "yes" without "no" -> yes, "no" without
      "yes" -> no, else None (VLMEvalKit's "Unknown").
    """
    if parser == "pope":
        tokens = text.split(".")[0].replace(",", "").split(" ")
        return "no" if any(t in ("No", "no", "not") for t in tokens) else "yes"
    if parser == "lmms_eval":
        t = text.lower().strip()
        return t if t in ("yes", "no") else None
    if parser == "vlmevalkit":
        words = set(_vlmevalkit_words(text.lower()))
        if ("yes" in words) != ("no" in words):
            return "yes" if "yes" in words else "no"
        return None
    raise ValueError(f"unknown yes/no parser '{parser}' (known: {', '.join(YES_NO_PARSERS)})")


def binary_metrics(preds: list[str | None], labels: list[str]) -> dict:
    """accuracy, precision, recall, f1, yes_ratio, n_unparsed, n with "yes" as the positive class (see module)."""
    pairs = list(zip(preds, labels, strict=True))
    tp = sum(p == "yes" and y == "yes" for p, y in pairs)
    fp = sum(p == "yes" and y != "yes" for p, y in pairs)
    fn = sum(p == "no" and y == "yes" for p, y in pairs)
    n = len(pairs)
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    return {
        "accuracy": sum(p == y for p, y in pairs) / n if n else 0.0,
        "precision": precision,
        "recall": recall,
        "f1": 2 * precision * recall / (precision + recall) if precision + recall else 0.0,
        "yes_ratio": sum(p == "yes" for p in preds) / n if n else 0.0,
        "n_unparsed": sum(p is None for p in preds),
        "n": n,
    }


def load(path: str | Path) -> list[dict]:
    """Items of one label file or of every ``*_pope_*.json`` file in a folder, with ``category`` = setting."""
    path = Path(path)
    files = sorted(path.glob("*_pope_*.json")) if path.is_dir() else [path]
    if not files:
        raise MMAlignError(f"no POPE label files (*_pope_<setting>.json) in {path}")
    items = []
    for f in files:
        setting = f.stem.rsplit("_pope_", 1)[-1]
        items += [rec | {"id": f"{setting}/{rec['question_id']}", "category": setting}
                  for rec in read_records(f, FIELDS)]
    return items


def prompt(item: dict) -> str:
    return item["text"] + SUFFIX


def score(item: dict, response: str, parser: str = "pope") -> dict:
    pred = parse_yes_no(response, parser)
    return {"id": item["id"], "category": item["category"], "label": item["label"], "pred": pred,
            "correct": pred == item["label"]}


def aggregate(rows: list[dict]) -> dict:
    """``binary_metrics`` per setting (in file order) and their mean over settings."""
    out = {}
    for setting in dict.fromkeys(r["category"] for r in rows):
        part = [r for r in rows if r["category"] == setting]
        out[setting] = binary_metrics([r["pred"] for r in part], [r["label"] for r in part])
    keys = ("accuracy", "precision", "recall", "f1", "yes_ratio")
    out["average"] = {k: sum(m[k] for m in out.values()) / len(out) for k in keys} if out else {}
    return out

"""CHAIR (Rohrbach et al., 2018): object hallucination in COCO image descriptions.

Items are the images of the COCO 2014 annotation files in a folder (``coco.annotation_files``); each carries its
ground-truth objects (``coco.ground_truth``). A response is a caption; its COCO mentions come from
``coco.caption_to_words`` with pattern's ``singularize`` and the original ``synonyms.txt`` (LisaAnne/Hallucination
``utils/chair.py``). Over a caption set (micro-averaged):

    CHAIR_i = Σ hallucinated mentions / Σ COCO mentions     (mentions not deduplicated)
    CHAIR_s = #captions with ≥ 1 hallucinated mention / #captions
    recall  = Σ |distinct correctly mentioned classes| / Σ |ground-truth classes|   (Maxlinn / lmms-eval add-on)

A mention is hallucinated when its node word is not among the image's ground-truth objects.
Caption files (``read_captions``): LisaAnne's COCO-eval JSON ``{"imgToEval": {id: {"image_id", "caption"}}}``,
or a JSON list / JSON Lines of ``{"image_id", "caption"}`` (Maxlinn's CHAIR-metric-standalone, lmms-eval).

Deviations: the tokenizer and singulariser are the offline ones of ``text`` and ``singular`` (no NLTK);
a zero denominator gives 0 (the official script divides by zero); the prompt is the common MLLM-era one
("Please describe this image in detail."), since the original CHAIR scored captioning models.
"""
from __future__ import annotations

import json
from pathlib import Path

from mmalign.data.records import raise_problems
from mmalign.eval.official.coco import caption_to_words, chair_vocab, ground_truth
from mmalign.eval.official.files import field_problems, need_file, read_records
from mmalign.eval.official.images import file_field
from mmalign.eval.official.singular import singularize

VERSION = "1"
images = file_field("image")         # COCO file name under the image folder
PROMPT = "Please describe this image in detail."
VOCAB = chair_vocab()


def load(path: str | Path, image_ids: set[int] | None = None) -> list[dict]:
    """One item per image of the COCO annotation files in the folder ``path`` (or per one of ``image_ids``)."""
    gt = ground_truth(path, VOCAB, singularize, image_ids)
    return [{"id": image_id, "image_id": image_id, "image": g["image"], "gt_objects": sorted(g["objects"])}
            for image_id, g in sorted(gt.items())]


def prompt(item: dict) -> str:
    return PROMPT


def score(item: dict, response: str) -> dict:
    mentions = caption_to_words(response, VOCAB, singularize)
    gt = set(item["gt_objects"])
    return {"id": item["id"], "mentioned": [n for _, n in mentions],
            "hallucinated": [(w, n) for w, n in mentions if n not in gt],
            "recalled": sorted({n for _, n in mentions if n in gt}), "n_gt": len(gt)}


def aggregate(rows: list[dict]) -> dict:
    n = len(rows)
    mentions = sum(len(r["mentioned"]) for r in rows)
    n_gt = sum(r["n_gt"] for r in rows)
    return {
        "chair_s": sum(bool(r["hallucinated"]) for r in rows) / n if n else 0.0,
        "chair_i": sum(len(r["hallucinated"]) for r in rows) / mentions if mentions else 0.0,
        "recall": sum(len(r["recalled"]) for r in rows) / n_gt if n_gt else 0.0,
        "n_mentions": mentions,
        "n": n,
    }


def read_captions(path: str | Path) -> dict[int, str]:
    """``{image_id: caption}`` from a caption file in either official layout (see the module docstring)."""
    path = need_file(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError:
        data = None                     # JSON Lines, read below
    if isinstance(data, dict) and "imgToEval" in data:
        evals = data["imgToEval"]
        rows = list(evals.values()) if isinstance(evals, dict) else []
        problems = [] if isinstance(evals, dict) else [f"{path}: 'imgToEval' is not an object"]
        problems += [f"{path}: imgToEval[{i}]: {p}" for i, r in enumerate(rows)
                     for p in field_problems(r, {"image_id": int, "caption": str})]
        raise_problems(problems, rows, path)
    else:
        rows = read_records(path, {"image_id": int, "caption": str})
    return {r["image_id"]: r["caption"] for r in rows}


def evaluate_caption_file(coco_dir: str | Path, caption_file: str | Path) -> dict:
    """CHAIR of a caption file against the COCO annotations in ``coco_dir``, as the official script runs it."""
    captions = read_captions(caption_file)
    items = {item["image_id"]: item for item in load(coco_dir, set(captions))}
    missing = [i for i in captions if i not in items]
    raise_problems([f"{caption_file}: image_id {i} is not in the COCO annotations of {coco_dir}"
                    for i in missing], list(captions), caption_file)
    return aggregate([score(items[i], c) for i, c in captions.items()])

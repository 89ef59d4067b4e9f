"""MME (Fu et al., 2023): 14 yes/no subtasks, two questions per image (the official ``eval_tool/calculation.py``).

Files: a folder of ``<subtask>.txt`` in the eval tool's layout, one question per line,
``image_name \\t question \\t gt_answer [\\t prediction]`` (the ``Your_Results`` templates have three columns; a
fourth is ignored here). The two questions of an image are grouped by image name.

Official parsing: lower-case; "yes"/"no" as a whole string; else "yes" within the first 4 characters → yes;
else "no" within them → no; else "other" (always wrong). So "Not sure", "None", "Note: ..." and "Snow" read as
"no". The ``mme_lmms_eval`` variant first strips spaces and periods and reads a lone "y"/"n".
Per subtask:
    acc = right questions / questions,  acc+ = images with both questions right / images,
    score = 100·acc + 100·acc+   (max 200)
    perception = Σ score over its 10 subtasks (max 2000), cognition = Σ over its 4 (max 800).
Totals are over the subtasks present in the folder (``subtasks`` lists them).
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.records import raise_problems
from mmalign.errors import MMAlignError
from mmalign.eval.official.files import need_file
from mmalign.eval.official.images import subtask_file

VERSION = "1"
images = subtask_file  # <subtask>/[images/]<name> under the release folder
PERCEPTION = ("existence", "count", "position", "color", "posters", "celebrity", "scene", "landmark", "artwork",
              "OCR")
COGNITION = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
PARSERS = ("official", "lmms_eval")


def _read_subtask(path: Path, subtask: str) -> tuple[list[dict], list[str]]:
    items, problems, per_image = [], [], {}
    for n, line in enumerate(need_file(path).read_text(encoding="utf-8").splitlines(), start=1):
        cols = line.split("\t")
        if len(cols) < 3:
            problems.append(f"{path}:{n}: expected image, question and answer separated by tabs")
            continue
        answer = cols[2].strip().lower()
        if answer not in ("yes", "no"):
            problems.append(f"{path}:{n}: field 'gt_answer': {cols[2]!r} is not yes or no")
        per_image[cols[0]] = per_image.get(cols[0], 0) + 1
        items.append({"id": f"{subtask}/{n}", "subtask": subtask, "image": cols[0], "question": cols[1],
                      "answer": answer, "category": "perception" if subtask in PERCEPTION else "cognition"})
    problems += [f"{path}: image {im}: {k} question(s), MME has exactly 2 per image"
                 for im, k in per_image.items() if k != 2]
    return items, problems


def load(path: str | Path) -> list[dict]:
    path = Path(path)
    present = [s for s in PERCEPTION + COGNITION if (path / f"{s}.txt").is_file()]
    if not present:
        raise MMAlignError(f"no MME subtask files (<subtask>.txt, e.g. existence.txt) in {path}")
    items, problems = [], []
    for subtask in present:
        found, bad = _read_subtask(path / f"{subtask}.txt", subtask)
        items += found
        problems += bad
    raise_problems(problems, items, path)
    return items


def prompt(item: dict) -> str:
    return item["question"]


def parse_yes_no(text: str, parser: str = "official") -> str:
    """"yes", "no" or "other" (see the module docstring)."""
    text = text.lower()
    if parser == "lmms_eval":
        text = text.strip().replace(".", "")
        if len(text) == 1:
            return {"y": "yes", "n": "no"}.get(text, "other")
    elif parser != "official":
        raise ValueError(f"unknown MME parser '{parser}' (known: {', '.join(PARSERS)})")
    if text in ("yes", "no"):
        return text
    return "yes" if "yes" in text[:4] else "no" if "no" in text[:4] else "other"


def score(item: dict, response: str, parser: str = "official") -> dict:
    pred = parse_yes_no(response, parser)
    return {"id": item["id"], "subtask": item["subtask"], "image": item["image"], "pred": pred,
            "correct": pred == item["answer"]}


def subtask_metrics(rows: list[dict]) -> dict:
    images: dict[str, bool] = {}
    for r in rows:
        images[r["image"]] = images.get(r["image"], True) and r["correct"]
    acc = sum(r["correct"] for r in rows) / len(rows)
    acc_plus = sum(images.values()) / len(images)
    return {"acc": acc, "acc_plus": acc_plus, "score": 100 * acc + 100 * acc_plus, "n": len(rows)}


def aggregate(rows: list[dict]) -> dict:
    subtasks = [s for s in PERCEPTION + COGNITION if any(r["subtask"] == s for r in rows)]
    per = {s: subtask_metrics([r for r in rows if r["subtask"] == s]) for s in subtasks}
    return {"perception": sum(per[s]["score"] for s in subtasks if s in PERCEPTION),
            "cognition": sum(per[s]["score"] for s in subtasks if s in COGNITION),
            "subtasks": per}

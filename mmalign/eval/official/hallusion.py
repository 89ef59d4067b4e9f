"""HallusionBench (Guan et al., 2024): yes/no questions on original, edited and absent figures, graded by a
text-only judge (tianyi-lab/HallusionBench ``utils.py``; lmms-eval ``hallusion_bench`` carries the same prompt).

File: ``HallusionBench.json``, a list of ``{category: "VD" | "VS", subcategory, visual_input, set_id,
figure_id, question_id, question, gt_answer, gt_answer_details, filename}``.

The judge compares the response with ``gt_answer_details`` (``GRADE_PROMPT``; GPT-4, max 16 tokens in the
script) and its output reads: "incorrect" anywhere (lower-cased) → 0, else "correct" → 1, else 2 (unclear).
A VS question without a figure (figure_id 0) counts as right when graded 1 or 2; every other question only
when graded 1. With keys joined by "_":
    aAcc = right questions / questions
    fAcc = figures (category_subcategory_set_figure; VS figure 0 left out) whose questions are all right / figures
    qAcc = questions (category_subcategory_set_question, across the figure variants) all right / questions
all ×100. An output containing none of "incorrect", "correct", "unclear" is graded 2, as the script does, and
counted as a parse failure. VLMEvalKit's judge-free Yes/No approximation is not implemented.
"""
from __future__ import annotations

from pathlib import Path

from mmalign.eval.official.files import read_records
from mmalign.eval.official.images import figure_file
from mmalign.eval.official.judge import Judge, ask, judge_summary

VERSION = "1"
images = figure_file  # filename under the image folder; none without a figure
FIELDS = {"category": {"VD", "VS"}, "subcategory": str, "set_id": (int, str), "figure_id": (int, str),
          "question_id": (int, str), "question": str, "gt_answer_details": str}
GRADE_PROMPT = (
    "Imagine you are an intelligent teacher. Thoroughly read the question, reference answer and the prediction "
    "answer to ensure a clear understanding of the information provided. Assess the correctness of the "
    "predictions. If the prediction answer does not conflict with the reference answer, please generate "
    "\u201ccorrect\u201d. If the prediction answer conflict with the reference answer, please generate "
    "\u201cincorrect\u201d. If the prediction answer is unclear about the answer, please generate \"unclear\". "
    "\n\n Question:{question}\nReference answer: {reference}\nPrediction answer:{prediction}\nOutput:")


def load(path: str | Path) -> list[dict]:
    return [rec | {"id": key(rec, "figure_id", "question_id")} for rec in read_records(path, FIELDS)]


def key(item: dict, *fields: str) -> str:
    return "_".join(str(item[f]) for f in ("category", "subcategory", "set_id", *fields))


def prompt(item: dict) -> str:
    return item["question"]


def parse_grade(output: str) -> int | None:
    """0 incorrect, 1 correct, 2 unclear; None when the output names none of them (graded 2 then)."""
    text = output.lower()
    if "incorrect" in text:
        return 0
    if "correct" in text:
        return 1
    return 2 if "unclear" in text else None


def score(item: dict, response: str, judge: Judge) -> dict:
    text = GRADE_PROMPT.format(question=item["question"], reference=item["gt_answer_details"], prediction=response)
    asked = ask(judge, [{"role": "user", "content": text}], parse_grade)
    grade = 2 if asked["parsed"] is None else asked["parsed"]
    no_figure = item["category"] == "VS" and str(item["figure_id"]) == "0"
    return {"id": item["id"], "figure": None if no_figure else key(item, "figure_id"),
            "question": key(item, "question_id"), "grade": grade,
            "correct": grade in (1, 2) if no_figure else grade == 1,
            **{k: v for k, v in asked.items() if k != "parsed"}}


def _all_right(rows: list[dict], group: str) -> float:
    groups: dict[str, bool] = {}
    for r in rows:
        if r[group] is not None:
            groups[r[group]] = groups.get(r[group], True) and r["correct"]
    return 100 * sum(groups.values()) / len(groups) if groups else 0.0


def aggregate(rows: list[dict]) -> dict:
    return {"aAcc": 100 * sum(r["correct"] for r in rows) / len(rows) if rows else 0.0,
            "fAcc": _all_right(rows, "figure"), "qAcc": _all_right(rows, "question"),
            "n": len(rows)} | judge_summary(rows)

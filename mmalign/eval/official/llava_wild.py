"""LLaVA-Bench-in-the-Wild (Liu et al., 2023): 60 open questions, judged against GPT-4 reference answers
(haotian-liu/LLaVA ``eval_gpt_review_bench.py``, ``summarize_gpt_review.py``, rules ``llava_bench_*`` of
``table/rule.json``).

File: the lmms-eval / HF layout, JSON or JSON Lines of ``{question_id, question, caption, gpt_answer,
category: conv | detail | complex}``.

The text-only judge gets ``SYSTEM`` and the context (caption), question, Assistant 1 = the GPT-4 reference,
Assistant 2 = the response, and the category rule (``RULE``, the same text for the three categories); original
judge gpt-4-0314 at temperature 0.2, 1024 tokens.
Parsing: the first line of the output, commas turned into spaces, split on " "; exactly two numbers give
(reference score, model score), anything else (-1, -1), which stays in the means as in the original scorer and
is counted as a parse failure.
    relative score = round(round(mean model, 3) / round(mean reference, 3) × 100, 1)   per category and "all".
"""
from __future__ import annotations

from pathlib import Path

from mmalign.eval.official.files import read_records
from mmalign.eval.official.images import inline_field
from mmalign.eval.official.judge import Judge, ask, judge_summary

VERSION = "1"
images = inline_field("image")       # a path under the image folder or an inline image
FIELDS = {"question_id": (int, str), "question": str, "caption": str, "gpt_answer": str,
          "category": {"conv", "detail", "complex"}}
SYSTEM = "You are a helpful and precise assistant for checking the quality of the answer."
RULE = ("We would like to request your feedback on the performance of two AI assistants in response to the user "
        "question displayed above. The user asks the question on observing an image. For your reference, the "
        "visual content in the image is represented with a few sentences describing the image. \nPlease rate the "
        "helpfulness, relevance, accuracy, level of details of their responses. Each assistant receives an "
        "overall score on a scale of 1 to 10, where a higher score indicates better overall performance.\nPlease "
        "first output a single line containing only two values indicating the scores for Assistant 1 and 2, "
        "respectively. The two scores are separated by a space.\nIn the subsequent line, please provide a "
        "comprehensive explanation of your evaluation, avoiding any potential bias and ensuring that the order in "
        "which the responses were presented does not affect your judgment.")


def load(path: str | Path) -> list[dict]:
    return [rec | {"id": rec["question_id"]} for rec in read_records(path, FIELDS)]


def prompt(item: dict) -> str:
    return item["question"]


def review_content(item: dict, response: str) -> str:
    return (f"[Context]\n{item['caption']}\n\n[Question]\n{item['question']}\n\n"
            f"[Assistant 1]\n{item['gpt_answer']}\n\n[End of Assistant 1]\n\n"
            f"[Assistant 2]\n{response}\n\n[End of Assistant 2]\n\n[System]\n{RULE}\n\n")


def parse_scores(output: str) -> tuple[float, float] | None:
    parts = output.split("\n")[0].replace(",", " ").split(" ")
    try:
        return (float(parts[0]), float(parts[1])) if len(parts) == 2 else None
    except ValueError:
        return None


def score(item: dict, response: str, judge: Judge) -> dict:
    messages = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": review_content(item, response)}]
    asked = ask(judge, messages, parse_scores)
    reference, model = asked["parsed"] or (-1.0, -1.0)
    return {"id": item["id"], "category": item["category"], "reference_score": reference, "model_score": model,
            **{k: v for k, v in asked.items() if k != "parsed"}}


def relative_score(rows: list[dict]) -> dict:
    reference = round(sum(r["reference_score"] for r in rows) / len(rows), 3)
    model = round(sum(r["model_score"] for r in rows) / len(rows), 3)
    return {"relative": round(model / reference * 100, 1) if reference else 0.0, "model": model,
            "reference": reference, "n": len(rows)}


def aggregate(rows: list[dict]) -> dict:
    groups = {c: [r for r in rows if r["category"] == c] for c in ("conv", "detail", "complex")}
    out = {c: relative_score(g) for c, g in groups.items() if g}
    return out | {"all": relative_score(rows) if rows else {}} | judge_summary(rows)

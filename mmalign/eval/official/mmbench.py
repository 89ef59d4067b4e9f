"""MMBench CircularEval in VLMEvalKit's ``exact_matching`` mode (no LLM answer extraction).

File: a VLMEvalKit TSV, columns ``index, question, hint, A, B, C, D[, E...], answer, category, l2-category``
(``image`` is base64 and stays untouched). Circular copies are extra rows with ``index = base + k·1e6`` and the
options rotated; a question is the group of rows with the same ``index mod 1e6``.

Prompt (VLMEvalKit ``ImageMCQDataset.build_prompt``): "Hint: {hint}\\n" when there is a hint, "Question:
{question}\\n", "Options:\\n" + "X. {option}\\n" per option, then "Please select the correct answer from the
options above. \\n".
Answer extraction (``can_infer``): in the response with ``.()[],:;!*#{}`` turned into spaces, if exactly one
option letter is a whole token and it is among the last 5 tokens, that letter; a response naming none of them
but containing a token "Z" is "Z" (refusal); a response with one of VLMEvalKit's four API-refusal phrases is "Z".
Else, unless the response is more than twice as long as all options together, the one option whose text
(lower-cased) occurs in the response. Anything else fails to extract, which ``exact_matching`` scores wrong.
    accuracy = questions whose every rotation is answered right / questions,  also per category and
    l2-category.
Note: VLMEvalKit's ``can_infer_option`` changed over time (an older version takes the letter at any position and
has no length guard on the text match); this follows the version with both. EVALUATION.md's "answer is X"
regex was not found in the copies read and is not applied.
"""
from __future__ import annotations

import string
from pathlib import Path

from mmalign.data.records import raise_problems
from mmalign.eval.official.files import read_tsv
from mmalign.eval.official.images import inline_field, resolve_tsv_refs

VERSION = "1"
images = inline_field("image")       # base64 in the TSV
FIELDS = {"index": str, "question": str, "answer": str}
_REFUSALS = ("Sorry, I can't help with images of people yet.", "I can't process this file.",
             "I'm sorry, but without the image provided", "Cannot determine the answer")
_SEPARATORS = str.maketrans({c: " " for c in ".()[],:;!*#{}"})


def load(path: str | Path) -> list[dict]:
    rows = resolve_tsv_refs(read_tsv(path, FIELDS))
    raise_problems([f"{path}: row {i}: field 'index': {r['index']!r} is not an integer"
                    for i, r in enumerate(rows) if not r["index"].isdigit()], rows, path)
    return [row | {"id": row["index"], "group": int(row["index"]) % 1_000_000, "options": options(row)}
            for row in rows]


def options(row: dict) -> dict[str, str]:
    """Option letter -> text for every non-empty option column (pandas reads an empty cell as NaN)."""
    return {c: row[c] for c in string.ascii_uppercase if row.get(c) not in (None, "", "nan")}


def prompt(item: dict) -> str:
    hint = item.get("hint")
    text = f"Hint: {hint}\n" if hint not in (None, "", "nan") else ""
    text += f"Question: {item['question']}\n"
    if item["options"]:
        text += "Options:\n" + "".join(f"{k}. {v}\n" for k, v in item["options"].items())
        text += "Please select the correct answer from the options above. \n"
    return text


def _infer_option(answer: str, choices: dict[str, str]) -> str | None:
    if any(r in answer for r in _REFUSALS):
        return "Z"
    tokens = answer.translate(_SEPARATORS).split()
    named = [c for c in choices if c in tokens]
    if len(named) == 1:
        return named[0] if tokens.index(named[0]) > len(tokens) - 5 else None
    return "Z" if not named and "Z" in tokens else None


def _infer_text(answer: str, choices: dict[str, str]) -> str | None:
    answer = answer.lower()
    if len(answer) > 2 * sum(len(v) for v in choices.values()):
        return None
    found = [k for k, v in choices.items() if v.lower() in answer]
    return found[0] if len(found) == 1 else None


def extract_choice(answer: str, choices: dict[str, str]) -> str | None:
    """The option letter (or "Z") ``can_infer`` reads from ``answer``; None when it cannot tell."""
    return _infer_option(answer, choices) or _infer_text(answer, choices)


def score(item: dict, response: str) -> dict:
    choice = extract_choice(response, item["options"])
    return {"id": item["id"], "group": item["group"], "category": item.get("category"),
            "l2_category": item.get("l2-category"), "choice": choice, "correct": choice == item["answer"]}


def _circular(rows: list[dict]) -> float:
    groups: dict[int, bool] = {}
    for r in rows:
        groups[r["group"]] = groups.get(r["group"], True) and r["correct"]
    return sum(groups.values()) / len(groups) if groups else 0.0


def aggregate(rows: list[dict]) -> dict:
    out = {"accuracy": _circular(rows), "n_questions": len({r["group"] for r in rows}), "n_rows": len(rows)}
    for field in ("category", "l2_category"):
        values = dict.fromkeys(r[field] for r in rows if r[field] is not None)
        out[field] = {v: _circular([r for r in rows if r[field] == v]) for v in values}
    return out

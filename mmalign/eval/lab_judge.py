"""The lab judge: rates a response from 1 to 10 against the scene's exact ground truth.

It stands in for the GPT-4 judges of the judged dimensions, so the lab covers them without a network: the
conversation dimension is LLaVA-Bench-in-the-Wild's relative score (model rating over reference-answer rating,
``official.llava_wild.relative_score``) and the human-preference dimension is MM-AlignBench's win rate against a
fixed opponent (``official.alignbench.verdict_metrics``), both computed from these ratings.

Ratings:
- caption: ``1 + 9 * F1`` between the (colour, category) mentions of the response and the objects of the scene,
  as multisets (a wrong colour is both a miss and a false mention; a category written without a colour matches
  nothing). The clean caption rates 10.
- grounding: ``1 + 9 * IoU``.
- every other task: 10 if ``score_example`` marks it correct, else 1.
"""
from __future__ import annotations

from collections import Counter

from mmalign.world import language as L
from mmalign.world.scoring import WORD_TO_CATEGORY, score_example

MIN, MAX = 1.0, 10.0
MUCH = 3.0          # a rating difference of at least this is "much better" (MM-AlignBench's +-2)


def caption_mentions(text: str) -> Counter:
    """(colour or None, category) for each category mention, the colour being the word just before it."""
    words = [w.strip(".,;:!?") for w in text.lower().split()]
    out: Counter = Counter()
    for i, w in enumerate(words):
        if w in WORD_TO_CATEGORY:
            colour = words[i - 1] if i and words[i - 1] in L.ALL_COLOURS else None
            out[(colour, WORD_TO_CATEGORY[w])] += 1
    return out


def caption_f1(example: dict, response: str) -> float:
    truth = Counter((o["colour"], o["category"]) for o in example["scenes"][0]["objects"])
    said = caption_mentions(response)
    hit = sum((truth & said).values())
    if not hit:
        return 0.0
    precision, recall = hit / sum(said.values()), hit / sum(truth.values())
    return 2 * precision * recall / (precision + recall)


def rate(example: dict, response: str) -> float:
    """The judge's 1-10 rating of one response (see the module docstring)."""
    if example["task"] == "caption":
        return MIN + (MAX - MIN) * caption_f1(example, response)
    s = score_example(example, response)
    if example["task"] == "ground":
        return MIN + (MAX - MIN) * s["iou"]
    return MAX if s["correct"] else MIN


def verdict(example: dict, response: str, opponent: str) -> int:
    """MM-AlignBench's scale from the response's side: +2 much better, +1 better, 0 tie, -1, -2."""
    d = rate(example, response) - rate(example, opponent)
    if abs(d) < 1e-9:
        return 0
    return (2 if abs(d) >= MUCH else 1) * (1 if d > 0 else -1)

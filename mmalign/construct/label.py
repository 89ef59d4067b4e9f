"""Self-annotated preference pairs: a scorer's scores over each prompt's sampled responses become records.

The sampled responses of a prompt are de-duplicated (a text is scored once and can never face itself), scored
(``mmalign.construct.scorers``), responses the scorer could not score (NaN) are left out, and
``ranked_to_pairs`` pairs the rest: the best against the worst (``best_worst``, CLIP-DPO's and SIMA's choice)
or every pair (``all``, RLAIF-V's), the higher score chosen, ``reward_margin = score_w - score_l``; pairs whose
margin is below ``min_margin`` are dropped (RLAIF-V: 1). A prompt that gives no pair is counted under its
reason, never dropped silently.
"""
from __future__ import annotations

import math
from typing import Literal

from tqdm.auto import tqdm

from mmalign.construct.scorers import Scorer, Scores
from mmalign.data.preference import PreferenceRecord, ranked_to_pairs

NO_PAIR_REASONS = ("identical_samples", "too_few_scored", "all_tied", "below_margin")


def label_pairs(examples: list[dict], samples: list[list[str]], scorer: Scorer, *, min_margin: float,
                mode: Literal["best_worst", "all"] = "best_worst",
                desc: str | None = "label") -> tuple[list[PreferenceRecord], dict]:
    """Preference records from ``samples[i]``, the responses sampled for ``examples[i]`` (prompt, images, and
    optionally ``id`` and ``task``, which the records keep). Each record carries ``scores`` and
    ``reward_margin``, and in ``meta`` the scorer's details of both sides.

    The report counts ``prompts``, ``pairs``, ``prompts_with_pairs``, the prompts with no pair by reason
    (``identical_samples``: every sample the same text; ``too_few_scored``: fewer than two distinct responses
    given or scored; ``all_tied``; ``below_margin``: scores differ, by less than ``min_margin``), and the
    ``duplicate_samples`` and ``unscored_samples`` left out.
    """
    records: list[PreferenceRecord] = []
    report = dict.fromkeys(("prompts", "pairs", "prompts_with_pairs", *NO_PAIR_REASONS, "duplicate_samples",
                            "unscored_samples"), 0)
    for i, (example, responses) in enumerate(tqdm(list(zip(examples, samples, strict=True)), desc=desc,
                                                  unit="prompt", disable=desc is None)):
        unique = list(dict.fromkeys(responses))
        texts, values, details = _scored(scorer, example, unique)
        pairs = _pairs(example, example.get("id", f"prompt-{i}"), texts, values, details, min_margin, mode)
        records += pairs
        report["prompts"] += 1
        report["pairs"] += len(pairs)
        report["duplicate_samples"] += len(responses) - len(unique)
        report["unscored_samples"] += len(unique) - len(texts)
        report[_no_pair_reason(responses, unique, values) if not pairs else "prompts_with_pairs"] += 1
    return records, report


def _scored(scorer: Scorer, example: dict, responses: list[str]) -> tuple[list[str], list[float], list[dict]]:
    """The responses the scorer scored (not NaN), their scores and their details."""
    scored = Scores.of(scorer(example, responses))
    details = scored.details or [{} for _ in responses]
    keep = [k for k, v in enumerate(scored.values) if not math.isnan(v)]
    return [responses[k] for k in keep], [scored.values[k] for k in keep], [details[k] for k in keep]


def _pairs(example: dict, id: str, texts: list[str], values: list[float], details: list[dict], min_margin: float,
           mode: str) -> list[PreferenceRecord]:
    if len(texts) < 2:
        return []
    ranked = ranked_to_pairs(example["prompt"], example["images"], texts, values, mode=mode, id=id,
                             task=example.get("task", ""))
    pairs = [p for p in ranked if p.reward_margin >= min_margin]
    for p in pairs:
        p.meta |= {"chosen_details": details[p.meta["winner"]], "rejected_details": details[p.meta["loser"]],
                   "candidates": len(texts)}
    return pairs


def _no_pair_reason(responses: list[str], unique: list[str], values: list[float]) -> str:
    if len(unique) == 1 < len(responses):
        return "identical_samples"
    if len(values) < 2:
        return "too_few_scored"
    return "all_tied" if len(set(values)) == 1 else "below_margin"

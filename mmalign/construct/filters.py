"""Filters over preference pairs: pure functions ``records -> (kept, report)``, where ``report`` counts the kept
records and every reason a record was dropped (each reason listed, zero or not). Kept records keep their order.

They are the post-selection steps of the data recipes: CLIP-DPO's absolute score and score-gap rules (§5.2),
RLAIF-V's length limits and MIA-DPO's length-ratio cleaning (§5.4-5.5), MM-RLHF-style margin thresholds, and
de-duplication.
"""
from __future__ import annotations

import json
import re
from collections import defaultdict

import numpy as np

from mmalign.construct.corrupt import image_hash
from mmalign.data.preference import PreferenceRecord

_PUNCT = re.compile(r"[^\w\s]")


def score_threshold(records: list[PreferenceRecord], *, min_chosen: float | None = None,
                    max_rejected: float | None = None) -> tuple[list[PreferenceRecord], dict]:
    """Keep pairs whose scorer gave ``scores["chosen"] >= min_chosen`` and ``scores["rejected"] <=
    max_rejected`` (a bound that is None is not checked). Reasons: ``no_scores``, ``chosen_below``,
    ``rejected_above`` (the first that applies)."""
    def reason(r: PreferenceRecord) -> str | None:
        if r.scores is None or not {"chosen", "rejected"} <= r.scores.keys():
            return "no_scores"
        if min_chosen is not None and r.scores["chosen"] < min_chosen:
            return "chosen_below"
        if max_rejected is not None and r.scores["rejected"] > max_rejected:
            return "rejected_above"
        return None
    return _split(records, [reason(r) for r in records], ("no_scores", "chosen_below", "rejected_above"))


def margin_threshold(records: list[PreferenceRecord], *, min_margin: float) -> tuple[list[PreferenceRecord], dict]:
    """Keep pairs whose margin ``r(y_w) - r(y_l)`` is at least ``min_margin``: ``reward_margin`` where set,
    else ``scores["chosen"] - scores["rejected"]``. Reasons: ``no_margin``, ``below_margin``."""
    def reason(r: PreferenceRecord) -> str | None:
        m = margin(r)
        return "no_margin" if m is None else "below_margin" if m < min_margin else None
    return _split(records, [reason(r) for r in records], ("no_margin", "below_margin"))


def margin(r: PreferenceRecord) -> float | None:
    if r.reward_margin is not None:
        return r.reward_margin
    if r.scores is not None and {"chosen", "rejected"} <= r.scores.keys():
        return r.scores["chosen"] - r.scores["rejected"]
    return None


def length_balance(records: list[PreferenceRecord], *, max_diff: int | None = None, bin_width: int = 1,
                   seed: int = 0) -> tuple[list[PreferenceRecord], dict]:
    """Make length carry no preference signal. With ``d = words(chosen) - words(rejected)``: drop pairs with
    ``|d| > max_diff`` (``length_mismatch``; None keeps all), then, for each magnitude bin
    ``ceil(|d| / bin_width) > 0``, drop pairs at random (``seed``) from the larger of the d > 0 and d < 0
    sides until both sides hold as many (``length_surplus``). Afterwards the distribution of d is symmetric
    (per bin), so neither "longer" nor "shorter" separates chosen from rejected: a policy trained on
    injected-only lab pairs learned to say less (LAB.md)."""
    d = [len(r.chosen.split()) - len(r.rejected.split()) for r in records]
    why = ["length_mismatch" if max_diff is not None and abs(x) > max_diff else None for x in d]
    sides = defaultdict(lambda: ([], []))
    for i, x in enumerate(d):
        if why[i] is None and x != 0:
            sides[-(-abs(x) // bin_width)][x < 0].append(i)
    rng = np.random.default_rng(seed)
    for b in sorted(sides):
        chosen_longer, rejected_longer = sides[b]
        big, small = sorted((chosen_longer, rejected_longer), key=len, reverse=True)
        for i in rng.choice(big, size=len(big) - len(small), replace=False):
            why[i] = "length_surplus"
    return _split(records, why, ("length_mismatch", "length_surplus"))


def dedupe(records: list[PreferenceRecord]) -> tuple[list[PreferenceRecord], dict]:
    """Keep the first of each group of pairs with the same images (pixel hash) and the same prompt, chosen and
    rejected: ``exact_duplicate`` if the texts are equal as they are, ``near_duplicate`` if equal once
    lower-cased with punctuation removed and whitespace collapsed."""
    exact, near = set(), set()

    def reason(r: PreferenceRecord) -> str | None:
        images = tuple(image_hash(im) for im in r.images)
        texts = (json.dumps(r.prompt, sort_keys=True), r.chosen, r.rejected)
        key, loose = (images, texts), (images, tuple(normalise(t) for t in texts))
        found = "exact_duplicate" if key in exact else "near_duplicate" if loose in near else None
        exact.add(key)
        near.add(loose)
        return found
    return _split(records, [reason(r) for r in records], ("exact_duplicate", "near_duplicate"))


def drop_coverage_only(records: list[PreferenceRecord]) -> tuple[list[PreferenceRecord], dict]:
    """Drop (``coverage_only``) the caption pairs whose two answers name equally many absent objects, so that they
    differ only in how many real objects they cover; read from the lab oracle's details (``meta``), records without
    them kept. Such pairs teach "say more": in iterative rounds they raised CHAIR-i (docs/iterative.md)."""
    def reason(r: PreferenceRecord) -> str | None:
        details = [r.meta.get(f"{side}_details") or {} for side in ("chosen", "rejected")]
        counts = [d.get("n_hallucinated_mentions") for d in details]
        return "coverage_only" if None not in counts and counts[0] == counts[1] else None
    return _split(records, [reason(r) for r in records], ("coverage_only",))


def normalise(text: str) -> str:
    """Lower case, punctuation removed, whitespace collapsed."""
    return " ".join(_PUNCT.sub(" ", text.lower()).split())


def _split(records: list[PreferenceRecord], why: list[str | None],
           reasons: tuple[str, ...]) -> tuple[list[PreferenceRecord], dict]:
    """The records whose reason is None, and the counts of kept records and of each reason."""
    report = {"kept": why.count(None), **{k: why.count(k) for k in reasons}}
    return [r for r, w in zip(records, why) if w is None], report

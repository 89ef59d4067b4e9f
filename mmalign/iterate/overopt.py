"""Over-optimisation across rounds: the proxy reward (the scorer that labels the pairs) against ground-truth quality
(the lab oracle), both measured on the same held-out greedy answers after every round.

While the policy gets better, both rise. Reward hacking shows as the curves parting: the proxy still rises while
the truth falls (Gao et al. 2023, "Scaling laws for reward model overoptimization": gold reward peaks and then
declines as the proxy keeps climbing). Round ``k`` *parts* when

    proxy_k > proxy_{k-1}   and   gold_k < gold_b - (tolerance + z * SE_k)

where ``b < k`` is the best round so far by the oracle (its peak), and the rounds stop after ``patience`` parting
rounds in a row. Against the peak rather than the round before, because the truth often falls slowly: on the lab, a
reward-model-labelled run's oracle went 1.356 -> 1.313 -> 1.290 -> 1.270 while the proxy rose every round, and no
single step fell by two standard errors. ``SE_k`` is the standard error of the mean of the paired per-prompt
differences ``g_k,i - g_b,i`` (the same held-out prompts every round), where both rounds carry their per-prompt
oracle scores (``gold_values``); else 0. Without it a few hundred prompts stop the rounds on noise: a round's
oracle "fell" 0.26 on 110 held-out captions, 0.08 on 500, and rose 0.08 on 300 captions each of the test and
train splits. Only the signs of the proxy's steps are read, so the proxy may be on any scale (a reward model's
logits, a judge's 1-10); ``tolerance`` is in the oracle's units (mean covered - hallucinated objects for captions,
accuracy for questions). With the oracle as the scorer the two curves are one, and nothing parts.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass


@dataclass
class OverOptConfig:
    stop: bool = True              # stop the rounds when the curves part (else only report it)
    patience: int = 1              # parting rounds in a row that stop the run
    tolerance: float = 0.0         # how far gold must fall, in the oracle's units
    z: float = 2.0                 # ... beyond z standard errors of the paired per-prompt differences (0: any fall)


def paired_se(before: list[float], after: list[float]) -> float:
    """The standard error of the mean of ``after[i] - before[i]`` (sample standard deviation / sqrt(n)); 0 for
    fewer than two pairs."""
    if len(before) != len(after):
        raise ValueError(f"paired_se: {len(before)} and {len(after)} per-prompt scores")
    d = [a - b for a, b in zip(after, before) if not (math.isnan(a) or math.isnan(b))]
    if len(d) < 2:
        return 0.0
    return statistics.stdev(d) / math.sqrt(len(d))


def parted(history: list[dict], cfg: OverOptConfig) -> list[int]:
    """The rounds ``k >= 1`` that part; ``history[k] = {"proxy", "gold"}`` and optionally ``"gold_values"`` (the
    per-prompt oracle scores behind ``gold``), round 0 the starting model."""
    def falls(k: int) -> bool:
        peak = best_round(history[:k])
        before, after = history[peak].get("gold_values"), history[k].get("gold_values")
        margin = cfg.tolerance + (cfg.z * paired_se(before, after) if before and after else 0.0)
        return history[k]["gold"] < history[peak]["gold"] - margin
    return [k for k in range(1, len(history)) if history[k]["proxy"] > history[k - 1]["proxy"] and falls(k)]


def overoptimised(history: list[dict], cfg: OverOptConfig) -> str | None:
    """Why the rounds should stop after the last one of ``history``, or None."""
    parts = set(parted(history, cfg))
    last = len(history) - 1
    if last < cfg.patience or not all(k in parts for k in range(last - cfg.patience + 1, last + 1)):
        return None
    return (f"over-optimisation: the proxy reward rose while the oracle's score fell in round"
            f"{'s' if cfg.patience > 1 else ''} {', '.join(str(k) for k in range(last - cfg.patience + 1, last + 1))} "
            f"(proxy {history[last - 1]['proxy']:.3f} -> {history[last]['proxy']:.3f}, "
            f"gold {history[last - 1]['gold']:.3f} -> {history[last]['gold']:.3f})")


def best_round(history: list[dict]) -> int:
    """The round with the highest ground-truth score (the earliest of ties)."""
    return max(range(len(history)), key=lambda k: (history[k]["gold"], -k))

"""Over-optimisation across rounds: the proxy reward (the scorer that labels the pairs) against ground-truth quality
(the lab oracle), both measured on the same held-out greedy answers after every round.

While the policy gets better, both rise. Reward hacking shows as the curves parting: the proxy still rises while
the truth falls (Gao et al. 2023, "Scaling laws for reward model overoptimization": gold reward peaks and then
declines as the proxy keeps climbing). Round ``k`` *parts* when

    proxy_k > proxy_{k-1}   and   gold_k < gold_{k-1} - tolerance

and the rounds stop after ``patience`` parting rounds in a row. Only the signs of the proxy's steps are read, so
the proxy may be on any scale (a reward model's logits, a judge's 1-10); ``tolerance`` is in the oracle's units
(mean covered - hallucinated objects for captions, accuracy for questions). With the oracle as the scorer the two
curves are one, and nothing parts.
"""
from __future__ import annotations

from dataclasses import dataclass


@dataclass
class OverOptConfig:
    stop: bool = True              # stop the rounds when the curves part (else only report it)
    patience: int = 1              # parting rounds in a row that stop the run
    tolerance: float = 0.0         # how far gold must fall, in the oracle's units


def parted(history: list[dict], cfg: OverOptConfig) -> list[int]:
    """The rounds ``k >= 1`` that part; ``history[k] = {"proxy", "gold"}``, round 0 the starting model."""
    return [k for k in range(1, len(history))
            if history[k]["proxy"] > history[k - 1]["proxy"]
            and history[k]["gold"] < history[k - 1]["gold"] - cfg.tolerance]


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

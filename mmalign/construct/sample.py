"""Self-annotation: sample ``n`` responses per prompt from a model, then label pairs with a scorer — the data
step of CLIP-DPO, SIMA and RLAIF-V (ALGORITHMS.md §5.2-5.4).

A prompt's candidates come from one decoding setup with a seed per candidate (RLAIF-V's "deconfounded"
generation: a pair should differ in trustworthiness, not in style). Completions that ran into
``max_new_tokens`` are left out before labelling and counted: as a chosen answer an unfinished one would teach
the policy to stop mid-sentence, since training appends the end-of-turn token.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Literal

from mmalign.construct.label import label_pairs
from mmalign.construct.scorers import Scorer
from mmalign.data.preference import PreferenceRecord
from mmalign.models.generate import sample_responses


@dataclass
class SamplingConfig:
    n: int = 4                   # candidates per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 40     # a lab caption is at most ~20 tokens
    seed: int = 0
    batch_size: int = 64         # rows (prompt x candidate) per generate call


def self_annotate(model, processor, examples: list[dict], scorer: Scorer, *, sampling: SamplingConfig,
                  min_margin: float, mode: Literal["best_worst", "all"] = "best_worst",
                  ) -> tuple[list[PreferenceRecord], dict]:
    """Sample (``sample_finished``), label (``label_pairs``). Each record's ``meta["sampling"]`` holds the
    settings; the report is ``label_pairs``'s plus ``samples`` and ``truncated_samples``."""
    finished, counts = sample_finished(model, processor, examples, sampling)
    records, report = label_pairs(examples, finished, scorer, min_margin=min_margin, mode=mode)
    for r in records:
        r.meta["sampling"] = asdict(sampling)
    return records, {**report, **counts}


def sample_finished(model, processor, examples: list[dict], sampling: SamplingConfig,
                    desc: str | None = "sample") -> tuple[list[list[str]], dict]:
    """``sampling.n`` completions per example with the unfinished ones left out, and the counts ``samples`` and
    ``truncated_samples``."""
    samples = sample_responses(model, processor, examples, **asdict(sampling), desc=desc)
    finished = [[t for t, ok in zip(texts, stopped) if ok] for texts, stopped in zip(samples.texts, samples.stopped)]
    n_samples = len(examples) * sampling.n
    return finished, {"samples": n_samples, "truncated_samples": n_samples - sum(map(len, finished))}

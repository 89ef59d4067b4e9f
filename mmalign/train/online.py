"""Online DPO: pairs sampled from the current policy inside the training loop and labelled on the fly.

A share ``online.fraction`` of every batch is sampled from the policy as it is when the batch is drawn (the loop
draws micro-batch k just before step k's forward), labelled by a scorer (the lab oracle, a reward model or a
judge: ``ScorerConfig``) and paired best against worst (one pair per prompt); the rest comes from the fixed
offline set. Fraction 1 is online DPO (Guo et al. 2024, arXiv 2402.04792: fresh pairs from the policy, labelled
by an annotator each step); fractions in between are MiniMax-style mixed offline + online sampling, which keeps
the offline set's coverage while the online share follows the policy's own distribution.

Micro-batch ``k`` (counted over all processes) holds ``floor((k+1)·B·f) - floor(k·B·f)`` online pairs, so over
any run the online share is exactly ``f`` to within one pair; the offline pairs are read on from where the last
batch stopped. Its prompts are lab train scenes drawn from blocks fixed by ``k``, and its samples are seeded by
``k``: a resumed run (the policy restored from the checkpoint) samples the same pairs again. A prompt whose
samples give no pair (identical or tied) is passed over; when a block's prompts give too few pairs, the next
block is tried, ``online.attempts`` blocks in all, and a batch still short trains on fewer pairs (logged as
``online/fraction``). What each micro-batch cost the labeller (prompts, samples scored, pairs kept) is appended to
``online.jsonl`` in the output folder, one line per micro-batch (``online_samples`` reads it back; a resumed run
appends the batches it redraws again, and the last line of a micro-batch counts).

The reference log-probs of online pairs cannot be cached ahead (the pairs do not exist yet): with online pairs
the reference model scores every batch live.
"""
from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from mmalign.construct.label import label_pairs
from mmalign.construct.sample import SamplingConfig, sample_finished
from mmalign.construct.scorers.choice import ScorerConfig, build_scorer
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import ConfigError, MMAlignError
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import prompt_example


@dataclass
class OnlineConfig:
    fraction: float = 0.0          # share of each batch sampled from the current policy; 0: offline only
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    tasks: dict[str, float] = field(default_factory=lambda: {"caption": 0.5, "exist": 0.5})   # prompt mix
    min_margin: float = 1e-6       # pairs need scores at least this far apart
    prompts_per_pair: int = 3      # prompts sampled per online pair still needed, per attempt
    attempts: int = 4              # prompt blocks tried per batch before it trains on fewer online pairs

    def validate(self) -> None:
        if not 0 <= self.fraction <= 1:
            raise ConfigError(f"online.fraction: {self.fraction} is not in [0, 1]")
        if self.sampling.n < 2:
            raise ConfigError(f"online.sampling.n: {self.sampling.n} samples per prompt cannot make a pair")


def online_share(k: int, batch_size: int, fraction: float) -> tuple[int, int]:
    """``(online pairs in micro-batch k, index of its first offline pair)`` (module docstring)."""
    def before(j: int) -> int:                  # online pairs in micro-batches 0..j-1
        return math.floor(j * batch_size * fraction + 1e-9)
    return before(k + 1) - before(k), k * batch_size - before(k)


class OnlinePairs:
    """``pairs(k, n)``: up to ``n`` pairs for micro-batch ``k``, sampled from ``model`` as it is now."""

    def __init__(self, cfg: OnlineConfig, world: WorldConfig, model, processor, seed: int, log: Path | None = None):
        self.cfg, self.world, self.model, self.processor, self.seed, self.log = cfg, world, model, processor, seed, log
        self.scorer = build_scorer(cfg.scorer)

    def prompts(self, k: int, attempt: int, n: int) -> list[dict]:
        block = (k * self.cfg.attempts + attempt) * n
        return [prompt_example(self.world, "train", self.cfg.tasks, block + i) for i in range(n)]

    def pairs(self, k: int, n: int) -> list[PreferenceRecord]:
        out, tried, samples = [], 0, 0
        for attempt in range(self.cfg.attempts):
            need = n - len(out)
            if need <= 0:
                break
            examples = self.prompts(k, attempt, need * self.cfg.prompts_per_pair)
            sampling = dataclasses.replace(self.cfg.sampling, seed=self.cfg.sampling.seed + 1_000_003 * self.seed + k)
            finished, _ = sample_finished(self.model, self.processor, examples, sampling, desc=None)
            records, report = label_pairs(examples, finished, self.scorer, min_margin=self.cfg.min_margin, desc=None)
            tried += len(examples)
            samples += sum(map(len, finished)) - report["duplicate_samples"]
            out += records[:need]
        if not out:
            raise MMAlignError(f"online: no pair from {tried} prompts for micro-batch {k}: every prompt's samples "
                               "were identical or tied (the policy has collapsed, or sampling.temperature is too low)")
        cost = {"micro_batch": k, "prompts": tried, "scored_samples": samples, "pairs": len(out)}
        for r in out:
            r.id = f"online-{k:07d}-{r.id}"
            r.meta["online"] = cost
        if self.log is not None:
            with self.log.open("a") as f:
                f.write(json.dumps(cost) + "\n")
        return out


def online_samples(log: Path) -> dict:
    """The labeller's total work over a run from its ``online.jsonl``: prompts, samples scored, pairs."""
    last = {}
    for line in log.read_text().splitlines() if log.exists() else []:
        if line.strip():
            row = json.loads(line)
            last[row["micro_batch"]] = row
    return {key: sum(r[key] for r in last.values()) for key in ("prompts", "scored_samples", "pairs")}


def online_metrics(records: list[PreferenceRecord]) -> dict[str, float]:
    """The batch's online share and the scorer's mean chosen and rejected score of its online pairs."""
    online = [r for r in records if "online" in r.meta]
    m = {"online/fraction": len(online) / len(records)}
    if online:
        m |= {"online/chosen_score": sum(r.scores["chosen"] for r in online) / len(online),
              "online/rejected_score": sum(r.scores["rejected"] for r in online) / len(online)}
    return m

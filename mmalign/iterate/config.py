"""The settings of ``mmalign iterate``: rounds, prompts, sampling, the scorer, the reference switch, the preference
training each round runs (a whole ``PreferenceConfig``), evaluation and the over-optimisation stop."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mmalign.construct.sample import SamplingConfig
from mmalign.construct.scorers.choice import ScorerConfig
from mmalign.errors import ConfigError
from mmalign.iterate.overopt import OverOptConfig
from mmalign.train.preference import SHIPPED_BASE, PreferenceConfig
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import TASKS


@dataclass
class IterateEvalConfig:
    n_scenes: int = 600            # held-out test scenes for captions and POPE (the hallucination figures)
    proxy_prompts: int = 200       # held-out val prompts whose greedy answers the scorer and the oracle both score
    reward_pairs: int = 200        # held-out pairs the model's own likelihood ranks (the reward-model figure)


@dataclass
class IterateConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: str = SHIPPED_BASE      # round 1's policy; with reference=fixed, every round's pi_ref
    rounds: int = 3
    prompts: int = 3000            # prompts sampled per round (scorer calls: prompts x sampling.n per round)
    tasks: dict[str, float] = field(default_factory=lambda: {"caption": 0.5, "exist": 0.5})  # prompt mix
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    scorer: ScorerConfig = field(default_factory=ScorerConfig)
    mode: Literal["best_worst", "all"] = "all"    # label_pairs: every pair of differing scores, or best vs worst
    min_margin: float = 1e-6
    length_balance: bool = True    # sampled pairs whose rejected is systematically longer teach brevity (LAB.md)
    # from this round on, drop caption pairs that differ only in coverage (same absent objects, more real ones)
    # before the length balance; None keeps them in every round. On the lab, dropping them from round 1 or 2 on
    # ended behind keeping them (docs/iterative.md). Needs the lab oracle's details
    drop_coverage_from: int | None = None
    reference: Literal["fixed", "refreshed"] = "refreshed"   # pi_ref: each round's start, or round 1's policy
    preference: PreferenceConfig = field(default_factory=PreferenceConfig)   # each round's training
    # > 0: each round trains ceil(epochs x its pairs / batch) steps instead of preference.train.max_steps (later
    # rounds find fewer pairs: the policy's samples agree more often)
    epochs: float = 0.0
    eval: IterateEvalConfig = field(default_factory=IterateEvalConfig)
    overopt: OverOptConfig = field(default_factory=OverOptConfig)
    seed: int = 0                  # moves the samples' draws and the training order of every round
    out: str = "runs/iterate"

    def validate(self) -> None:
        if self.rounds < 1 or self.prompts < 1:
            raise ConfigError(f"rounds ({self.rounds}) and prompts ({self.prompts}) must be positive")
        unknown = [t for t in self.tasks if t not in TASKS]
        if unknown:
            raise ConfigError(f"tasks: unknown task(s) {unknown} (known: {', '.join(TASKS)})")
        if self.drop_coverage_from is not None and self.drop_coverage_from < 1:
            raise ConfigError(f"drop_coverage_from: {self.drop_coverage_from} is not a round (rounds count from 1)")
        if self.epochs < 0:
            raise ConfigError(f"epochs: {self.epochs} is negative")
        if self.sampling.n < 2:
            raise ConfigError(f"sampling.n: {self.sampling.n} samples per prompt cannot make a pair")
        if self.preference.data.source != "lab":
            raise ConfigError("preference.data.source is set by each round (its filtered pairs); leave it 'lab'")

"""The online-RL trainer's config (``mmalign.rl.trainer.run_rl``): what to sample, how to score it, which advantage
estimator and policy loss, and the loop's settings.

Counting. One *RL step* is one rollout: ``rollout.prompts`` prompts x ``rollout.group_size`` completions = ``rows``
rows, then ``algorithm.epochs`` passes over them in minibatches of ``train.batch_size * train.grad_accum`` rows, one
optimiser step each (``train.batch_size`` rows per micro-batch, as everywhere in the loop). So one RL step is
``updates_per_rollout = epochs * rows / (batch_size * grad_accum)`` optimiser steps, and in this config
``train.max_steps``, ``train.warmup_steps``, ``train.log_every``, ``train.eval_every`` and ``train.save_every``
count RL steps; ``loop_config`` multiplies them for the loop, whose ``step`` in ``metrics.jsonl`` counts optimiser
steps (each logged record also carries ``rl_step``). Checkpoints therefore fall on rollout boundaries, where a
resumed run rebuilds the next rollout from the restored weights.

Settings of the registered functions are checked against their signatures when the config loads (``validate``):
``algorithm.advantage_params`` are the estimator's keywords, ``algorithm.loss_params`` ``ppo_clip``'s keywords
(overriding the preset's), ``reward_settings[name]`` the reward function's keywords.
"""
from __future__ import annotations

import inspect
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Literal

from mmalign.construct.scorers.choice import ScorerConfig
from mmalign.errors import ConfigError
from mmalign.models.load import ModelConfig
from mmalign.rl.advantages import ADVANTAGES
from mmalign.rl.kl import KL_ESTIMATORS
from mmalign.rl.policy_losses import POLICY_LOSSES, ppo_clip
from mmalign.rl.rewards import REWARDS
from mmalign.train.loop import TrainConfig
from mmalign.world.scenes import SPLITS, WorldConfig
from mmalign.world.tasks import TASKS

Setting = float | int | str | bool
REWARD_MODEL = "reward_model"  # the reward that scores with the trained reward model in ``RLConfig.reward_model``
SCORER = "scorer"              # the reward that scores with ``RLConfig.scorer`` (oracle, lab judge, external judge)
# inputs the trainer computes, never settings
ADVANTAGE_INPUTS = ("scores", "mask", "group_size", "values", "process_rewards", "kl", "kl_coef")
LOSS_INPUTS = ("logps", "old_logps", "advantages", "mask", "ref_logps", "entropies", "kl_coef", "kl_estimator",
               "max_length")


@dataclass
class RolloutConfig:
    prompts: int = 16              # prompts per RL step (per process)
    group_size: int = 8            # G completions per prompt
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 8        # also Dr.GRPO's constant and DAPO's L_max
    stop: list[str] = field(default_factory=list)   # stop strings ("</answer>"): the completion keeps the tokens
                                                    # that spell one and counts as stopped (models.generate)
    batch_size: int = 64           # rows per generate call and per no-gradient scoring forward
    packed: bool = True            # a prompt's completions behind one copy of it, in scoring and updates (rollout.py);
                                   # the plain rows' numbers, faster (docs/performance.md)


@dataclass
class KLConfig:
    coef: float = 0.0              # 0: no reference model, no KL
    estimator: str = "k3"          # kl.KL_ESTIMATORS: k1 | k2 | k3 | k1_clamped
    placement: Literal["loss", "reward"] = "loss"   # GRPO's KL in the loss; PPO/RLOO/REINFORCE++'s in the reward
    reference: Literal["copy", "adapters"] = "copy"  # a frozen copy, or the LoRA policy with adapters off


@dataclass
class DynamicSamplingConfig:
    """DAPO's dynamic sampling: groups whose rewards are all equal (zero variance, zero advantage) are dropped and
    fresh prompts are sampled, up to ``max_rounds`` rounds per RL step, until ``rollout.prompts`` groups are kept.
    When the rounds run out, dropped groups fill the remaining places (they carry zero advantage), so every RL step
    trains on the same number of rows and the step count stays fixed; ``ds/padded_groups`` counts them."""
    enabled: bool = False
    max_rounds: int = 3


@dataclass
class OverlongConfig:
    """DAPO's soft overlong punishment (``shaping.overlong_penalty``) with ``L_max = rollout.max_new_tokens``."""
    buffer: int = 0                # L_buf in tokens; 0 turns it off
    penalty: float = 1.0


@dataclass
class AlgorithmConfig:
    advantage: str = "grpo"        # advantages.ADVANTAGES
    advantage_params: dict[str, Setting] = field(default_factory=dict)
    loss: str = "grpo"             # policy_losses.POLICY_LOSSES: ppo | grpo | bnpo | dapo | dr_grpo
    loss_params: dict[str, Setting] = field(default_factory=dict)   # ppo_clip keywords over the preset's
    epochs: int = 1                # passes over each rollout (PPO epochs, GRPO's num_iterations)
    kl: KLConfig = field(default_factory=KLConfig)
    dynamic_sampling: DynamicSamplingConfig = field(default_factory=DynamicSamplingConfig)
    overlong: OverlongConfig = field(default_factory=OverlongConfig)
    vf_coef: float = 0.1           # PPO (advantage "gae"): weight of the value loss (TRL's default)
    value_clip: float = 0.2        # PPO: the value loss's clip range (TRL's cliprange_value)

    def validate(self) -> None:
        if self.advantage not in ADVANTAGES:
            raise ConfigError(f"unknown advantage estimator '{self.advantage}' (known: {', '.join(ADVANTAGES)})")
        if self.loss not in POLICY_LOSSES:
            raise ConfigError(f"unknown policy loss '{self.loss}' (known: {', '.join(POLICY_LOSSES)})")
        if ADVANTAGES[self.advantage].needs_process_rewards:
            raise ConfigError(f"advantage '{self.advantage}' needs an implicit process reward model, which this "
                              "trainer does not train; use grpo, dr_grpo, rloo, reinforce_pp(_baseline) or gae")
        if self.kl.estimator not in KL_ESTIMATORS:
            raise ConfigError(f"unknown KL estimator '{self.kl.estimator}' (known: {', '.join(KL_ESTIMATORS)})")
        if self.epochs < 1 or self.dynamic_sampling.max_rounds < 1:
            raise ConfigError("algorithm.epochs and algorithm.dynamic_sampling.max_rounds must be >= 1")
        check_settings(f"advantage '{self.advantage}'", ADVANTAGES[self.advantage].fn, self.advantage_params,
                       ADVANTAGE_INPUTS)
        check_settings(f"policy loss '{self.loss}'", ppo_clip, self.loss_params, LOSS_INPUTS)


@dataclass
class RLEvalConfig:
    split: str = "val"             # held-out scenes
    n_per_task: int = 200          # examples of each task of the mix; 0: no evaluation
    batch_size: int = 64


@dataclass
class RLConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(path=shipped_base()))
    tasks: dict[str, float] = field(default_factory=lambda: {"count": 1.0})            # prompt mix (train split)
    rewards: dict[str, float] = field(default_factory=lambda: {"count_accuracy": 1.0})  # rewards.REWARDS -> weight
    reward_settings: dict[str, dict[str, Setting]] = field(default_factory=dict)        # a reward's keywords
    reward_model: str = ""         # a reward-model folder (`mmalign reward`): the reward "reward_model" scores with it
    scorer: ScorerConfig = field(default_factory=ScorerConfig)   # what the reward "scorer" scores with
    rollout: RolloutConfig = field(default_factory=RolloutConfig)
    algorithm: AlgorithmConfig = field(default_factory=AlgorithmConfig)
    eval: RLEvalConfig = field(default_factory=RLEvalConfig)
    # counted in RL steps (module docstring); batch_size = rows per micro-batch
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        output_dir="runs/rl", max_steps=100, batch_size=32, lr=1e-5, warmup_steps=0, min_lr_ratio=1.0,
        log_every=1, eval_every=20))

    def validate(self) -> None:
        for task in self.tasks:
            if task not in TASKS:
                raise ConfigError(f"unknown lab task '{task}' in tasks (known: {', '.join(TASKS)})")
        if self.eval.split not in SPLITS:
            raise ConfigError(f"eval.split must be one of {', '.join(SPLITS)}")
        if not self.rewards:
            raise ConfigError("rewards: name at least one reward function")
        if any(not s for s in self.rollout.stop):
            raise ConfigError(f"rollout.stop: a stop string is empty ({self.rollout.stop!r})")
        for name in self.rewards:
            if name not in REWARDS and name not in (REWARD_MODEL, SCORER):
                raise ConfigError(f"unknown reward '{name}' (known: {', '.join([*REWARDS, REWARD_MODEL, SCORER])})")
        if (REWARD_MODEL in self.rewards) != bool(self.reward_model):
            raise ConfigError(f"the reward '{REWARD_MODEL}' and the setting reward_model=<folder> go together "
                              f"(rewards: {sorted(self.rewards)}, reward_model: '{self.reward_model}')")
        for name, settings in self.reward_settings.items():
            if name in (REWARD_MODEL, SCORER):
                raise ConfigError(f"reward_settings.{name}: '{name}' takes no settings here (set reward_model= or "
                                  "scorer.*)")
            if name not in self.rewards:
                raise ConfigError(f"reward_settings.{name}: '{name}' is not one of the rewards")
            check_settings(f"reward '{name}'", REWARDS[name], settings, ("completion", "example"))
        if ADVANTAGES[self.algorithm.advantage].needs_groups and self.rollout.group_size < 2:
            raise ConfigError(f"advantage '{self.algorithm.advantage}' compares completions of one prompt: "
                              "rollout.group_size must be >= 2")
        minibatch = self.train.batch_size * self.train.grad_accum
        if rows(self) % minibatch:
            raise ConfigError(f"a rollout has {rows(self)} rows (rollout.prompts x rollout.group_size), not a "
                              f"multiple of the minibatch train.batch_size x train.grad_accum = {minibatch}")


def shipped_base() -> str:
    from mmalign.train.preference import SHIPPED_BASE
    return SHIPPED_BASE


def rows(cfg: RLConfig) -> int:
    """Rows (completions) per RL step and process."""
    return cfg.rollout.prompts * cfg.rollout.group_size


def updates_per_rollout(cfg: RLConfig) -> int:
    """Optimiser steps per RL step: ``epochs * rows / (batch_size * grad_accum)``."""
    return cfg.algorithm.epochs * rows(cfg) // (cfg.train.batch_size * cfg.train.grad_accum)


def loop_config(cfg: RLConfig) -> TrainConfig:
    """``cfg.train`` with its RL-step counts turned into the loop's optimiser-step counts."""
    u, t = updates_per_rollout(cfg), cfg.train
    return replace(t, max_steps=t.max_steps * u, warmup_steps=t.warmup_steps * u, log_every=t.log_every * u,
                   eval_every=t.eval_every * u, save_every=t.save_every * u)


def loss_agg(cfg: AlgorithmConfig) -> str:
    """The policy loss's aggregation: ``loss_params`` over the preset's over ``ppo_clip``'s default."""
    preset = POLICY_LOSSES[cfg.loss]
    keywords = preset.keywords if isinstance(preset, partial) else {}
    default = inspect.signature(ppo_clip).parameters["loss_agg"].default
    return str(cfg.loss_params.get("loss_agg", keywords.get("loss_agg", default)))


def check_settings(what: str, fn, settings: dict, computed: tuple[str, ...]) -> None:
    """One-line ``ConfigError`` for a setting that is not a keyword of ``fn`` or that the trainer computes."""
    valid = [n for n, p in inspect.signature(fn).parameters.items()
             if p.kind == p.KEYWORD_ONLY and n not in computed]
    for key in settings:
        if key in computed:
            raise ConfigError(f"{what}: '{key}' is computed by the trainer, not a setting")
        if key not in valid:
            raise ConfigError(f"{what} has no setting '{key}' (settings: {', '.join(valid) or 'none'})")

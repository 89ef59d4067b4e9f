"""The online RL trainer: one loop for every advantage estimator and policy loss of ``mmalign.rl``.

Per RL step (ALGORITHMS.md §3.2, §6)::

    prompts (lab task mix, train split) -> rollout: G completions each, old log-probs      (rollout.make_rollout)
      -> rewards: r = sum_k w_k r_k, each r_k logged                                       (rewards.score_batch)
      -> DAPO dynamic sampling: drop zero-variance groups, sample more prompts              (shaping.dynamic_sampling_mask)
      -> DAPO overlong shaping: r += overlong_penalty(|y|)                                  (shaping.overlong_penalty)
      -> reference log-probs, KL in the reward (detached, from the rollout) if asked        (kl.KL_ESTIMATORS)
      -> advantages (and returns)                                                           (advantages.ADVANTAGES)
      -> K epochs of minibatch updates with the policy loss                                 (policy_losses.POLICY_LOSSES)

The updates run on the shared loop (``train.loop.train``): each optimiser step is one minibatch of a rollout, fed
as ``grad_accum`` micro-batches by the indexed stream ``batches(start)``, which builds the next rollout with the
current weights when its first micro-batch is asked for. ``config.loop_config`` turns the RL-step counts into
optimiser steps, so checkpoints fall between rollouts and a resumed run rebuilds exactly the rollout the
uninterrupted one would have (prompts, sampling seeds and minibatch order are functions of the RL step).

Gradient accumulation and processes. The loop divides every micro-batch loss by ``grad_accum`` (accelerate) and
DDP averages over processes, i.e. both weigh micro-batches equally; the policy loss must instead be normalised over
the whole minibatch, every process's share of it included. So each micro-batch names its ``units`` (``micro_units``):
response tokens for ``loss_agg = token_mean`` (DAPO's and BNPO's token mean over the minibatch), rows for the
sequence means (GRPO's ``seq_mean_token_mean``, Dr.GRPO's ``seq_mean_token_sum_norm``), and the loop weighs it by
its share of the step's units summed over micro-batches and processes (``train.loop.unit_share``); the step's loss
is then the global minibatch's exactly. Each process rolls out its own prompts (``Experiences.prompts``) with the
sampling seeds those prompts have in one process's rollout, so 2 processes x ``rollout.prompts`` P/2 (and
``train.batch_size`` B/2) take the step 1 x P (and B) takes; a per-process normaliser would not, with token means,
when the processes' completions differ in length. Advantages that whiten over the batch (``reinforce_pp``, ``gae``)
and the token-mean metrics (``entropy``, ``clip_frac``, ...) use each process's own rows.

Logged per RL step (means over its optimiser steps): ``reward`` and ``reward/<name>`` (unweighted, every row
sampled, dynamic sampling's dropped groups included), ``reward/group_std``, ``score`` (the shaped outcome that enters
the advantages), ``len/mean``, ``len/max``, ``stopped`` (share of completions that ended with the end-of-turn
token), ``rollout/kl`` (KL of the rollout to the reference), ``ds/kept_share``, ``ds/dropped_groups``,
``ds/padded_groups``, ``ds/rounds``; from the loss: ``kl`` (current policy vs reference), ``entropy``, ``clip_frac``
(and ``_low``/``_high``), ``approx_kl``, ``ratio``, ``pg_loss``, and for PPO the value metrics. Every
``train.eval_every`` RL steps: greedy answers on held-out prompts of the task mix, scored by
``mmalign.world.scoring`` (``eval/<task>/<metric>``) and by the rewards (``eval/reward``).

Not in this trainer: PRIME (its implicit PRM needs a second trained model) and a vLLM rollout backend
(``rollout`` module docstring). Lab results (GRPO on arithmetic and grounding, GRPO against reward models, with
the reward hacking seen): docs/rl.md; GRPO on counting: docs/rl_count.md; both from ``benchmarks/lab_rl.py``.
"""
from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate.utils import extract_model_from_parallel

from mmalign.errors import MMAlignError
from mmalign.models.generate import row_seed
from mmalign.models.load import load_model
from mmalign.rl.advantages import ADVANTAGES
from mmalign.rl.config import REWARD_MODEL, SCORER, RLConfig, loop_config, loss_agg, rows, updates_per_rollout
from mmalign.rl.kl import KL_ESTIMATORS
from mmalign.rl.policy_losses import POLICY_LOSSES, value_loss
from mmalign.rl.rewards import REWARDS, batched, reward_model_reward, score_batch, scorer_reward
from mmalign.rl.rollout import (
    HFEngine,
    Rollout,
    cat_rollouts,
    make_rollout,
    response_forward,
    score_rows,
)
from mmalign.rl.shaping import dynamic_sampling_mask, overlong_penalty
from mmalign.rl.value import ActorCritic, values_of
from mmalign.train.guards import blank_image_inputs, text_only_term
from mmalign.train.loop import process_state, train
from mmalign.train.reference import adapters_disabled, frozen_copy
from mmalign.world.scoring import aggregate
from mmalign.world.tasks import make_example, mixed_example


@dataclass
class Experience:
    """One RL step's rollout with everything the updates read, ``(B, T)`` unless said: ``advantages``,
    ``returns`` (value targets), ``ref_logps`` (None without a reference), ``old_values`` (PPO only) and the
    step's rollout ``metrics``."""

    step: int
    rollout: Rollout
    advantages: torch.Tensor
    returns: torch.Tensor
    ref_logps: torch.Tensor | None
    old_values: torch.Tensor | None
    metrics: dict[str, float]


@dataclass
class MicroBatch:
    """Rows ``rows`` of ``experience``; their loss is a mean over ``units`` (module docstring)."""

    experience: Experience
    rows: list[int]
    units: float


def micro_units(agg: str, mask: torch.Tensor) -> float:
    """What the policy loss of rows with response ``mask`` is a mean over: tokens for ``token_mean``, rows for the
    sequence means."""
    return float(mask.sum()) if agg == "token_mean" else float(mask.shape[0])


def reward_functions(cfg: RLConfig) -> dict:
    """The config's batch rewards by name; ``reward_model`` is the reward-model folder's scorer (loaded once),
    ``scorer`` the data-construction scorer ``cfg.scorer`` names."""
    out = {name: batched(REWARDS[name], **cfg.reward_settings.get(name, {})) for name in cfg.rewards
           if name not in (REWARD_MODEL, SCORER)}
    if SCORER in cfg.rewards:
        from mmalign.construct.scorers.choice import build_scorer
        out[SCORER] = scorer_reward(build_scorer(cfg.scorer))
    if REWARD_MODEL in cfg.rewards:
        from mmalign.reward.score import load_reward_model
        scorer = load_reward_model(cfg.reward_model, batch_size=cfg.rollout.batch_size)
        out[REWARD_MODEL] = reward_model_reward(scorer.completions)
    return out


def group_first(keep: torch.Tensor, group_size: int, wanted: int) -> tuple[list[int], int]:
    """Rows of the first ``wanted`` groups, kept groups first (in order), then dropped ones to fill; and how many
    dropped groups filled in."""
    per_group = keep.view(-1, group_size)[:, 0].tolist()
    order = [g for g, k in enumerate(per_group) if k] + [g for g, k in enumerate(per_group) if not k]
    chosen = order[:wanted]
    padded = sum(not per_group[g] for g in chosen)
    return [g * group_size + k for g in chosen for k in range(group_size)], padded


class Experiences:
    """``experiences(step)`` -> the ``Experience`` of RL step ``step`` with the policy's current weights."""

    def __init__(self, cfg: RLConfig, model, processor, reference, rank: int = 0, world_size: int = 1):
        self.cfg, self.model, self.processor, self.reference = cfg, model, processor, reference
        self.rank, self.world_size = rank, world_size
        r = cfg.rollout
        self.engine = HFEngine(self.policy, processor, temperature=r.temperature, top_p=r.top_p,
                               max_new_tokens=r.max_new_tokens, batch_size=r.batch_size, stop=tuple(r.stop))
        self.rewards = reward_functions(cfg)

    @property
    def policy(self):
        return self.model.policy if isinstance(self.model, ActorCritic) else self.model

    def prompts(self, step: int, round_: int) -> list[dict]:
        """Prompts of ``(step, round)``: a block of the train-split stream of the task mix reserved for it."""
        ds = self.cfg.algorithm.dynamic_sampling
        block = ((step * ds.max_rounds + round_) * self.world_size + self.rank) * self.cfg.rollout.prompts
        return [mixed_example(self.cfg.world, "train", self.cfg.tasks, block + k) for k in range(self.cfg.rollout.prompts)]

    def sample(self, step: int) -> tuple[Rollout, torch.Tensor, dict[str, float]]:
        """Rollout rounds until enough groups with reward variance are kept (one round without dynamic sampling):
        the chosen rows, their reward totals ``(B,)``, and the metrics (rewards over every row sampled, dynamic
        sampling's counts)."""
        cfg, g = self.cfg, self.cfg.rollout.group_size
        ds = cfg.algorithm.dynamic_sampling
        parts, totals, per = [], [], {}
        for round_ in range(ds.max_rounds if ds.enabled else 1):
            ro = make_rollout(self.engine, self.policy, self.processor, self.prompts(step, round_), group_size=g,
                              seed=row_seed(cfg.train.seed, step, round_),
                              first_prompt=self.rank * cfg.rollout.prompts, batch_size=cfg.rollout.batch_size,
                              packed=cfg.rollout.packed)
            total, per_reward = score_batch(self.rewards, ro.texts, ro.examples, weights=cfg.rewards)
            parts.append(ro)
            totals.append(total)
            for k, v in per_reward.items():
                per.setdefault(k, []).append(v)
            keep = dynamic_sampling_mask(torch.cat(totals), group_size=g)
            if not ds.enabled or int(keep.sum()) >= rows(cfg):
                break
        total = torch.cat(totals)
        keep = dynamic_sampling_mask(total, group_size=g) if ds.enabled else torch.ones(len(total), dtype=torch.bool)
        chosen, padded = group_first(keep, g, cfg.rollout.prompts)
        grouped = total.view(-1, g)
        metrics = {"reward": float(total.mean()), "reward/group_std": float(grouped.std(1).mean()),
                   **{f"reward/{k}": float(torch.cat(v).mean()) for k, v in per.items()}}
        if ds.enabled:
            sampled = len(total) // g
            metrics |= {"ds/kept_share": float(keep.sum()) / len(total), "ds/dropped_groups": sampled - int(keep.sum()) // g,
                        "ds/padded_groups": padded, "ds/rounds": len(parts)}
        rollout = cat_rollouts(parts, self.processor.tokenizer.pad_token_id).select(chosen)
        return rollout, total[chosen], metrics

    def __call__(self, step: int) -> Experience:
        cfg, alg = self.cfg, self.cfg.algorithm
        rollout, scores, metrics = self.sample(step)
        mask, lengths = rollout.mask, rollout.lengths
        if alg.overlong.buffer:
            scores = scores + overlong_penalty(lengths, max_length=cfg.rollout.max_new_tokens,
                                               buffer=alg.overlong.buffer, penalty=alg.overlong.penalty)
        ref_logps = self.reference(rollout) if self.reference is not None else None
        kl = None
        if ref_logps is not None:
            kl = KL_ESTIMATORS[alg.kl.estimator](rollout.old_logps, ref_logps) * mask
            metrics["rollout/kl"] = float(kl.sum() / mask.sum())
        spec = ADVANTAGES[alg.advantage]
        data = {"group_size": cfg.rollout.group_size} if spec.needs_groups else {}
        old_values = None
        if spec.needs_values:
            old_values = values_of(self.model, self.processor, rollout, batch_size=cfg.rollout.batch_size,
                                   packed=cfg.rollout.packed)
            data["values"] = old_values
        in_reward = alg.kl.placement == "reward" and kl is not None
        adv = spec.fn(scores, mask, **data, kl=kl if in_reward else None, kl_coef=alg.kl.coef if in_reward else 0.0,
                      **alg.advantage_params)
        metrics |= {"score": float(scores.mean()), "len/mean": float(lengths.float().mean()),
                    "len/max": float(lengths.max()), "stopped": float(rollout.stopped.float().mean())}
        return Experience(step, rollout, adv.advantages, adv.returns, ref_logps, old_values, metrics)


def micro_batches(cfg: RLConfig, experiences, start: int) -> Iterator[MicroBatch]:
    """The loop's indexed stream: micro-batch ``start`` on. RL step ``s`` is ``epochs`` shuffled passes over its
    rows in minibatches of ``batch_size * grad_accum`` rows (the order a function of ``(seed, s, epoch)``)."""
    t = cfg.train
    per_step = updates_per_rollout(cfg) * t.grad_accum
    if start % per_step:
        raise MMAlignError(f"resuming at micro-batch {start}, inside an RL step ({per_step} micro-batches each): "
                           "RL checkpoints are written between rollouts; resume from one of those")
    agg, minibatch = loss_agg(cfg.algorithm), t.batch_size * t.grad_accum
    step = start // per_step
    while True:
        exp = experiences(step)
        for epoch in range(cfg.algorithm.epochs):
            order = np.random.default_rng([t.seed, step, epoch]).permutation(rows(cfg)).tolist()
            for m in range(0, rows(cfg), minibatch):
                mini = order[m:m + minibatch]
                for a in range(0, minibatch, t.batch_size):
                    micro = mini[a:a + t.batch_size]
                    yield MicroBatch(exp, micro, micro_units(agg, exp.rollout.mask[micro]))
        step += 1


class RLStep:
    """The loop's ``loss_fn(model, micro_batch) -> (loss, metrics)``: the policy loss (and PPO's value loss) on the
    micro-batch's rows, a mean over its ``units`` (the loop weighs it). ``model`` is the policy, or
    ``value.ActorCritic`` for PPO (as the loop hands it over: possibly wrapped for distribution, so it is only ever
    called). Text-only rows run the vision tower on a blank image (``guards.text_only_term``)."""

    def __init__(self, cfg: RLConfig, processor):
        self.cfg, self.processor = cfg, processor
        self.agg = loss_agg(cfg.algorithm)
        self.critic = ADVANTAGES[cfg.algorithm.advantage].needs_values
        self.blank = blank_image_inputs(processor)

    def __call__(self, model, micro: MicroBatch):
        alg, exp, idx = self.cfg.algorithm, micro.experience, torch.tensor(micro.rows)
        ro = exp.rollout
        width = int(ro.mask[idx].sum(1).max())
        mask, ids = ro.mask[idx, :width], ro.response_ids[idx, :width]
        fwd = response_forward(model, self.processor, [ro.examples[i] for i in micro.rows], ids, mask,
                               entropies=True, values=self.critic, packed=self.cfg.rollout.packed)
        device = fwd.logps.device

        def take(x: torch.Tensor | None) -> torch.Tensor | None:
            return None if x is None else x[idx, :width].to(device)

        entropies = fwd.entropies if alg.loss_params.get("entropy_coef", 0) else fwd.entropies.detach()
        mask, max_length = mask.to(device), self.cfg.rollout.max_new_tokens
        out = POLICY_LOSSES[alg.loss](fwd.logps, take(ro.old_logps), take(exp.advantages), mask,
                                      ref_logps=take(exp.ref_logps), entropies=entropies,
                                      kl_coef=alg.kl.coef if alg.kl.placement == "loss" else 0.0,
                                      kl_estimator=alg.kl.estimator, max_length=max_length, **alg.loss_params)
        loss, metrics = out.loss, {k: float(v) for k, v in out.metrics.items()}
        if self.critic:
            vl = value_loss(fwd.values, take(exp.old_values), take(exp.returns), mask, clip_eps=alg.value_clip,
                            loss_agg=self.agg, max_length=max_length)
            loss = loss + alg.vf_coef * vl.loss
            metrics |= {k: float(v) for k, v in vl.metrics.items()}
        net = extract_model_from_parallel(model)
        images = any(ro.examples[i]["images"] for i in micro.rows)
        loss = loss + text_only_term(model, self.blank, images, net.policy if isinstance(net, ActorCritic) else None)
        return loss, metrics | exp.metrics | {"rl_step": exp.step + 1}


def eval_examples(cfg: RLConfig) -> list[dict]:
    return [make_example(cfg.world, task, cfg.eval.split, i) for task in cfg.tasks for i in range(cfg.eval.n_per_task)]


@torch.no_grad()
def evaluate_policy(model, processor, examples: list[dict], rewards: dict, weights: dict[str, float], *,
                    batch_size: int = 64) -> dict[str, float]:
    """Greedy answers on ``examples``: every numeric lab metric (``eval/<task>/<metric>``) and the mean reward."""
    from mmalign.eval.lab import generate
    responses = generate(model, processor, examples, batch_size, desc=None)
    out = {f"eval/{task}/{k}": float(v) for task, d in aggregate(examples, responses).items() for k, v in d.items()
           if isinstance(v, int | float) and k != "n"}
    total, _ = score_batch(rewards, responses, examples, weights=weights)
    return out | {"eval/reward": float(total.mean())}


def make_reference(cfg: RLConfig, policy, processor):
    """``rollout -> (B, T)`` reference log-probs, or None when there is no KL (``algorithm.kl.coef == 0``)."""
    kl = cfg.algorithm.kl
    if kl.coef == 0:
        return None
    if kl.reference == "adapters":
        if not cfg.model.lora.enabled:
            raise MMAlignError("algorithm.kl.reference=adapters needs model.lora.enabled=true")
        net, ctx = policy, adapters_disabled
    else:
        net, ctx = frozen_copy(policy), contextlib.nullcontext

    def reference(rollout: Rollout) -> torch.Tensor:
        with ctx(net) as m:
            return score_rows(m, processor, rollout, batch_size=cfg.rollout.batch_size, packed=cfg.rollout.packed)
    return reference


def run_rl(cfg: RLConfig) -> dict:
    """Train ``cfg.model`` with online RL on the lab; ``<output_dir>/model`` is the final policy and
    ``<output_dir>/eval.json`` the held-out metrics before and after."""
    state = process_state()
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    policy, processor = load_model(cfg.model)
    model = ActorCritic(policy) if ADVANTAGES[cfg.algorithm.advantage].needs_values else policy
    reference = make_reference(cfg, policy, processor)
    experiences = Experiences(cfg, model, processor, reference, state.process_index, state.num_processes)
    examples, rewards = eval_examples(cfg), experiences.rewards

    def evaluate(m) -> dict:
        net = m.policy if isinstance(m, ActorCritic) else m
        return evaluate_policy(net, processor, examples, rewards, cfg.rewards, batch_size=cfg.eval.batch_size)

    def save(unwrapped, folder: Path):
        net = unwrapped.policy if isinstance(unwrapped, ActorCritic) else unwrapped
        (net.merge_and_unload() if cfg.model.lora.enabled else net).save_pretrained(folder)
        processor.save_pretrained(folder)
        if isinstance(unwrapped, ActorCritic):
            torch.save(unwrapped.value.state_dict(), folder / "value_head.pt")

    before = evaluate(model) if examples and state.is_main_process else {}
    params = [p for p in model.parameters() if p.requires_grad]
    loop = loop_config(cfg)
    last = train(model, [{"params": params}], RLStep(cfg, processor),
                 lambda start: micro_batches(cfg, experiences, start), loop, desc=f"rl-{cfg.algorithm.loss}",
                 save_model=save, evaluate=evaluate if examples else None, units=lambda micro: micro.units)
    result = {"out": cfg.train.output_dir, "last": last}
    if examples and state.is_main_process:
        result |= {"before": before, "after": evaluate(model)}
        Path(cfg.train.output_dir, "eval.json").write_text(
            json.dumps({"before": before, "after": result["after"]}, indent=2))
    return result


"""``run_rl`` on the shipped lab model: a hand-built reward moves the policy its way, KL is 0 while the policy is
the reference, gradient accumulation weighs micro-batches as the loss aggregation demands, resume reproduces the
uninterrupted run, dynamic sampling counts what it drops, PPO trains its value head, and the shipped configs load."""
from __future__ import annotations

import itertools
import json
import shutil
from pathlib import Path

import pytest
import torch

from mmalign.config import load_config
from mmalign.errors import ConfigError
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.logprobs import token_logps
from mmalign.rl.config import RLConfig, loop_config, shipped_base, updates_per_rollout
from mmalign.rl.policy_losses import POLICY_LOSSES
from mmalign.rl.rewards import REWARDS
from mmalign.rl.trainer import (
    Experiences,
    MicroBatch,
    RLStep,
    group_first,
    micro_batches,
    micro_units,
    run_rl,
)
from mmalign.train.loop import unit_share
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

CONFIGS = Path(__file__).resolve().parents[2] / "configs" / "rl"


def rl_cfg(tmp_path, *overrides: str) -> RLConfig:
    """4 counting prompts x 4 completions per RL step, 2 RL steps, minibatches of 8 rows; ``overrides`` beat these."""
    small = [f"train.output_dir={tmp_path / 'out'}", "rollout.prompts=4", "rollout.group_size=4",
             "rollout.temperature=1.5", "rollout.max_new_tokens=4", "rollout.batch_size=16", "train.max_steps=2",
             "train.batch_size=8", "train.lr=1e-4", "train.log_every=1", "train.eval_every=0", "train.threads=1",
             "eval.n_per_task=0"]
    return load_config(RLConfig, None, small + list(overrides))


def metrics(out) -> list[dict]:
    return [json.loads(line) for line in (Path(out) / "metrics.jsonl").read_text().splitlines()]


def logp_of(model, processor, answer: str, n: int = 8) -> float:
    """Mean log-prob of ``answer`` (and the end-of-turn) on held-out counting prompts."""
    exs = [dict(make_example(WorldConfig(), "count", "val", i), response=answer) for i in range(n)]
    batch = build_inputs(processor, exs)
    labels = batch.pop("labels")
    with torch.no_grad():
        logp, _ = token_logps(model(**batch).logits, labels)
    return float(logp.sum(1).mean())


def test_a_hand_built_reward_raises_its_answer(tmp_path, monkeypatch):
    """Reward 1 for answering "2" whatever the scene: after a few steps at a high learning rate "2" is much likelier
    on held-out counting prompts (most of which have another answer), and likelier relative to "3" (both gain
    from the junk that temperature 2 samples and the reward ignores, "2" far more)."""
    monkeypatch.setitem(REWARDS, "says_two", lambda completion, example: float(completion.strip() == "2"))
    cfg = rl_cfg(tmp_path, "train.max_steps=4", "train.lr=1e-3", "rollout.temperature=2.0", "rewards={says_two: 1.0}")
    model, processor = load_model(ModelConfig(path=shipped_base()))
    before = logp_of(model, processor, "2"), logp_of(model, processor, "3")
    run_rl(cfg)
    trained, _ = load_model(ModelConfig(path=str(tmp_path / "out" / "model")))
    after = logp_of(trained, processor, "2"), logp_of(trained, processor, "3")
    assert after[0] > before[0] + 1.0                  # the rewarded answer became much likelier
    assert after[0] - after[1] > before[0] - before[1] + 1.0
    recs = metrics(tmp_path / "out")
    assert [r["rl_step"] for r in recs] == [1, 2, 3, 4] and all("reward/says_two" in r for r in recs)
    assert [r["step"] for r in recs] == [2, 4, 6, 8]   # 16 rows / minibatch 8 = 2 optimiser steps per RL step


@pytest.mark.parametrize("placement", ["loss", "reward"])
def test_kl_is_zero_while_the_policy_is_the_reference(tmp_path, placement):
    cfg = rl_cfg(tmp_path, "train.batch_size=16", "train.lr=1e-3", "algorithm.kl.coef=0.1", "algorithm.kl.estimator=k1",
                 f"algorithm.kl.placement={placement}")
    run_rl(cfg)
    first, second = metrics(tmp_path / "out")
    assert abs(first["kl"]) < 1e-5 and abs(first["rollout/kl"]) < 1e-5      # one update per RL step: step 1 is
    assert abs(second["rollout/kl"]) > 1e-4                                  # on the reference; step 2 is not


def test_micro_batch_weights_rebuild_the_minibatch_loss():
    """Micro-batch losses weighted by the loop's share of their units, divided by grad_accum as the loop divides
    them, add up to the minibatch loss for every aggregation, with micro-batches of very different token counts."""
    g = torch.Generator().manual_seed(0)
    logps, old, adv = (torch.randn(6, 5, generator=g, dtype=torch.float64) * 0.1 for _ in range(3))
    mask = torch.arange(5)[None] < torch.tensor([5, 1, 2, 5, 3, 1])[:, None]
    for name in ("grpo", "bnpo", "dapo", "dr_grpo"):
        loss_agg = POLICY_LOSSES[name].keywords["loss_agg"]
        whole = POLICY_LOSSES[name](logps, old, adv, mask, max_length=5).loss
        micro = (slice(0, 2), slice(2, 4), slice(4, 6))
        counts = [micro_units(loss_agg, mask[s]) for s in micro]
        parts = sum(share / 3 * POLICY_LOSSES[name](logps[s], old[s], adv[s], mask[s], max_length=5).loss
                    for s, share in zip(micro, unit_share(counts, sum(counts), 1)))
        torch.testing.assert_close(parts, whole, msg=name)


def test_gradient_accumulation_matches_one_big_batch():
    """The trainer's own stream and loss: the gradient of 4 micro-batches weighted as the loop weighs them, each
    divided by grad_accum as the loop divides it, is the gradient of their minibatch in one piece (DAPO's token
    mean, unequal lengths)."""
    cfg = rl_cfg(Path("/unused"), "train.batch_size=4", "train.grad_accum=4", "algorithm.loss=dapo",
                 "rollout.temperature=2.5")
    model, processor = load_model(ModelConfig(path=shipped_base()))
    exp = Experiences(cfg, model, processor, None)(0)
    micros = list(itertools.islice(micro_batches(cfg, lambda step: exp, 0), 4))      # the first minibatch
    assert len({int(exp.rollout.mask[m.rows].sum()) for m in micros}) > 1            # unequal token counts
    step = RLStep(cfg, processor)

    def grad(batches) -> torch.Tensor:
        model.zero_grad()
        counts = [m.units for m in batches]
        for m, share in zip(batches, unit_share(counts, sum(counts), 1)):
            (step(model, m)[0] * share / len(batches)).backward()
        return torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])

    whole = MicroBatch(exp, [r for m in micros for r in m.rows], sum(m.units for m in micros))
    torch.testing.assert_close(grad(micros), grad([whole]), atol=1e-6, rtol=1e-4)


def test_resume_gives_the_uninterrupted_metrics(tmp_path, monkeypatch):
    cfg = rl_cfg(tmp_path, "train.max_steps=3", "train.save_every=1", "algorithm.epochs=2")
    run_rl(cfg)
    out = tmp_path / "out"
    full = metrics(out)
    u = updates_per_rollout(cfg)
    assert loop_config(cfg).max_steps == 3 * u == full[-1]["step"]
    for step in (2 * u, 3 * u):                         # keep only the checkpoint after RL step 1
        shutil.rmtree(out / "checkpoints" / f"step-{step:07d}")
    built, make = [], Experiences.__call__
    monkeypatch.setattr(Experiences, "__call__", lambda self, step: built.append(step) or make(self, step))
    cfg.train.resume = "latest"
    run_rl(cfg)
    assert built == [1, 2]                              # it went on from the checkpoint: RL steps 2 and 3
    resumed = metrics(out)
    assert [r["rl_step"] for r in resumed] == [1, 2, 3]
    for x, y in zip(full[1:], resumed[1:]):
        assert x.keys() == y.keys()
        for k in x:
            if k != "steps_per_s":
                assert y[k] == pytest.approx(x[k], rel=1e-5, abs=1e-7), k


def test_dynamic_sampling_counts_dropped_groups(monkeypatch):
    """Reward variance only in the groups of even-indexed scenes: each round keeps half of its 4 groups, so two
    rounds fill the batch and the 4 zero-variance groups are counted as dropped."""
    calls = iter(range(10_000))

    def alternating(completion, example):
        k = next(calls)
        return float(k % 2) if int(example["id"].split("-")[1]) % 2 == 0 else 1.0

    monkeypatch.setitem(REWARDS, "alternating", alternating)
    cfg = rl_cfg(Path("/nonexistent"), "rewards={alternating: 1.0}", "algorithm.dynamic_sampling.enabled=true",
                 "algorithm.dynamic_sampling.max_rounds=3")
    model, processor = load_model(ModelConfig(path=shipped_base()))
    exp = Experiences(cfg, model, processor, None)(0)
    m = exp.metrics
    assert (m["ds/rounds"], m["ds/dropped_groups"], m["ds/padded_groups"], m["ds/kept_share"]) == (2, 4, 0, 0.5)
    ids = [e["id"] for e in exp.rollout.examples[::4]]
    assert all(int(i.split("-")[1]) % 2 == 0 for i in ids) and len(set(ids)) == 4
    assert (exp.advantages.abs().sum(1) > 0).all()      # every kept row carries signal


def test_group_first_fills_with_dropped_groups():
    keep = torch.tensor([0, 0, 1, 1, 0, 0], dtype=torch.bool)
    assert group_first(keep, 2, 2) == ([2, 3, 0, 1], 1)


def test_ppo_trains_a_value_head(tmp_path):
    cfg = rl_cfg(tmp_path, "train.lr=1e-3", "algorithm.advantage=gae", "algorithm.loss=ppo", "algorithm.kl.coef=0.05",
                 "algorithm.kl.estimator=k1", "algorithm.kl.placement=reward")
    run_rl(cfg)
    head = torch.load(tmp_path / "out" / "model" / "value_head.pt")
    assert head["weight"].abs().sum() > 0                # it starts at zero
    recs = metrics(tmp_path / "out")
    assert {"value_error", "value_clip_frac", "kl", "rollout/kl"} <= recs[-1].keys()


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.yaml")), ids=lambda p: p.name)
def test_configs_load(path):
    cfg = load_config(RLConfig, path)
    assert updates_per_rollout(cfg) >= 1


def test_configs_cover_the_methods():
    assert {"grpo_count", "dapo_count", "rloo_count", "reinforce_pp_count", "ppo_caption", "grpo_ground"} <= {
        p.stem for p in CONFIGS.glob("*.yaml")}


@pytest.mark.parametrize("override, message", [
    ("algorithm.loss_params={kl_coef: 0.1}", "computed by the trainer"),
    ("algorithm.advantage_params={lam: 0.9}", "has no setting 'lam'"),
    ("algorithm.advantage=prime", "process reward"),
    ("rewards={nope: 1.0}", "unknown reward"),
    ("train.batch_size=7", "not a multiple"),
    ("rollout.group_size=1", "group_size must be >= 2"),
    ("rollout.stop=['</answer>', '']", "stop string is empty"),
    ("scorer.name=reward_model", "needs scorer.reward_model"),
])
def test_bad_settings_are_config_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(RLConfig, None, [override])


def test_a_data_construction_scorer_is_a_reward(tmp_path):
    """``rewards: {scorer: w}`` scores with ``scorer.*``: the lab oracle on counting is the evaluation's own
    correctness, so it logs what ``lab_accuracy`` logs (weighted 0 here, for the comparison only)."""
    run_rl(rl_cfg(tmp_path, "rewards={scorer: 1.0, lab_accuracy: 0.0}", "scorer.name=oracle"))
    recs = metrics(tmp_path / "out")
    assert len(recs) == 2 and all(r["reward/scorer"] == r["reward/lab_accuracy"] == r["reward"] for r in recs)
    assert {r["reward/scorer"] for r in recs} - {0.0, 1.0}             # some groups right, some wrong

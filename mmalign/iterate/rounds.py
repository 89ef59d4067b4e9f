"""``mmalign iterate``: rounds of sample -> label -> filter -> preference training -> evaluate, each from the policy
the previous round trained (Llama 3's rounds of DPO on freshly sampled data; RLAIF-V's iterative feedback).

Round ``k`` (1..``rounds``) samples ``sampling.n`` answers to ``prompts`` fresh prompts (train scenes
``(k-1)·prompts`` on, tasks by ``tasks``, existence questions with POPE's three kinds of negative in turn) from
round ``k-1``'s model, scores them with the scorer (the lab oracle by default; a reward model or a judge), pairs
them (``label_pairs``: every two answers whose scores differ, or the best against the worst), de-duplicates and
length-balances the pairs, trains on them with the ``preference`` settings from round ``k-1``'s model (for
``epochs`` passes over its pairs when set, else ``preference.train.max_steps``), and evaluates the result.
``reference: refreshed`` makes each round's starting policy its pi_ref (Iterative RPO, Self-Rewarding LMs);
``fixed`` keeps round 1's policy as pi_ref in every round. Each round trains with ``preference.train.seed +
100·seed + k``.

Layout of ``out``::

    config.yaml                     the settings (a rerun with other settings is refused; rounds may grow)
    round_0/eval/                   the starting model's figures and proxy/gold scores
    round_<k>/samples/              samples.jsonl (the finished answers per prompt), report.json
    round_<k>/pairs/                the labelled pairs (pairs.jsonl, images/), report.json (no-pair reasons)
    round_<k>/filtered/             the pairs trained on, report.json (what each filter dropped)
    round_<k>/train/                run_preference's output: model/, metrics.jsonl, checkpoints/
    round_<k>/eval/                 lab/ (results.json, responses.jsonl) and scores.json
    summary.json                    every round's figures, proxy against gold, where and why it stopped

Every stage is written through ``store.run_stage``: a finished one is skipped, an interrupted one redone (training
resumes from its last checkpoint). The over-optimisation check (``overopt``) runs after every round's evaluation.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path

import yaml

from mmalign.config import to_dict, to_yaml
from mmalign.construct import filters
from mmalign.construct.label import label_pairs
from mmalign.construct.sample import sample_finished
from mmalign.construct.scorers import Scores, make_scorer
from mmalign.construct.scorers.choice import build_scorer
from mmalign.data.preference import read_preference_file, write_preference_file
from mmalign.errors import MMAlignError
from mmalign.eval.lab import generate
from mmalign.eval.runner import evaluate_folder
from mmalign.iterate.config import IterateConfig
from mmalign.iterate.overopt import best_round, overoptimised, parted
from mmalign.iterate.store import read_json, run_stage, write_json, write_text
from mmalign.models.load import ModelConfig, load_model
from mmalign.train.online import online_samples
from mmalign.train.preference import run_preference
from mmalign.world.tasks import prompt_example

STAGES = ("samples", "pairs", "filtered", "train", "eval")
EVAL_TASKS = ["caption", "exist"]
RESUMABLE = {"rounds", "overopt"}      # settings a rerun into the same folder may change


class Run:
    """One iterative run: its settings, its folder, its scorer (built once, when first needed)."""

    def __init__(self, cfg: IterateConfig):
        self.cfg, self.out, self._scorer = cfg, Path(cfg.out), None

    def scorer(self):
        if self._scorer is None:
            self._scorer = build_scorer(self.cfg.scorer)
        return self._scorer

    def load(self, path: str):
        """A model to sample from, loaded as the preference settings load the policy (dtype, attention)."""
        m = self.cfg.preference.model
        return load_model(ModelConfig(path=path, dtype=m.dtype, attn_implementation=m.attn_implementation,
                                      trust_remote_code=m.trust_remote_code))

    def dir(self, k: int) -> Path:
        return self.out / f"round_{k}"

    def policy(self, k: int) -> str:
        """The model round ``k`` starts from (and samples with)."""
        return self.cfg.model if k == 1 else str(self.dir(k - 1) / "train" / "model")

    def prompts(self, k: int) -> list[dict]:
        first = (k - 1) * self.cfg.prompts
        return [prompt_example(self.cfg.world, "train", self.cfg.tasks, first + i) for i in range(self.cfg.prompts)]


# ---- the stages: fn(run, k, tmp) writes the stage's files into tmp -------------------------------------------------

def sample(run: Run, k: int, tmp: Path) -> None:
    cfg = run.cfg
    model, processor = run.load(run.policy(k))
    sampling = dataclasses.replace(cfg.sampling, seed=cfg.sampling.seed + 1000 * cfg.seed + k)
    examples = run.prompts(k)
    finished, counts = sample_finished(model, processor, examples, sampling, desc=f"round {k}: sample")
    with (tmp / "samples.jsonl").open("w") as f:
        for ex, texts in zip(examples, finished):
            f.write(json.dumps({"id": ex["id"], "task": ex["task"], "texts": texts}) + "\n")
    write_json(tmp / "report.json", {**counts, "prompts": len(examples), "policy": run.policy(k),
                                     "sampling": dataclasses.asdict(sampling)})


def label(run: Run, k: int, tmp: Path) -> None:
    rows = [json.loads(line) for line in (run.dir(k) / "samples" / "samples.jsonl").read_text().splitlines()]
    examples = run.prompts(k)
    if [r["id"] for r in rows] != [e["id"] for e in examples]:
        raise MMAlignError(f"{run.dir(k) / 'samples'}: the samples are not of this round's prompts")
    records, report = label_pairs(examples, [r["texts"] for r in rows], run.scorer(), min_margin=run.cfg.min_margin,
                                  mode=run.cfg.mode, desc=f"round {k}: label")
    write_preference_file(records, tmp / "pairs.jsonl")
    scored = sum(len(r["texts"]) for r in rows) - report["duplicate_samples"]
    write_json(tmp / "report.json", {**report, "scored_samples": scored, "scorer": run.cfg.scorer.name})


def filter_pairs(run: Run, k: int, tmp: Path) -> None:
    records = read_preference_file(run.dir(k) / "pairs" / "pairs.jsonl")
    report = {"labelled": len(records)}
    records, report["dedupe"] = filters.dedupe(records)
    if run.cfg.drop_coverage_from is not None and k >= run.cfg.drop_coverage_from:
        records, report["coverage_only"] = filters.drop_coverage_only(records)
    if run.cfg.length_balance:
        records, report["length_balance"] = filters.length_balance(records, seed=run.cfg.seed + k)
    if len(records) < 2:
        raise MMAlignError(f"round {k}: {len(records)} pairs left after filtering ({report}); nothing to train on")
    write_preference_file(records, tmp / "pairs.jsonl")
    write_json(tmp / "report.json", {**report, "pairs": len(records)})


def train(run: Run, k: int, tmp: Path) -> None:
    run_preference(round_preference(run, k, tmp))


def round_preference(run: Run, k: int, out: Path):
    """Round ``k``'s ``PreferenceConfig``: the ``preference`` settings with this round's world, model, pairs,
    reference, output folder and seed, and the run's scorer, prompt mix and sampling for any online pairs
    (evaluation is the round's own stage)."""
    cfg = run.cfg
    p = copy.deepcopy(cfg.preference)
    p.world = cfg.world
    pairs = run.dir(k) / "filtered"
    n = read_json(pairs / "report.json")["pairs"]
    p.model.path = run.policy(k)
    p.online.scorer, p.online.tasks, p.online.sampling = cfg.scorer, cfg.tasks, cfg.sampling   # one of each per run
    p.reference_model = cfg.model if cfg.reference == "fixed" and k > 1 else ""
    p.data.source = str(pairs / "pairs.jsonl")
    p.data.val_size = max(1, min(p.data.val_size, n // 8))     # held-out pairs of this round's data
    p.train.output_dir, p.train.resume = str(out), "latest"
    if cfg.epochs:
        p.train.max_steps = math.ceil(cfg.epochs * (n - p.data.val_size) / (p.train.batch_size * p.train.grad_accum))
    p.train.seed += 100 * cfg.seed + k
    p.eval_scenes = 0
    return p


def evaluate(run: Run, k: int, tmp: Path) -> None:
    model_dir = run.cfg.model if k == 0 else str(run.dir(k) / "train" / "model")
    figures = evaluate_folder(model_dir, run.cfg.world, tmp / "lab", tasks=EVAL_TASKS, n_scenes=run.cfg.eval.n_scenes,
                              n_per_task=run.cfg.eval.reward_pairs)
    write_json(tmp / "scores.json", {"model": model_dir, "lab": figures, **proxy_and_gold(run, model_dir)})


def proxy_and_gold(run: Run, model_dir: str) -> dict:
    """The scorer's and the oracle's mean score of the model's greedy answers to held-out val prompts, overall
    and per task (the scorer's NaNs, e.g. judge replies that did not parse, left out of its mean)."""
    model, processor = run.load(model_dir)
    examples = [prompt_example(run.cfg.world, "val", run.cfg.tasks, i) for i in range(run.cfg.eval.proxy_prompts)]
    answers = generate(model, processor, examples, desc=None)
    oracle = make_scorer("oracle")
    proxy = [Scores.of(run.scorer()(e, [a])).values[0] for e, a in zip(examples, answers)]
    gold = [oracle(e, [a]).values[0] for e, a in zip(examples, answers)]

    def mean(values: list[float]) -> float:
        kept = [v for v in values if not math.isnan(v)]
        return sum(kept) / len(kept) if kept else math.nan

    tasks = sorted({e["task"] for e in examples})
    by_task = {t: {"proxy": mean([p for p, e in zip(proxy, examples) if e["task"] == t]),
                   "gold": mean([g for g, e in zip(gold, examples) if e["task"] == t])} for t in tasks}
    return {"proxy": mean(proxy), "gold": mean(gold), "by_task": by_task, "prompts": len(examples),
            "gold_values": gold}     # per prompt: the over-optimisation check's paired standard error


ROUND_STAGES = {"samples": sample, "pairs": label, "filtered": filter_pairs, "train": train, "eval": evaluate}


# ---- the driver ---------------------------------------------------------------------------------------------------

def run_iterate(cfg: IterateConfig) -> dict:
    run = Run(cfg)
    _check_same_run(run.out, cfg)
    write_text(run.out / "config.yaml", to_yaml(cfg))
    run_stage(run.dir(0) / "eval", lambda tmp: ROUND_STAGES["eval"](run, 0, tmp))
    history, stopped = [_scores(run, 0)], None
    for k in range(1, cfg.rounds + 1):
        for name in STAGES:
            run_stage(run.dir(k) / name, lambda tmp, name=name: ROUND_STAGES[name](run, k, tmp),
                      resume_partial=name == "train")
        history.append(_scores(run, k))
        stopped = stopped or overoptimised(history, cfg.overopt)   # the first time the curves parted
        if stopped and cfg.overopt.stop:
            break
    summary = summarise(run, history, stopped)
    write_json(run.out / "summary.json", summary)
    return {k: summary[k] for k in ("out", "rounds_run", "stopped", "best_round", "best_model")}


def _scores(run: Run, k: int) -> dict:
    return read_json(run.dir(k) / "eval" / "scores.json")


def summarise(run: Run, history: list[dict], stopped: str | None) -> dict:
    rounds = []
    for k, scores in enumerate(history):
        row = {"round": k, "model": scores["model"], "proxy": scores["proxy"], "gold": scores["gold"],
               "lab": scores["lab"]}
        if k:
            row["pairs"] = read_json(run.dir(k) / "filtered" / "report.json")["pairs"]
            row["scored_samples"] = read_json(run.dir(k) / "pairs" / "report.json")["scored_samples"]
            row["train"] = _last_train_metrics(run.dir(k) / "train")
            row["online"] = online_samples(run.dir(k) / "train" / "online.jsonl")
        rounds.append(row)
    best = best_round(history)
    return {"out": str(run.out), "scorer": run.cfg.scorer.name, "reference": run.cfg.reference,
            "rounds_run": len(history) - 1, "parted": parted(history, run.cfg.overopt),
            "stopped": stopped if run.cfg.overopt.stop else None, "overoptimised": stopped,
            "best_round": best, "best_model": history[best]["model"], "rounds": rounds}


def _last_train_metrics(folder: Path) -> dict:
    lines = [json.loads(line) for line in (folder / "metrics.jsonl").read_text().splitlines() if line.strip()]
    logged = [r for r in lines if "loss" in r]
    return logged[-1] if logged else {}


def _with_defaults(saved: dict, default) -> dict:
    """``saved`` with each setting it lacks taken from the dataclass ``default``, section by section (a dict-valued
    setting such as ``tasks`` is kept whole: its entries are data, not settings)."""
    out = dict(saved)
    for f in dataclasses.fields(default):
        value = getattr(default, f.name)
        if f.name not in out:
            out[f.name] = to_dict(value)
        elif dataclasses.is_dataclass(value) and isinstance(out[f.name], dict):
            out[f.name] = _with_defaults(out[f.name], value)
    return out


def _check_same_run(out: Path, cfg: IterateConfig) -> None:
    """A folder holds one run: a rerun may add rounds or change the over-optimisation stop, nothing else."""
    saved_file = out / "config.yaml"
    if not saved_file.exists():
        return
    # a setting added after the run was saved, at any depth, had its default then
    saved, now = _with_defaults(yaml.safe_load(saved_file.read_text()), IterateConfig()), to_dict(cfg)
    same = lambda a, b: json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True, default=str)
    differ = [k for k in now if k not in RESUMABLE and not same(saved[k], now[k])]
    if differ:
        raise MMAlignError(f"{out} holds an iterative run with other settings ({', '.join(differ)} differ): "
                           "use another out folder, or the same settings to resume it")

"""Evaluating a model on the lab: held-out clean examples of every task, batched greedy generation, scoring
against exact ground truth, plus the prior-specific hallucination figures (partner rates).

The partner rate of a pair (a, b) is the fraction of eligible scenes (exactly one of a, b present) whose caption
names the absent one: the direct trace of the co-occurrence prior and the caption noise.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mmalign.models.generate import sample_responses
from mmalign.world.scenes import WorldConfig
from mmalign.world.scoring import aggregate, mentioned_objects, score_example
from mmalign.world.tasks import EXIST_SPLITS, TASKS, make_example

MAX_NEW_TOKENS = {"caption": 40, "ground": 12, "safety": 12}   # others answer in a word or two


@dataclass
class LabEvalConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: str = ""                      # a model folder
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    split: str = "test"
    n_scenes: int = 600                  # scenes for captioning and POPE (3 splits x yes/no per scene)
    n_per_task: int = 200                # examples for each other task
    batch_size: int = 64
    out: str = "runs/eval"
    reward_model: str = ""               # a reward-model folder for the reward-models dimension; "" scores the
                                         # evaluated model's own likelihood


def lab_examples(cfg: LabEvalConfig) -> list[dict]:
    examples = []
    for task in cfg.tasks:
        if task == "exist":
            examples += [make_example(cfg.world, task, cfg.split, i, pope_split=s, label=label)
                         for i in range(cfg.n_scenes) for s in EXIST_SPLITS for label in ("yes", "no")]
        else:
            n = cfg.n_scenes if task == "caption" else cfg.n_per_task
            examples += [make_example(cfg.world, task, cfg.split, i) for i in range(n)]
    return examples


def generate(model, processor, examples: list[dict], batch_size: int = 64, desc: str = "generate") -> list[str]:
    """Greedy responses; each task stops at its answer length (``MAX_NEW_TOKENS``)."""
    samples = sample_responses(model, processor, examples, temperature=0.0, batch_size=batch_size, desc=desc,
                               max_new_tokens=lambda e: MAX_NEW_TOKENS.get(e["task"], 4))
    return [texts[0] for texts in samples.texts]


def partner_rates(world: WorldConfig, examples: list[dict], responses: list[str]) -> dict:
    rates = {}
    for a, b in world.pairs:
        eligible = hit = 0
        for ex, resp in zip(examples, responses):
            if ex["task"] != "caption":
                continue
            present = set(ex["meta"]["objects"])
            if (a in present) == (b in present):
                continue
            eligible += 1
            hit += (b if a in present else a) in mentioned_objects(resp)
        rates[f"{a}/{b}"] = {"rate": hit / max(1, eligible), "n": eligible}
    return rates


def evaluate_lab(model, processor, cfg: LabEvalConfig) -> tuple[dict, list[dict]]:
    """Returns (metrics by task, per-example records with prompt, response, answer and score)."""
    examples = lab_examples(cfg)
    responses = generate(model, processor, examples, cfg.batch_size, desc="lab eval")
    metrics = aggregate(examples, responses)
    if "caption" in cfg.tasks:
        metrics["caption"]["partner_rate"] = partner_rates(cfg.world, examples, responses)
    records = [{"id": e["id"], "task": e["task"], "prompt": e["prompt"], "response": r, "answer": e["answer"],
                **score_example(e, r)} for e, r in zip(examples, responses)]
    return metrics, records


def write_results(metrics: dict, records: list[dict], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(metrics, indent=2))
    with (out / "responses.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return out / "results.json"

"""Evaluating a model on the lab: held-out clean examples of every task, batched greedy generation, scoring
against exact ground truth, plus the prior-specific hallucination figures (partner rates).

The partner rate of a pair (a, b) is the fraction of eligible scenes (exactly one of a, b present) whose caption
names the absent one: the direct trace of the co-occurrence prior and the caption noise.

Generations are appended to ``out/generations.jsonl`` as each chunk finishes (``eval.run.cache.ResponseCache``),
so an interrupted evaluation resumes with the missing examples only. A file whose header (``VERSION``, the model's
fingerprint, the world and the example settings) differs holds another run's generations: it is replaced, never
mixed (lab generations are cheap to redo; reruns into one folder are common).
"""
from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mmalign.errors import MMAlignError
from mmalign.models.generate import sample_responses
from mmalign.world.scenes import WorldConfig
from mmalign.world.scoring import aggregate, mentioned_objects, score_example
from mmalign.world.tasks import EXIST_SPLITS, TASKS, make_example

MAX_NEW_TOKENS = {"caption": 40, "ground": 12, "safety": 12}   # others answer in a word or two
VERSION = "1"       # of the lab tasks' examples, prompts and scoring: bump on any change, so numbers never mix
CHUNK = 512         # examples generated between two appends to the generations file


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
    responses = resumable_generate(model, processor, examples, cfg)
    metrics = aggregate(examples, responses)
    if "caption" in cfg.tasks:
        metrics["caption"]["partner_rate"] = partner_rates(cfg.world, examples, responses)
    records = [{"id": e["id"], "task": e["task"], "prompt": e["prompt"], "response": r, "answer": e["answer"],
                **score_example(e, r)} for e, r in zip(examples, responses)]
    return metrics, records


def resumable_generate(model, processor, examples: list[dict], cfg: LabEvalConfig) -> list[str]:
    """``generate`` in chunks of ``CHUNK`` examples, each appended to ``cfg.out/generations.jsonl`` (module
    docstring); examples already there are not generated again."""
    from dataclasses import asdict

    from tqdm.auto import tqdm

    from mmalign.eval.run.cache import ResponseCache, model_fingerprint
    header = {"lab": VERSION, "model_fingerprint": model_fingerprint(cfg.model) if cfg.model else None,
              "world": asdict(cfg.world), "tasks": list(cfg.tasks), "split": cfg.split, "n_scenes": cfg.n_scenes,
              "n_per_task": cfg.n_per_task}
    header = json.loads(json.dumps(header))     # as it reads back from the file (tuples become lists)
    path, ids = Path(cfg.out) / "generations.jsonl", [e["id"] for e in examples]
    try:
        cache = ResponseCache(path, header, ids)
    except MMAlignError as e:
        print(f"lab eval: starting over ({e})", file=sys.stderr)
        path.unlink()
        cache = ResponseCache(path, header, ids)
    todo = [i for i in range(len(examples)) if i not in cache.done]
    with tqdm(total=len(examples), initial=len(examples) - len(todo), desc="lab eval", unit="ex") as bar:
        for start in range(0, len(todo), CHUNK):
            chunk = todo[start:start + CHUNK]
            texts = generate(model, processor, [examples[i] for i in chunk], cfg.batch_size, desc=None)
            cache.add([(i, examples[i]["id"], t) for i, t in zip(chunk, texts, strict=True)])
            bar.update(len(chunk))
    return [cache.done[i] for i in range(len(examples))]


def write_results(metrics: dict, records: list[dict], out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(metrics, indent=2))
    with (out / "responses.jsonl").open("w") as f:
        for r in records:
            f.write(json.dumps(r) + "\n")
    return out / "results.json"

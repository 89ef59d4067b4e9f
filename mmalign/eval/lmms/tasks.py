"""``mmalign lmms-tasks``: the lab tasks as an lmms-eval task folder (``lmms-eval --include_path DIR``).

The folder holds, for each lab task, ``mmalign_lab_<task>.yaml`` (tag ``mmalign_lab``), its examples in
``data/<task>.jsonl`` with their images as PNGs in ``data/images/``, and one ``utils.py`` whose names the YAMLs
reference with ``!function``; ``utils.py`` only binds ``hooks``' functions, so prompts, scoring and aggregation
are ours and nothing is written twice. The examples are exactly those ``mmalign eval`` scores for the same
world and sizes, and the generation budgets are its budgets (``eval.lab.MAX_NEW_TOKENS``), so a model gets the
same numbers through both front-ends. lmms-eval reads ``data_files`` as given, so the YAMLs carry absolute
paths: export again after moving the folder.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from mmalign.eval.lab import MAX_NEW_TOKENS, LabEvalConfig, lab_examples
from mmalign.eval.lmms.hooks import LAB_METRICS, metric_name
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import TASKS

VERSION = "1.0"      # of the export: bump when a prompt, a budget or a metric changes
TAG = "mmalign_lab"


@dataclass
class LmmsTasksConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    out: str = "runs/lmms_tasks"
    split: str = "test"
    n_scenes: int = 600                  # as LabEvalConfig: captioning and POPE scenes
    n_per_task: int = 200                # as LabEvalConfig: examples of every other task


def export_tasks(cfg: LmmsTasksConfig) -> dict:
    """Writes the task folder (see the module docstring); returns its path and the task names."""
    out = Path(cfg.out).resolve()
    (out / "data" / "images").mkdir(parents=True, exist_ok=True)
    lab = LabEvalConfig(world=cfg.world, tasks=list(TASKS), split=cfg.split, n_scenes=cfg.n_scenes,
                        n_per_task=cfg.n_per_task)
    docs: dict[str, list[dict]] = {}
    for n, ex in enumerate(lab_examples(lab)):
        docs.setdefault(ex["task"], []).append(_doc(ex, n, out))
    for task, rows in docs.items():
        (out / "data" / f"{task}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        (out / f"{TAG}_{task}.yaml").write_text(task_yaml(task, out / "data" / f"{task}.jsonl", cfg))
    (out / "utils.py").write_text(utils_source(list(docs)))
    return {"folder": str(out), "tasks": [f"{TAG}_{t}" for t in docs], "tag": TAG}


def _doc(ex: dict, n: int, out: Path) -> dict:
    # numbered, not named by id: POPE's yes and no questions on one scene share an id
    names = [f"data/images/{n:06d}-{k}.png" for k in range(len(ex["images"]))]
    for image, name in zip(ex["images"], names):
        image.save(out / name)
    example = {k: v for k, v in ex.items() if k != "images"}
    return {"id": ex["id"], "task": ex["task"], "prompt": ex["prompt"], "images": names, "answer": str(ex["answer"]),
            "example": json.dumps(example)}


def task_yaml(task: str, data: Path, cfg: LmmsTasksConfig) -> str:
    metrics = "".join(f"  - metric: {metric_name(g, k)}\n    aggregation: !function utils.{task}_{metric_name(g, k)}\n"
                      f"    higher_is_better: {str(up).lower()}\n" for g, k, up in LAB_METRICS[task])
    return (f"task: {TAG}_{task}\ntag: {TAG}\ndataset_path: json\n"
            f"dataset_kwargs:\n  data_files:\n    test: {json.dumps(str(data))}\ntest_split: test\n"
            "output_type: generate_until\ndoc_to_visual: !function utils.doc_to_visual\n"
            "doc_to_text: !function utils.doc_to_text\ndoc_to_target: answer\n"
            f"generation_kwargs:\n  max_new_tokens: {MAX_NEW_TOKENS.get(task, 4)}\n  temperature: 0\n"
            "  do_sample: false\n  until: []\nprocess_results: !function utils.process_results\n"
            f"metric_list:\n{metrics}metadata:\n  version: {VERSION}\n  world_seed: {cfg.world.seed}\n"
            f"  split: {cfg.split}\n")


def utils_source(tasks: list[str]) -> str:
    lines = ['"""lmms-eval hooks of the mmalign lab tasks, written by `mmalign lmms-tasks`: names bound to',
             'mmalign.eval.lmms.hooks, where the logic is."""', "from pathlib import Path", "",
             "from mmalign.eval.lmms import hooks", "",
             "doc_to_text = hooks.doc_to_text",
             "doc_to_visual = hooks.visuals(Path(__file__).resolve().parent)",
             "process_results = hooks.process_results"]
    lines += [f"{t}_{metric_name(g, k)} = hooks.aggregation({g!r}, {k!r})" for t in tasks for g, k, _ in LAB_METRICS[t]]
    return "\n".join(lines) + "\n"

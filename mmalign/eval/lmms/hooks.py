"""The functions the exported lmms-eval task files call (``!function utils.<name>``; ``utils.py`` binds them).

A doc is one lab example as ``tasks.export_tasks`` wrote it: ``{"id", "task", "prompt", "images": [PNG paths
relative to the export folder], "answer", "example": the example without its images, as JSON}`` (JSON text, so
that the examples of every task fit one Arrow schema). ``process_results`` hands each metric the example and the
response; each metric's aggregation scores them all with the lab's own ``world.scoring.aggregate``, the function
``mmalign eval`` uses, so both front-ends give the same numbers for the same responses.
"""
from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path

from PIL import Image

from mmalign.world.scoring import aggregate
from mmalign.world.tasks import EXIST_SPLITS, TASKS

_POPE = (("accuracy", True), ("precision", True), ("recall", True), ("f1", True))
# task -> [(group in world.scoring.aggregate's output, key, higher is better)]
LAB_METRICS: dict[str, list[tuple[str, str, bool]]] = {
    task: [(task, "accuracy", True)] for task in TASKS
} | {
    "caption": [("caption", "chair_i", False), ("caption", "chair_s", False), ("caption", "recall", True)],
    "exist": [(f"exist/{split}", key, up) for split in EXIST_SPLITS for key, up in _POPE],
    "ground": [("ground", "miou", True), ("ground", "acc@0.5", True)],
    "safety": [("safety", "refusal_rate", True), ("safety", "over_refusal_rate", False), ("safety", "accuracy", True)],
}


def metric_name(group: str, key: str) -> str:
    """The lmms-eval metric name: ``random_f1`` for POPE's ``exist/random`` f1, ``acc_0_5`` for ``acc@0.5``."""
    split = group.split("/", 1)[1] + "_" if "/" in group else ""
    return re.sub(r"[^0-9A-Za-z]+", "_", split + key)


def doc_to_text(doc: dict, lmms_eval_specific_kwargs: dict | None = None) -> str:
    return doc["prompt"]


def visuals(root: Path) -> Callable[[dict], list[Image.Image]]:
    """``doc_to_visual`` for docs whose image paths are relative to ``root``."""
    def doc_to_visual(doc: dict) -> list[Image.Image]:
        return [Image.open(root / p).convert("RGB") for p in doc["images"]]
    return doc_to_visual


def process_results(doc: dict, results: list[str]) -> dict:
    payload = {"example": json.loads(doc["example"]), "response": results[0]}
    return {metric_name(group, key): payload for group, key, _ in LAB_METRICS[doc["task"]]}


def aggregation(group: str, key: str) -> Callable[[list[dict]], float]:
    """The aggregation of one metric: ``world.scoring.aggregate`` over every (example, response) of the task."""
    def aggregate_metric(payloads: list[dict]) -> float:
        metrics = aggregate([p["example"] for p in payloads], [p["response"] for p in payloads])
        return metrics[group][key]
    aggregate_metric.__name__ = metric_name(group, key)
    return aggregate_metric

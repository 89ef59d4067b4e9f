"""The survey's six evaluation dimensions on the lab, and the three lab figures that need more than one
response's score: conversation, human preference and reward-model accuracy.

| dimension | lab figures (each in [0, 1]; "1 -" where lower is better) |
|---|---|
| general knowledge | counting, colour, spatial, visual arithmetic, multi-image, video accuracy; grounding mIoU |
| hallucination | 1 - CHAIR-i; POPE random / popular / adversarial accuracy |
| safety | refusal rate on unsafe requests; 1 - over-refusal rate on benign ones |
| conversation | LLaVA-Bench relative score / 100: lab-judge ratings of the responses over those of the reference answers |
| reward models | pairwise accuracy of the model's length-normalised log-likelihood on held-out preference pairs |
| human preference | MM-AlignBench win rate against a human annotator of the world (the noisy training caption) |

A dimension's score is the mean of its figures that were measured.
"""
from __future__ import annotations

import numpy as np
import torch

from mmalign.data.collate import collate_preference
from mmalign.eval import lab_judge
from mmalign.eval.official.alignbench import verdict_metrics
from mmalign.eval.official.llava_wild import relative_score
from mmalign.models.logprobs import preference_logps
from mmalign.world import language as L
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import Scene, WorldConfig
from mmalign.world.tasks import noisy_caption_objects

# dimension -> (task, metric, higher is better)
DIMENSIONS = {
    "general knowledge": [("count", "accuracy", True), ("colour", "accuracy", True), ("spatial", "accuracy", True),
                          ("arithmetic", "accuracy", True), ("multi_image", "accuracy", True),
                          ("video", "accuracy", True), ("ground", "miou", True)],
    "hallucination": [("caption", "chair_i", False), ("exist/random", "accuracy", True),
                      ("exist/popular", "accuracy", True), ("exist/adversarial", "accuracy", True)],
    "safety": [("safety", "refusal_rate", True), ("safety", "over_refusal_rate", False)],
    "conversation": [("conversation", "relative_fraction", True)],
    "reward models": [("reward", "accuracy", True)],
    "human preference": [("preference", "win_rate", True)],
}
CONVERSATION_TASKS = ("caption", "count", "colour", "spatial", "arithmetic")   # LLaVA-Bench: detail, conv, complex
ANNOTATOR_STREAM = 7000   # the rng stream of the human annotator's captions, apart from every task's


def dimension_scores(metrics: dict) -> dict[str, float]:
    out = {}
    for dim, figures in DIMENSIONS.items():
        vals = [metrics[t][k] if up else 1 - metrics[t][k] for t, k, up in figures
                if t in metrics and k in metrics[t]]
        if vals:
            out[dim] = sum(vals) / len(vals)
    return out


def conversation(examples: list[dict], responses: list[str]) -> dict:
    """LLaVA-Bench-in-the-Wild's relative score with the lab judge, over the conversation-like tasks."""
    rows = [{"reference_score": lab_judge.rate(e, e["answer"]), "model_score": lab_judge.rate(e, r)}
            for e, r in zip(examples, responses) if e["task"] in CONVERSATION_TASKS]
    if not rows:
        return {}
    out = relative_score(rows)
    return out | {"relative_fraction": out["relative"] / 100, "judge": "lab ground truth"}


def annotator_caption(world: WorldConfig, example: dict) -> str:
    """What a human annotator of the world writes for the example's scene: a training-style caption with the
    world's annotation noise (absent partners written in, colour slips), seeded by the example."""
    scene = Scene.from_dict(example["scenes"][0])
    index = int(example["id"].split("-")[1])
    objs, _ = noisy_caption_objects(world, scene, np.random.default_rng([world.seed, ANNOTATOR_STREAM, index]))
    return L.caption_text(objs)


def human_preference(world: WorldConfig, examples: list[dict], responses: list[str]) -> dict:
    """MM-AlignBench's win rate of the captions against the human annotator, judged by the lab judge."""
    rows = [{"verdict": lab_judge.verdict(e, r, annotator_caption(world, e))}
            for e, r in zip(examples, responses) if e["task"] == "caption"]
    return verdict_metrics(rows) | {"opponent": "world annotator", "judge": "lab ground truth"} if rows else {}


@torch.no_grad()
def reward_accuracy(model, processor, world: WorldConfig, n: int, batch_size: int = 32) -> dict:
    """The model as a reward model: right iff its mean log-prob per token of the chosen answer beats the
    rejected one's (a tie is wrong), on ``n`` lab pairs of the test split. ``accuracy_sum`` uses summed
    log-probs instead, which favours the shorter answer of the pair."""
    model.eval()
    pairs = lab_pairs(world, LabPairsConfig(n=n, split="test"), for_eval=True)
    right = right_sum = 0
    device = next(model.parameters()).device
    for start in range(0, n, batch_size):
        batch = collate_preference(processor, pairs[start:start + batch_size]).to(device)
        out = preference_logps(model, batch)
        mean_w, mean_l = out.chosen.sum / out.chosen.count, out.rejected.sum / out.rejected.count
        right += int((mean_w > mean_l).sum())
        right_sum += int((out.chosen.sum > out.rejected.sum).sum())
    return {"accuracy": right / n, "accuracy_sum": right_sum / n, "n": n, "reward": "mean log-prob"}

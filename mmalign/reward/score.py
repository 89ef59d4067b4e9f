"""Scoring with a saved reward model: ``(images, prompt, response) -> float``, batched, and pairwise accuracy.

``load_reward_model(folder)`` returns a ``RewardScorer``. It plugs into the rest of mmalign as is:

* self-annotation: ``make_scorer("reward_model", reward=scorer)`` (``construct/scorers/external.py`` calls
  ``reward(images, prompt, response)``);
* online RL: ``reward_model_reward(scorer.completions)`` (``rl/rewards.py`` calls
  ``scorer(completions, examples)``, each example a dict with ``images`` and ``prompt``);
* evaluation: ``scorer.pairwise_accuracy(records)`` on held-out preference pairs.

Every row is built by ``build_inputs`` exactly as in training (``prompt + response + end-of-turn``), so a response
is scored in the layout the head was trained on.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from mmalign.data.collate import view_examples
from mmalign.data.preference import PreferenceRecord
from mmalign.models.inputs import build_inputs
from mmalign.reward.model import RewardModel


def pairwise_accuracy(score: Callable[[list[dict]], Sequence[float]], records: Sequence[PreferenceRecord],
                      batch_size: int = 16) -> dict:
    """The share of pairs with ``r(y_w) > r(y_l)``; a tie counts as wrong (a constant reward scores 0, not 0.5).

    ``score(examples) -> rewards`` scores ``{"images", "prompt", "response"}`` dicts. Returns ``accuracy``,
    ``ties``, ``margin`` (the mean of ``r_w - r_l``) and ``n``.
    """
    right = ties = 0
    margin = 0.0
    for start in range(0, len(records), batch_size):
        chunk = records[start:start + batch_size]
        rows = view_examples(chunk, "chosen") + view_examples(chunk, "rejected")
        rewards = torch.as_tensor(list(score(rows)), dtype=torch.float64)
        diff = rewards[:len(chunk)] - rewards[len(chunk):]
        right += int((diff > 0).sum())
        ties += int((diff == 0).sum())
        margin += float(diff.sum())
    n = len(records)
    return {"accuracy": right / n, "ties": ties, "margin": margin / n, "n": n}


class RewardScorer:
    """A reward model in eval mode with its processor; ``__call__(images, prompt, response) -> float``."""

    def __init__(self, model: RewardModel, processor, *, batch_size: int = 16, max_length: int | None = None):
        self.model, self.processor = model.eval(), processor
        self.batch_size, self.max_length = batch_size, max_length

    def __call__(self, images: Sequence, prompt: str | list[dict], response: str) -> float:
        return self.batch([{"images": list(images), "prompt": prompt, "response": response}])[0]

    @torch.no_grad()
    def batch(self, examples: Sequence[dict]) -> list[float]:
        """One reward per ``{"images", "prompt", "response"}`` dict, in order, ``batch_size`` rows per forward."""
        device = next(self.model.parameters()).device
        out: list[float] = []
        for start in range(0, len(examples), self.batch_size):
            chunk = list(examples[start:start + self.batch_size])
            inputs = {k: v.to(device) for k, v in build_inputs(self.processor, chunk, max_length=self.max_length).items()}
            out += self.model(**inputs).float().cpu().tolist()
        return out

    def completions(self, completions: Sequence[str], examples: Sequence[dict]) -> list[float]:
        """The RL form: completion i scored after example i's images and prompt."""
        return self.batch([{"images": e["images"], "prompt": e["prompt"], "response": c}
                           for c, e in zip(completions, examples, strict=True)])

    def pairwise_accuracy(self, records: Sequence[PreferenceRecord]) -> dict:
        return pairwise_accuracy(self.batch, records, self.batch_size)


def load_reward_model(folder: str | Path, *, dtype: str = "float32", device: str | None = None,
                      batch_size: int = 16, max_length: int | None = None) -> RewardScorer:
    """The reward model saved in ``folder`` as a scorer, on ``device`` (default: CUDA when there is one)."""
    model, processor = RewardModel.from_pretrained(folder, dtype=dtype)
    model.to(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    return RewardScorer(model, processor, batch_size=batch_size, max_length=max_length)

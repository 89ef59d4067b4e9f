"""What a benchmark run asks of the model for one batch: greedy responses, or for the reward benchmarks the
rewards of each item's two candidate responses.

Examples are ``{"images": [PIL...], "prompt": str}`` (``models.inputs.build_inputs``). The default reward is the
model's mean log-likelihood per response token (end-of-turn token included), as the lab's reward-model
dimension scores it (``eval.dimensions.reward_accuracy``): the mean rather than the sum, which favours the
shorter response.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from PIL import Image

from mmalign.data.collate import collate_preference
from mmalign.data.preference import PreferenceRecord
from mmalign.models.generate import sample_responses
from mmalign.models.logprobs import preference_logps

LIKELIHOOD_REWARD_ID = "mean log-likelihood per token (the evaluated model)"


@dataclass(frozen=True)
class Reward:
    """A reward function ``fn(images, prompt, response) -> float`` and the id recorded with its numbers."""
    fn: Callable[[list[Image.Image], str, str], float]
    reward_id: str


def generate(model, processor, examples: list[dict], *, max_new_tokens: int, batch_size: int) -> list[str]:
    """Greedy responses, in the examples' order."""
    samples = sample_responses(model, processor, examples, temperature=0.0, max_new_tokens=max_new_tokens,
                               batch_size=batch_size, desc=None)
    return [texts[0] for texts in samples.texts]


@torch.no_grad()
def likelihood_rewards(model, processor, examples: list[dict], candidates: list[list[str]]) -> list[list[float]]:
    """``[r(a), r(b)]`` per example: the mean log-prob per token of each candidate, one forward for the batch."""
    records = [PreferenceRecord(id=str(k), prompt=e["prompt"], images=e["images"], chosen=a, rejected=b)
               for k, (e, (a, b)) in enumerate(zip(examples, candidates, strict=True))]
    out = preference_logps(model, collate_preference(processor, records).to(model.device))
    first, second = out.chosen.sum / out.chosen.count, out.rejected.sum / out.rejected.count
    return [[float(a), float(b)] for a, b in zip(first, second)]


def custom_rewards(reward: Reward, examples: list[dict], candidates: list[list[str]]) -> list[list[float]]:
    return [[float(reward.fn(e["images"], e["prompt"], c)) for c in pair]
            for e, pair in zip(examples, candidates, strict=True)]

"""Running statistics a loss reads as a data input; the trainer owns and updates them."""
from __future__ import annotations

import torch


class RunningMean:
    """Cumulative (not exponential) mean of every value seen so far, detached: BCO's reward baseline ``delta``.

    The same mean as TRL's ``RunningMoments`` (a Welford update, ``mean += (batch_mean - mean) * n / (count + n)``),
    without its variance. TRL reduces each batch across ranks before updating; under data parallelism the trainer
    gathers the values first. Starts at 0.0, so the first step sees ``delta = 0``.
    """

    def __init__(self) -> None:
        self.mean = 0.0
        self.count = 0

    def update(self, values: torch.Tensor) -> None:
        """Fold a batch of values (any shape) into the mean."""
        n = values.numel()
        self.count += n
        self.mean += (values.detach().double().mean().item() - self.mean) * n / self.count

    def state_dict(self) -> dict[str, float | int]:
        return {"mean": self.mean, "count": self.count}

    def load_state_dict(self, state: dict[str, float | int]) -> None:
        self.mean, self.count = float(state["mean"]), int(state["count"])

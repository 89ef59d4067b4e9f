"""Index -> item over a fixed list, one shuffled pass per epoch: resuming at any index restarts exactly."""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np

T = TypeVar("T")


def shuffled(items: Sequence[T], seed: int) -> Callable[[int], T]:
    perms: dict[int, np.ndarray] = {}

    def get(i: int) -> T:
        epoch, j = divmod(i, len(items))
        if epoch not in perms:
            perms[epoch] = np.random.default_rng([seed, epoch]).permutation(len(items))
        return items[int(perms[epoch][j])]
    return get

"""Masked reductions by hand: padding never counts, Bessel's correction where asked, last-token placement."""
from __future__ import annotations

import math

import torch
from torch.testing import assert_close

from mmalign.rl.masked import (
    at_last_token,
    last_token_index,
    masked_mean,
    masked_var,
    masked_whiten,
)

from ._helpers import lengths_mask, t

X = t([1, 2, 3], [5, 100, 100])                                          # 100s are padding
MASK = lengths_mask([3, 1], 3)


def test_masked_mean_and_var():
    # values 1, 2, 3, 5: mean 2.75; squared deviations 3.0625 + 0.5625 + 0.0625 + 5.0625 = 8.75
    assert masked_mean(X, MASK).item() == 2.75
    assert_close(masked_mean(X, MASK, dim=1), t(2, 5))
    assert_close(masked_var(X, MASK), torch.tensor(8.75 / 3, dtype=torch.float64))
    assert_close(masked_var(X, MASK, unbiased=False), torch.tensor(8.75 / 4, dtype=torch.float64))
    assert masked_mean(X, torch.zeros_like(MASK), dim=1).tolist() == [0, 0]   # an empty row gives 0, not NaN


def test_masked_whiten():
    dev = t([-1.75, -0.75, 0.25], [2.25, 0, 0])
    assert_close(masked_whiten(X, MASK), dev / math.sqrt(8.75 / 3 + 1e-8))
    assert_close(masked_whiten(X, MASK, unbiased=False), dev / math.sqrt(8.75 / 4 + 1e-8))


def test_last_token_placement():
    mask = lengths_mask([3, 1, 2], 4)
    assert last_token_index(mask).tolist() == [2, 0, 1]
    assert_close(at_last_token(t(1, 2, 3), mask), t([0, 0, 1, 0], [2, 0, 0, 0], [0, 3, 0, 0]))

"""Reward shaping: DAPO's overlong window edges (and TRL's own function), the dynamic-sampling mask, Fact-RLHF's
shaped scores and token rewards by hand."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from mmalign.rl.shaping import (
    dynamic_sampling_mask,
    fact_rlhf_rewards,
    fact_rlhf_scores,
    overlong_penalty,
)

from ._helpers import lengths_mask, t


def test_overlong_window_edges():
    # L_max = 100, L_buf = 20: free up to 80, linear to -1 at 100, -1 beyond
    # 79, 80 -> 0; 81 -> -1/20 = -0.05; 90 -> -0.5; 100 -> -1; 101, 150 -> -1
    lengths = torch.tensor([79, 80, 81, 90, 100, 101, 150])
    expected = t(0, 0, -0.05, -0.5, -1, -1, -1).float()
    assert_close(overlong_penalty(lengths, max_length=100, buffer=20), expected)
    # penalty 0.5 scales the window and the floor
    assert_close(overlong_penalty(lengths, max_length=100, buffer=20, penalty=0.5), expected * 0.5)


def test_overlong_matches_trl():
    from trl.rewards import get_soft_overlong_punishment

    lengths = torch.arange(0, 131)
    trl = get_soft_overlong_punishment(max_completion_len=100, soft_punish_cache=20)([[0] * n for n in lengths])
    assert_close(overlong_penalty(lengths, max_length=100, buffer=20), torch.tensor(trl, dtype=torch.float32))


def test_dynamic_sampling_keeps_only_groups_with_variance():
    # G = 3: all right, mixed, all wrong, all 0.1
    scores = t(1, 1, 1, 0, 1, 0, 0, 0, 0, 0.1, 0.1, 0.1)
    keep = dynamic_sampling_mask(scores, group_size=3)
    assert keep.tolist() == [False] * 3 + [True] * 3 + [False] * 6
    # verl's np.std(...) > 0 would keep the constant 0.1 group: its floating-point std is 1.4e-17
    assert np.std([0.1, 0.1, 0.1]) > 0


def test_dynamic_sampling_needs_whole_groups():
    with pytest.raises(ValueError):
        dynamic_sampling_mask(t(1, 0, 1), group_size=2)


def test_fact_rlhf_scores_by_hand():
    # row 0: 1.0 + -10 * (448 / 896) + 2 * 1 + 0 (stopped)            = 1 - 5 + 2     = -2.0
    # row 1: 0.5 + -10 * (896 / 896) + 2 * -0.5 + -8 (no stop token)   = 0.5 - 10 - 1 - 8 = -18.5
    scores = fact_rlhf_scores(t(1.0, 0.5), torch.tensor([448, 896]), torch.tensor([True, False]), t(1.0, -0.5))
    assert_close(scores, t(-2.0, -18.5))
    # length_multiplier 0.5 halves the length term, reward_bias shifts both: row 0 = 1 - 2.5 + 2 + 0.25
    scores = fact_rlhf_scores(t(1.0, 0.5), torch.tensor([448, 896]), torch.tensor([True, False]), t(1.0, -0.5),
                              length_multiplier=t(0.5, 1.0), reward_bias=0.25)
    assert_close(scores, t(0.75, -18.25))


def test_fact_rlhf_token_rewards_by_hand():
    # R = (-2, 3) at the last token, -0.1 * kl per token, everything times 10
    # row 0 (3 tokens): 10 * (-0.01, -0.02, -2 - 0.03) = (-0.1, -0.2, -20.3); row 1 (1 token): 10 * (3 - 0.05) = 29.5
    mask = lengths_mask([3, 1], 3)
    kl = t([0.1, 0.2, 0.3], [0.5, 4.0, 4.0])
    assert_close(fact_rlhf_rewards(t(-2, 3), mask, kl=kl), t([-0.1, -0.2, -20.3], [29.5, 0.0, 0.0]))

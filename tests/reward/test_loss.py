"""The Bradley–Terry loss against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from mmalign.reward.loss import bradley_terry

# r_w - r_l = 1 (pair 0) and 0 (pair 1, a tie); -log sigma(d) = log(1 + e^-d)
CHOSEN, REJECTED = [1.0, 0.5], [0.0, 0.5]


def test_plain_loss_and_metrics():
    out = bradley_terry(torch.tensor(CHOSEN), torch.tensor(REJECTED))
    assert out.loss.tolist() == pytest.approx([math.log(1 + math.exp(-1)), math.log(2)], abs=1e-6)
    assert out.loss.tolist() == pytest.approx([0.3132617, 0.6931472], abs=1e-6)
    assert out.metrics["accuracy"].tolist() == [1.0, 0.0]          # a tie is wrong
    assert out.metrics["margin"].tolist() == [1.0, 0.0]
    assert out.metrics["reward/chosen"].tolist() == CHOSEN
    assert out.metrics["reward/rejected"].tolist() == REJECTED


def test_margin_shifts_the_logit():
    # pair 0: d - m = 1 - 0.5 = 0.5 -> log(1 + e^-0.5) = 0.4740770; pair 1: 0 - 2 = -2 -> log(1 + e^2) = 2.1269280
    out = bradley_terry(torch.tensor(CHOSEN), torch.tensor(REJECTED), margin=torch.tensor([0.5, 2.0]))
    assert out.loss.tolist() == pytest.approx([0.4740770, 2.1269280], abs=1e-6)
    assert out.metrics["margin"].tolist() == [1.0, 0.0]           # the logged margin is r_w - r_l, no m


def test_gradient_by_hand():
    # d/dr_w [-log sigma(d - m)] = -sigma(-(d - m)) = -sigma(-0.5) = -0.3775407; d/dr_l is its negative
    chosen = torch.tensor([1.0], requires_grad=True)
    rejected = torch.tensor([0.0], requires_grad=True)
    bradley_terry(chosen, rejected, margin=torch.tensor([0.5])).loss.sum().backward()
    assert chosen.grad.item() == pytest.approx(-0.3775407, abs=1e-6)
    assert rejected.grad.item() == pytest.approx(0.3775407, abs=1e-6)


def test_centering_adds_c_times_squared_sum():
    # + 0.1 * (r_w + r_l)^2: pair 0 (1 + 0)^2 = 1 -> +0.1; pair 1 (0.5 + 0.5)^2 = 1 -> +0.1
    plain = bradley_terry(torch.tensor(CHOSEN), torch.tensor(REJECTED)).loss
    centred = bradley_terry(torch.tensor(CHOSEN), torch.tensor(REJECTED), center_coef=0.1).loss
    assert (centred - plain).tolist() == pytest.approx([0.1, 0.1], abs=1e-6)
    # a pure shift of both rewards leaves plain BT unchanged but not the centred loss
    shifted = bradley_terry(torch.tensor(CHOSEN) + 3, torch.tensor(REJECTED) + 3)
    assert shifted.loss.tolist() == pytest.approx(plain.tolist(), abs=1e-6)
    assert (bradley_terry(torch.tensor(CHOSEN) + 3, torch.tensor(REJECTED) + 3, center_coef=0.1).loss
            > centred + 1).all()

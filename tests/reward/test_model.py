"""Where the reward reads, on tiny LLaVA, Qwen2-VL and Idefics3: the last attended token, whatever the padding."""
from __future__ import annotations

import pytest
import torch

from mmalign.models import FAMILIES, build_inputs
from mmalign.reward.model import RewardModel, last_token_index


def reward_model(tiny_families, name: str) -> tuple[RewardModel, object]:
    backbone, processor = tiny_families[name]
    return RewardModel(backbone, seed=0).eval(), processor


def inputs_of(processor, examples) -> dict:
    return {k: v for k, v in build_inputs(processor, examples).items() if k != "labels"}


def left_padded(inputs: dict) -> dict:
    """The same rows with their padding moved from the right to the left (token tensors rolled row by row)."""
    out = dict(inputs)
    lengths = inputs["attention_mask"].sum(1)
    width = inputs["attention_mask"].shape[1]
    for key in ("input_ids", "attention_mask", "mm_token_type_ids"):
        if key in inputs:
            out[key] = torch.stack([row.roll(int(width - n)) for row, n in zip(inputs[key], lengths)])
    return out


def test_last_token_index():
    mask = torch.tensor([[1, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0], [1, 1, 1, 1]])
    assert last_token_index(mask).tolist() == [1, 3, 0, 3]


@pytest.mark.parametrize("name", list(FAMILIES))
@torch.no_grad()
def test_batch_single_and_padding_side_agree(tiny_families, examples, name):
    model, processor = reward_model(tiny_families, name)
    inputs = inputs_of(processor, examples)
    assert (inputs["attention_mask"] == 0).any()                       # the batch really is padded
    batched = model(**inputs)
    single = torch.cat([model(**inputs_of(processor, [ex])) for ex in examples])
    left = model(**left_padded(inputs))
    assert batched.shape == (len(examples),)
    torch.testing.assert_close(batched, single, atol=1e-5, rtol=0)
    torch.testing.assert_close(batched, left, atol=1e-5, rtol=0)
    assert batched.unique().numel() == len(examples)                   # not a constant


@pytest.mark.parametrize("name", list(FAMILIES))
@torch.no_grad()
def test_reads_the_end_of_turn_token(tiny_families, examples, name):
    model, processor = reward_model(tiny_families, name)
    inputs = inputs_of(processor, examples)
    short = int(inputs["attention_mask"].sum(1).argmin())             # the most padded row
    end = int(inputs["attention_mask"][short].sum()) - 1
    assert inputs["input_ids"][short, end] == processor.tokenizer.eos_token_id   # the end-of-turn token
    base = model(**inputs)

    after = dict(inputs, input_ids=inputs["input_ids"].clone())
    after["input_ids"][short, end + 1:] = processor.tokenizer.convert_tokens_to_ids("star")  # padding -> a word
    torch.testing.assert_close(model(**after), base, atol=0, rtol=0)

    at = dict(inputs, input_ids=inputs["input_ids"].clone())
    at["input_ids"][short, end] = processor.tokenizer.convert_tokens_to_ids("star")          # the read token
    changed = model(**at)
    assert abs(float(changed[short] - base[short])) > 1e-4
    others = [i for i in range(len(examples)) if i != short]
    torch.testing.assert_close(changed[others], base[others], atol=0, rtol=0)


def test_head_is_trainable_and_backbone_gets_gradient(tiny_families, examples):
    model, processor = reward_model(tiny_families, "llava")
    model.train()
    model(**inputs_of(processor, examples)).sum().backward()
    assert model.head.weight.grad is not None and model.head.weight.grad.abs().sum() > 0
    decoder_grads = [p.grad for n, p in model.named_parameters() if "language_model" in n and p.grad is not None]
    assert decoder_grads and any(g.abs().sum() > 0 for g in decoder_grads)
    model.zero_grad()

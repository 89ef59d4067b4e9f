"""Each tiny family trains (finite loss and gradients) and generates from ``build_inputs`` output."""
from __future__ import annotations

import torch

from mmalign.models import build_inputs, build_llava
from mmalign.models.tiny import mrope_section


def test_forward_backward(family, examples):
    _, model, processor = family
    model.zero_grad()
    loss = model(**build_inputs(processor, examples)).loss
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    model.zero_grad()


def test_generate(family, examples):
    _, model, processor = family
    batch = build_inputs(processor, examples, for_generation=True)
    out = model.generate(**batch, max_new_tokens=4, do_sample=False)
    assert out.shape[0] == 2 and 0 < out.shape[1] - batch["input_ids"].shape[1] <= 4


def test_builder_overrides_and_seed():
    model, _ = build_llava(vision={"hidden_size": 48, "num_hidden_layers": 3}, text={"hidden_size": 96}, seed=1)
    assert model.config.vision_config.hidden_size == 48 and model.config.vision_config.intermediate_size == 192
    assert model.config.text_config.hidden_size == 96 and model.config.vision_config.num_hidden_layers == 3
    again, _ = build_llava(vision={"hidden_size": 48, "num_hidden_layers": 3}, text={"hidden_size": 96}, seed=1)
    assert all(torch.equal(a, b) for a, b in zip(model.state_dict().values(), again.state_dict().values()))


def test_mrope_section_sums_to_half_head_dim():
    assert mrope_section(16) == [2, 3, 3]
    assert mrope_section(128) == [16, 24, 24]
    assert all(sum(mrope_section(d)) == d // 2 for d in (8, 16, 32, 64, 96))

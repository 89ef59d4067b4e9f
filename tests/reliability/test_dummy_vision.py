"""The dummy vision forward for text-only ranks (ZeRO-3, FSDP): its term is zero, leaves the text loss and its
gradients unchanged, and runs every vision module an image batch runs, so every rank calls the same modules; the
SFT, preference and RL losses add it to a text-only micro-batch."""
from __future__ import annotations

import torch
from PIL import Image

from mmalign.config import load_config
from mmalign.data.preference import PreferenceRecord
from mmalign.losses import PREFERENCE_LOSSES
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, projector, vision_tower
from mmalign.models.logprobs import weighted_nll
from mmalign.rl.config import RLConfig
from mmalign.rl.rollout import Rollout
from mmalign.rl.trainer import Experience, MicroBatch, RLStep
from mmalign.train.guards import blank_image_inputs, dummy_vision_loss
from mmalign.train.loop import TrainConfig
from mmalign.train.preference import PreferenceConfig, Step, make_reference
from mmalign.train.sft import sft_loss
from mmalign.world.model import build_lab_model

from .conftest import TINY


IMAGE = [{"images": [Image.new("RGB", (64, 64), "red")], "prompt": "Say hello.", "response": "hello ."}]


def vision_names(model) -> set[str]:
    return {n for n, p in model.named_parameters()
            if any(p is q for q in [*vision_tower(model).parameters(), *projector(model).parameters()])}


def loss_and_grads(model, examples, processor, dummy: bool) -> tuple[torch.Tensor, dict]:
    model.zero_grad()
    inputs = dict(build_inputs(processor, examples))
    labels = inputs.pop("labels")
    loss = weighted_nll(model(**inputs).logits, labels)
    if dummy:
        loss = loss + dummy_vision_loss(model, blank_image_inputs(processor))
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}


def test_dummy_vision_forward_is_zero_and_touches_what_an_image_batch_touches():
    torch.manual_seed(0)
    model, processor = build_lab_model(TINY, 64)
    text = [{"images": [], "prompt": "Say hello.", "response": "hello ."}]
    vision = vision_names(model)

    plain, plain_grads = loss_and_grads(model, text, processor, dummy=False)
    padded, padded_grads = loss_and_grads(model, text, processor, dummy=True)
    _, image_grads = loss_and_grads(model, IMAGE, processor, dummy=False)

    assert vision and not vision & plain_grads.keys()                    # text alone leaves the tower out
    assert torch.equal(plain, padded)                                     # the term adds exactly zero
    assert vision & image_grads.keys() <= padded_grads.keys()             # ... yet runs every module images run
    assert all(torch.count_nonzero(padded_grads[n]) == 0 for n in vision & padded_grads.keys())
    assert all(torch.equal(plain_grads[n], padded_grads[n]) for n in plain_grads)


def assert_zero_vision_grads(model, processor, loss: torch.Tensor) -> None:
    """``loss`` leaves a gradient on every vision parameter an image batch trains (so ZeRO-3 and FSDP ran the
    same modules on every process), and the gradient is zeros. (The tower's last layer is not trained: the lab
    reads the layer before it, as LLaVA does.)"""
    model.zero_grad()
    loss.backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    _, image_grads = loss_and_grads(model, IMAGE, processor, dummy=False)
    trained = vision_names(model) & image_grads.keys()
    assert trained and all(n in grads and torch.count_nonzero(grads[n]) == 0 for n in trained)


def test_a_text_only_sft_micro_batch_touches_the_vision_tower():
    model, processor = build_lab_model(TINY, 64)
    batch = dict(build_inputs(processor, [{"images": [], "prompt": "Say hello.", "response": "hello ."}]))
    batch["weights"] = torch.ones(1)
    loss, _ = sft_loss(model, batch, blank=blank_image_inputs(processor))
    assert_zero_vision_grads(model, processor, loss)


def test_a_text_only_preference_micro_batch_touches_the_vision_tower(tmp_path):
    model, processor = build_lab_model(TINY, 64)
    records = [PreferenceRecord(id=str(i), prompt="Is there a cat?", images=[], chosen="no .", rejected="yes .")
               for i in range(2)]
    cfg = PreferenceConfig(model=ModelConfig(path="(in memory)"), ref_cache=False,
                           train=TrainConfig(output_dir=str(tmp_path), batch_size=2))
    spec = PREFERENCE_LOSSES[cfg.loss.name]
    partners = {r.id: records[(i + 1) % 2] for i, r in enumerate(records)}
    step = Step(cfg, spec, processor, make_reference(cfg, model, processor, spec, records, partners), partners)
    loss, _ = step(model, records)
    assert_zero_vision_grads(model, processor, loss)


def test_a_text_only_rl_micro_batch_touches_the_vision_tower():
    model, processor = build_lab_model(TINY, 64)
    ids = torch.tensor([processor.tokenizer.encode("no .", add_special_tokens=False)] * 2)
    mask = torch.ones(ids.shape, dtype=torch.bool)
    rollout = Rollout([{"images": [], "prompt": "Is there a cat?"}] * 2, ["no ."] * 2, ids, mask,
                      torch.ones(2, dtype=torch.bool), torch.zeros(ids.shape), group_size=2)
    advantages = torch.tensor([[1.0], [-1.0]]).expand(ids.shape)
    exp = Experience(0, rollout, advantages, torch.zeros(ids.shape), None, None, {})
    loss, _ = RLStep(load_config(RLConfig, None, []), processor)(model, MicroBatch(exp, [0, 1], float(mask.sum())))
    assert_zero_vision_grads(model, processor, loss)

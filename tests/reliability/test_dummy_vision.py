"""The dummy vision forward for text-only ranks (ZeRO-3, FSDP, DDP): its term is zero, leaves the text loss and
its gradients unchanged, and runs every vision module an image batch runs, so every rank calls the same modules."""
from __future__ import annotations

import torch
from PIL import Image

from mmalign.models.inputs import build_inputs
from mmalign.models.load import projector, vision_tower
from mmalign.models.logprobs import weighted_nll
from mmalign.train.guards import blank_image_inputs, dummy_vision_loss
from mmalign.world.model import build_lab_model

from .conftest import TINY


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
    image = [{"images": [Image.new("RGB", (64, 64), "red")], "prompt": "Say hello.", "response": "hello ."}]
    vision = {n for n, p in model.named_parameters()
              if any(p is q for q in [*vision_tower(model).parameters(), *projector(model).parameters()])}

    plain, plain_grads = loss_and_grads(model, text, processor, dummy=False)
    padded, padded_grads = loss_and_grads(model, text, processor, dummy=True)
    _, image_grads = loss_and_grads(model, image, processor, dummy=False)

    assert vision and not vision & plain_grads.keys()                    # text alone leaves the tower out
    assert torch.equal(plain, padded)                                     # the term adds exactly zero
    assert vision & image_grads.keys() <= padded_grads.keys()             # ... yet runs every module images run
    assert all(torch.count_nonzero(padded_grads[n]) == 0 for n in vision & padded_grads.keys())
    assert all(torch.equal(plain_grads[n], padded_grads[n]) for n in plain_grads)

"""Guards of the training loop: against non-finite losses and gradients, and against ranks that run different
modules (the dummy vision forward that keeps text-only ranks in step under ZeRO-3 and FSDP)."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import torch
from accelerate.utils import extract_model_from_parallel
from PIL import Image

from mmalign.errors import MMAlignError
from mmalign.models.load import _base


class NonFiniteError(MMAlignError):
    """A non-finite loss or gradient norm stopped the run."""


@runtime_checkable
class Stateful(Protocol):
    """State that must survive a resume (accelerate checkpoints any object with these two methods)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class NonFiniteGuard:
    """Skips up to ``budget`` optimiser steps whose loss or gradient norm is not finite, then stops the run."""
    budget: int = 0
    skipped: int = 0

    @staticmethod
    def problem(bad_losses: int, grad_norm: float | None) -> str | None:
        """What is wrong with a step that had ``bad_losses`` non-finite micro-batch losses (over all processes)
        and gradient norm ``grad_norm`` (None: not checked), or None."""
        if bad_losses:
            return f"the loss is not finite in {bad_losses} micro-batch(es)"
        if grad_norm is not None and not math.isfinite(grad_norm):
            return f"the gradient norm is {grad_norm}"
        return None

    def allow_skip(self) -> bool:
        """Whether one more bad step may be skipped (and counts it)."""
        if self.skipped >= self.budget:
            return False
        self.skipped += 1
        return True


def blank_image_inputs(processor, size: int = 32) -> dict[str, torch.Tensor] | None:
    """The image processor's inputs for one black ``size`` x ``size`` image (resized as the processor does); None
    for a processor without an image processor."""
    if getattr(processor, "image_processor", None) is None:
        return None
    return dict(processor.image_processor(images=[Image.new("RGB", (size, size))], return_tensors="pt"))


def dummy_vision_loss(model: torch.nn.Module, image_inputs: dict[str, torch.Tensor]) -> torch.Tensor:
    """``0 x`` the image features (vision tower + projector) of ``image_inputs``: add it to the loss of a batch
    without images.

    Under ZeRO-3 (and FSDP) every rank gathers a module's sharded parameters when the module runs, and the
    gathers are collective: a rank whose micro-batch is text-only would skip the vision tower while the others
    wait inside it, and the run hangs. This term makes that rank run the same modules; its value and gradients
    are zero, so the step is unchanged, and every vision parameter gets a (zero) gradient. Call it after the
    batch's own forward (FSDP2 keeps the root's parameters gathered from its forward until backward)."""
    net = _base(extract_model_from_parallel(model))
    device = next(net.parameters()).device
    features = net.get_image_features(**{k: v.to(device) for k, v in image_inputs.items()})
    return 0.0 * sum(t.float().sum() for t in _tensors(features))


def has_images(inputs) -> bool:
    """Whether a model's inputs hold images or video frames (every family names them ``pixel_values*``)."""
    return any(k.startswith("pixel_values") for k in inputs)


def text_only_term(model: torch.nn.Module, blank: dict[str, torch.Tensor] | None, images: bool,
                   inner: torch.nn.Module | None = None) -> torch.Tensor | float:
    """What a trainer adds to the loss of a micro-batch: ``dummy_vision_loss`` on ``blank``
    (``blank_image_inputs``) when the micro-batch has no ``images``, so every process runs the vision tower; 0
    when it has images, when there is no ``blank`` (a processor without images), and under DDP. DDP needs no
    help (the loop's ``find_unused_parameters`` lets a process leave the tower out) and cannot take it: a
    parameter used outside DDP's forward is marked ready twice, and backward fails. ``model`` is what the loop
    hands the loss; ``inner`` the MLLM inside it when that is not ``model`` itself (PPO's policy and value head)."""
    if images or blank is None or isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return 0.0
    return dummy_vision_loss(inner if inner is not None else model, blank)


def _tensors(value) -> list[torch.Tensor]:
    """The tensors inside a model output, tuple or list (families return features in all three shapes)."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):  # ModelOutput is a dict of its non-None fields
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in _tensors(v)]
    return []

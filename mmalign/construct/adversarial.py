"""AdPO's adversarial images (Liu et al. 2025, ALGORITHMS.md §4.8): projected gradient descent in pixel space on
the policy's own log-likelihood of the chosen answer.

The gradient has to reach the pixels, so the processor's pixel pipeline is rebuilt in torch: rescale (x 1/255)
and normalise ((v - mean) / std), then the family's layout (a reshape for LLaVA and Idefics3, Qwen2-VL's patch
flattening). Resizing is not rebuilt: the image must already be at the model's input size, where the processor's
resize leaves it unchanged. Every call checks the torch path against the processor's own ``pixel_values`` for the
clean image, so a processor that does anything else fails loudly instead of attacking the wrong input.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from transformers import BatchFeature, ProcessorMixin

from mmalign.construct.corrupt import cache_key, cached_image
from mmalign.errors import MMAlignError
from mmalign.models.inputs import build_inputs
from mmalign.models.logprobs import token_logps


def adversarial_image(model, processor: ProcessorMixin, image: Image.Image, prompt: str | list[dict], chosen: str, *,
                      eps: float = 8 / 255, step_size: float = 2 / 255, steps: int = 10, seed: int = 0,
                      cache_dir: str | Path | None = None) -> Image.Image:
    """``I_adv`` for AdPO: ``pgd``'s last iterate as an 8-bit image, rounded to the nearest level and clipped
    back into the ball (radius ``floor(255 eps)`` levels), so it never leaves it; with ``eps`` and
    ``step_size`` multiples of 1/255 the rounding changes nothing. Defaults are Madry's CIFAR-10 settings
    (AdPO's are unverified). With ``cache_dir`` the image is kept there as a PNG keyed by the image, prompt,
    answer, attack settings, seed and the model's weights, and read back on the next call."""
    if cache_dir is not None:
        from mmalign.train.reference import model_fingerprint
        params = {"prompt": prompt, "chosen": chosen, "eps": eps, "step_size": step_size, "steps": steps,
                  "seed": seed, "model": model_fingerprint(model)}
        return cached_image(Path(cache_dir) / f"{cache_key(image, 'adversarial', params)}.png",
                            lambda: adversarial_image(model, processor, image, prompt, chosen, eps=eps,
                                                      step_size=step_size, steps=steps, seed=seed))
    x = pgd(model, processor, image, prompt, chosen, eps=eps, step_size=step_size, steps=steps, seed=seed)
    radius = math.floor(eps * 255 + 1e-6)
    levels = torch.round(unit_pixels(image) * 255)
    out = torch.minimum(torch.maximum(torch.round(x.cpu() * 255), levels - radius), levels + radius).clamp(0, 255)
    return Image.fromarray(out.permute(1, 2, 0).numpy().astype(np.uint8))


def pgd(model, processor: ProcessorMixin, image: Image.Image, prompt: str | list[dict], chosen: str, *,
        eps: float, step_size: float, steps: int, seed: int) -> torch.Tensor:
    """Projected gradient descent (Madry et al. 2018) that *lowers* ``S(y_w) = log pi(chosen | I, prompt)``.

    ``x_0`` = the image in [0, 1]; start at ``x_0 + U(-eps, eps)`` (drawn from ``seed``), then ``steps`` times
    ``x <- clip(Proj_{||x - x_0||_inf <= eps}(x - step_size * sign(grad_x S)), 0, 1)``. Returns the last
    iterate, (3, H, W) in [0, 1], on the model's device. The model is used in its current mode (eval: no
    dropout).
    """
    batch = build_inputs(processor, [{"images": [image], "prompt": prompt, "response": chosen}]).to(model.device)
    x0 = unit_pixels(image).to(model.device)
    check_pixel_path(processor, x0, batch)
    noise = torch.rand(x0.shape, generator=torch.Generator().manual_seed(seed))  # on the CPU: any device, same start
    x = (x0 + (2 * noise.to(x0.device) - 1) * eps).clamp(0, 1)
    with torch.enable_grad():
        for _ in range(steps):
            x.requires_grad_(True)
            (grad,) = torch.autograd.grad(chosen_logp(model, processor, batch, x), x)
            x = torch.minimum(torch.maximum(x.detach() - step_size * grad.sign(), x0 - eps), x0 + eps).clamp(0, 1)
    return x


def chosen_logp(model, processor: ProcessorMixin, batch: BatchFeature, x: torch.Tensor) -> torch.Tensor:
    """``S(y_w)`` with the batch's image replaced by ``x`` (3, H, W) in [0, 1], differentiable in ``x``."""
    inputs = {k: v for k, v in batch.items() if k != "labels"}
    inputs["pixel_values"] = model_pixels(processor, x, batch)
    logp, _ = token_logps(model(**inputs).logits, batch["labels"])
    return logp.sum()


def model_pixels(processor: ProcessorMixin, x: torch.Tensor, batch: BatchFeature) -> torch.Tensor:
    """The processor's ``pixel_values`` for one image ``x`` (3, H, W) in [0, 1] already at the model's size,
    computed in torch; ``batch`` (the processor's output for that image) gives the layout."""
    ip = processor.image_processor
    v = x * 255
    if ip.do_rescale:
        v = v * ip.rescale_factor
    if ip.do_normalize:
        mean, std = (torch.tensor(m, device=v.device).view(-1, 1, 1) for m in (ip.image_mean, ip.image_std))
        v = (v - mean) / std
    if "image_grid_thw" in batch:
        return qwen2_vl_patches(v, ip.patch_size, ip.merge_size, ip.temporal_patch_size)
    return v.reshape(batch["pixel_values"].shape)


def qwen2_vl_patches(v: torch.Tensor, patch: int, merge: int, temporal: int) -> torch.Tensor:
    """Qwen2-VL's flat patches (its image processor's ``patchify``): merge-window order, each patch repeated
    ``temporal`` times (a still image is a one-step video), shape (h/p * w/p, C * temporal * p * p)."""
    c, h, w = v.shape
    p = v.reshape(c, h // patch // merge, merge, patch, w // patch // merge, merge, patch).permute(1, 4, 2, 5, 0, 3, 6)
    p = p.unsqueeze(5).expand(*p.shape[:5], temporal, *p.shape[5:])
    return p.reshape((h // patch) * (w // patch), c * temporal * patch * patch)


def check_pixel_path(processor: ProcessorMixin, x0: torch.Tensor, batch: BatchFeature) -> None:
    expected = batch["pixel_values"]
    try:
        ours = model_pixels(processor, x0, batch)
    except RuntimeError:  # a reshape that cannot fit: the processor resized or cropped the image
        ours = None
    if ours is None or ours.shape != expected.shape or not torch.allclose(ours, expected, atol=1e-4):
        raise MMAlignError(f"the processor resizes, crops or pads this {x0.shape[2]}x{x0.shape[1]} image; "
                           "adversarial_image needs it at the model's input size")


def unit_pixels(image: Image.Image) -> torch.Tensor:
    """An RGB image as a float tensor (3, H, W) in [0, 1]."""
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.float32) / 255).permute(2, 0, 1).contiguous()

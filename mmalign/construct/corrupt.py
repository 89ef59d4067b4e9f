"""Image corruptions that make the I' of image-side preference losses (mDPO, POVID, Image-DPO).

Each corruption is deterministic in its ``seed``, so the policy and the reference see the same I'
(mDPO's released code re-samples the crop on every forward; see ALGORITHMS.md §4.3).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from PIL import Image


def sample_crop_box(width: int, height: int, scale: Sequence[float], ratio: Sequence[float],
                    rng: np.random.Generator) -> tuple[int, int, int, int]:
    """torchvision's ``RandomResizedCrop.get_params``, drawn from ``rng``: a box ``(left, top, right, bottom)``
    of ``scale`` times the image area and aspect ratio in ``ratio`` (log-uniform); after 10 failed tries, the
    central crop of the image clipped to ``ratio``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target_area = area * rng.uniform(scale[0], scale[1])
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target_area * aspect)))
        h = int(round(math.sqrt(target_area / aspect)))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, int(round(width / min(ratio)))
    elif in_ratio > max(ratio):
        w, h = int(round(height * max(ratio))), height
    else:
        w, h = width, height
    top, left = (height - h) // 2, (width - w) // 2
    return left, top, left + w, top + h


def random_resized_crop(image: Image.Image, *, scale: Sequence[float] = (0.01, 0.2),
                        ratio: Sequence[float] = (3 / 4, 4 / 3), seed) -> Image.Image:
    """mDPO's corrupted image (Wang et al. 2024, "mDPO: Conditional Preference Optimization for Multimodal
    Large Language Models"): a random crop keeping 1-20% of the area, resized back to the original size
    (bilinear), as ``torchvision.transforms.v2.RandomResizedCrop(size, scale=(0.01, 0.2))`` does.
    ``seed`` is anything ``numpy.random.default_rng`` accepts; the same seed gives the same crop."""
    box = sample_crop_box(image.width, image.height, scale, ratio, np.random.default_rng(seed))
    # crop first, as torchvision does: resize(box=...) would let the filter read pixels outside the box
    return image.crop(box).resize(image.size, Image.Resampling.BILINEAR)

"""Image corruptions that make the I' of image-side preference losses (mDPO, POVID, Image-DPO).

``corrupt(image, kind, seed, **params)`` is the one entry point; ``CORRUPTIONS`` lists the kinds. Each is
deterministic in its ``seed``, so the policy and the reference see the same I' (mDPO's released code re-samples
the crop on every forward; see ALGORITHMS.md §4.3), and an optional on-disk cache keeps one I' per example.
Adversarial images need the model and live in ``adversarial.py``.
"""
from __future__ import annotations

import hashlib
import inspect
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter


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
        w = round(math.sqrt(target_area * aspect))
        h = round(math.sqrt(target_area / aspect))
        if 0 < w <= width and 0 < h <= height:
            top = int(rng.integers(0, height - h + 1))
            left = int(rng.integers(0, width - w + 1))
            return left, top, left + w, top + h
    in_ratio = width / height
    if in_ratio < min(ratio):
        w, h = width, round(width / min(ratio))
    elif in_ratio > max(ratio):
        w, h = round(height * max(ratio)), height
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


def gaussian_blur(image: Image.Image, *, sigma: float = 4.0) -> Image.Image:
    """Image-DPO's blurred I' (Luo et al. 2025, "Probing Visual Language Priors in VLMs"): the image convolved
    with a Gaussian of standard deviation ``sigma`` pixels (PIL's three-pass box approximation of it).
    Deterministic: it draws nothing."""
    return image.filter(ImageFilter.GaussianBlur(radius=sigma))


def pixelate(image: Image.Image, *, factor: int = 8) -> Image.Image:
    """Image-DPO's pixelated I': the mean over ``factor`` x ``factor`` blocks (box downsampling), each block
    shown as one flat colour at the original size (nearest upsampling). Deterministic."""
    small = (max(1, round(image.width / factor)), max(1, round(image.height / factor)))
    return image.resize(small, Image.Resampling.BOX).resize(image.size, Image.Resampling.NEAREST)


def gaussian_noise(image: Image.Image, *, std: float = 0.1, seed) -> Image.Image:
    """Additive Gaussian pixel noise (POVID's noisy-image negative, Zhou et al. 2024, in its simplest form):
    ``x' = clip(x + std * eps, 0, 1)``, ``eps ~ N(0, I)``, pixels scaled to [0, 1], rounded back to 8 bits."""
    x = np.asarray(image, dtype=np.float64) / 255
    eps = np.random.default_rng(seed).standard_normal(x.shape)
    return _from_unit(x + std * eps)


SCHEDULES = ("sigmoid", "linear", "cosine")


def alpha_bar(schedule: str = "sigmoid", T: int = 1000) -> np.ndarray:
    """``abar_t = prod_{i<=t} (1 - beta_i)`` for t = 0..T (``abar_0 = 1``: step 0 is the clean image).

    sigmoid: ``beta = sigmoid(linspace(-6, 6, T)) * (5e-3 - 1e-5) + 1e-5`` (VCD, used by POVID);
    linear: ``beta = linspace(1e-4, 0.02, T)`` (DDPM, Ho et al. 2020);
    cosine: ``abar_t = f(t) / f(0)``, ``f(t) = cos((t/T + 0.008) / 1.008 * pi/2)^2``, betas capped at 0.999
    (Nichol & Dhariwal 2021).
    """
    if schedule == "sigmoid":
        betas = 1 / (1 + np.exp(-np.linspace(-6, 6, T))) * (5e-3 - 1e-5) + 1e-5
    elif schedule == "linear":
        betas = np.linspace(1e-4, 0.02, T)
    elif schedule == "cosine":
        f = np.cos((np.arange(T + 1) / T + 0.008) / 1.008 * np.pi / 2) ** 2
        betas = np.minimum(1 - f[1:] / f[:-1], 0.999)
    else:
        raise ValueError(f"unknown noise schedule {schedule!r} (known: {', '.join(SCHEDULES)})")
    return np.concatenate([[1.0], np.cumprod(1 - betas)])


def diffusion_noise(image: Image.Image, *, t: int = 500, T: int = 1000, schedule: str = "sigmoid",
                    seed) -> Image.Image:
    """POVID's noisy image (Zhou et al. 2024; CHiP's visual term): the forward diffusion process at step ``t``,
    ``x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps``, ``eps ~ N(0, I)``, on pixels scaled to [-1, 1], then
    clipped and rounded back to 8 bits. POVID uses t=500 of the sigmoid schedule. Two deviations from the VCD
    code POVID copies: that code noises the CLIP-normalised tensor (here pixels, so the result is an image),
    and indexes ``abar`` from 0 (its step 500 is t=501 here, so that t=0 is the clean image)."""
    if not 0 <= t <= T:
        raise ValueError(f"diffusion step t={t} is outside 0..{T}")
    abar = alpha_bar(schedule, T)[t]
    x0 = np.asarray(image, dtype=np.float64) / 127.5 - 1
    eps = np.random.default_rng(seed).standard_normal(x0.shape)
    return _from_unit((np.sqrt(abar) * x0 + np.sqrt(1 - abar) * eps + 1) / 2)


def irrelevant_image(image: Image.Image, *, pool: Sequence[Image.Image], seed) -> Image.Image:
    """An unrelated image as I' (the "random irrelevant image" of ALGORITHMS.md §9; MIA-DPO's distractors):
    one drawn uniformly from ``pool`` among those whose pixels differ from ``image``, resized to its size
    (bilinear) so I and I' give the same number of image tokens."""
    own = image_hash(image)
    candidates = [p for p in pool if image_hash(p) != own]
    if not candidates:
        raise ValueError("the pool holds no image other than the one to replace")
    pick = candidates[int(np.random.default_rng(seed).integers(len(candidates)))]
    return pick.convert(image.mode).resize(image.size, Image.Resampling.BILINEAR)


# every kind: (image, **params) -> image, with ``seed`` where the kind draws anything
CORRUPTIONS = {
    "crop": random_resized_crop, "blur": gaussian_blur, "pixelate": pixelate, "gaussian_noise": gaussian_noise,
    "diffusion_noise": diffusion_noise, "irrelevant": irrelevant_image,
}


def corrupt(image: Image.Image, kind: str, seed=0, *, cache_dir: str | Path | None = None,
            **params) -> Image.Image:
    """The corrupted image I' of ``kind`` (a key of ``CORRUPTIONS``) with that kind's ``params``; the same
    (image, kind, params, seed) always gives the same I'. With ``cache_dir``, I' is kept there as a PNG named
    by the hash of (image pixels, kind, params, seed) and read back on the next call."""
    if kind not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {kind!r} (known: {', '.join(CORRUPTIONS)})")
    fn = CORRUPTIONS[kind]
    signature = inspect.signature(fn)
    if "seed" in signature.parameters:
        params = {**params, "seed": seed}
    if cache_dir is None:
        return fn(image, **params)
    # the key holds every parameter, defaults included, so a changed default never reads a stale file
    bound = signature.bind(image, **params)
    bound.apply_defaults()
    path = Path(cache_dir) / f"{cache_key(image, kind, dict(list(bound.arguments.items())[1:]))}.png"
    return cached_image(path, lambda: fn(image, **params))


def cached_image(path: Path, make) -> Image.Image:
    """The PNG at ``path``, or ``make()`` written there first (atomically: a concurrent builder never reads a
    half-written file)."""
    if path.exists():
        with Image.open(path) as cached:
            return cached.copy()
    out = make()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    out.save(tmp, format="PNG")
    os.replace(tmp, path)
    return out


def cache_key(image: Image.Image, kind: str, params: dict) -> str:
    """sha256 of the image's pixels, the kind and its params (images among them by their pixel hash)."""
    def plain(v):
        if isinstance(v, Image.Image):
            return image_hash(v)
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        return v.item() if isinstance(v, np.generic) else v
    blob = json.dumps([image_hash(image), kind, {k: plain(v) for k, v in sorted(params.items())}])
    return hashlib.sha256(blob.encode()).hexdigest()


def image_hash(image: Image.Image) -> str:
    """sha256 of the mode, size and raw pixels: equal for equal images, whatever file they came from."""
    h = hashlib.sha256(f"{image.mode}{image.size}".encode())
    h.update(image.tobytes())
    return h.hexdigest()


def _from_unit(x: np.ndarray) -> Image.Image:
    return Image.fromarray(np.rint(np.clip(x, 0, 1) * 255).astype(np.uint8))

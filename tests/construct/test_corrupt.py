"""Image corruptions: mDPO's random resized crop (torchvision's sampling, numpy's generator), blur, pixelation,
Gaussian and diffusion noise, irrelevant images, the ``corrupt`` registry and its cache."""
import math

import numpy as np
import pytest
from PIL import Image

from mmalign.construct.corrupt import (
    CORRUPTIONS,
    alpha_bar,
    corrupt,
    gaussian_blur,
    image_hash,
    random_resized_crop,
    sample_crop_box,
)
from mmalign.world.render import render
from mmalign.world.scenes import WorldConfig, sample_scene


def image(w: int = 64, h: int = 64) -> Image.Image:
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def test_same_seed_same_crop_and_other_seeds_differ():
    img = image()
    a, b = random_resized_crop(img, seed=3), random_resized_crop(img, seed=3)
    assert np.array_equal(np.asarray(a), np.asarray(b))
    others = [np.asarray(random_resized_crop(img, seed=s)) for s in range(4, 8)]
    assert not any(np.array_equal(np.asarray(a), o) for o in others)


@pytest.mark.parametrize("size", [(64, 64), (100, 60), (640, 480)])
def test_box_keeps_1_to_20_percent_of_the_area(size):
    w, h = size
    for seed in range(300):
        left, top, right, bottom = sample_crop_box(w, h, (0.01, 0.2), (3 / 4, 4 / 3), np.random.default_rng(seed))
        bw, bh = right - left, bottom - top
        assert 0 <= left < right <= w and 0 <= top < bottom <= h
        # width and height are each rounded from the exact values, so the kept area is exact up to that rounding
        assert (bw - 0.5) * (bh - 0.5) <= 0.2 * w * h and (bw + 0.5) * (bh + 0.5) >= 0.01 * w * h
        assert math.log((bw - 0.5) / (bh + 0.5)) <= math.log(4 / 3) and math.log((bw + 0.5) / (bh - 0.5)) >= math.log(3 / 4)
    share = [np.prod(np.diff(np.reshape(sample_crop_box(640, 480, (0.01, 0.2), (3 / 4, 4 / 3),
                                                        np.random.default_rng(s)), (2, 2)), axis=0)) / (640 * 480)
             for s in range(300)]
    assert 0.01 <= min(share) < 0.03 and 0.18 < max(share) <= 0.2   # the whole range is used


def test_output_is_the_box_resized_back_to_the_original_size():
    img = image(100, 60)
    out = random_resized_crop(img, seed=11)
    box = sample_crop_box(100, 60, (0.01, 0.2), (3 / 4, 4 / 3), np.random.default_rng(11))
    assert out.size == img.size and out.mode == img.mode
    assert np.array_equal(np.asarray(out), np.asarray(img.crop(box).resize(img.size, Image.Resampling.BILINEAR)))


def test_falls_back_to_a_central_crop_after_ten_failed_tries():
    # a 200x10 strip cannot hold 90% of its area at an aspect ratio of at most 4/3
    box = sample_crop_box(200, 10, (0.9, 1.0), (3 / 4, 4 / 3), np.random.default_rng(0))
    assert box == (93, 0, 106, 10)
    # a square is narrower than ratio 2 allows: the fallback is the central full-width band of ratio 2
    assert sample_crop_box(50, 50, (1.0, 1.0), (2.0, 3.0), np.random.default_rng(0)) == (0, 12, 50, 37)


# ---- the registry -------------------------------------------------------------------------------------------

WORLD = WorldConfig()
SCENE_IMAGE = render(sample_scene(WORLD, "train", 3), WORLD)
POOL = [render(sample_scene(WORLD, "train", i), WORLD) for i in range(10, 16)]
PARAMS = {"crop": {}, "blur": {}, "pixelate": {}, "gaussian_noise": {}, "diffusion_noise": {},
          "irrelevant": {"pool": POOL}}


def flat(value: int, size: int = 64) -> Image.Image:
    return Image.new("RGB", (size, size), (value,) * 3)


def unit(img: Image.Image) -> np.ndarray:
    """Pixels scaled to [-1, 1], the diffusion process's space."""
    return np.asarray(img, dtype=float) / 127.5 - 1


@pytest.mark.parametrize("kind", list(CORRUPTIONS))
def test_every_kind_is_deterministic_changes_the_image_and_keeps_its_size(kind):
    assert set(PARAMS) == set(CORRUPTIONS)
    img = image()
    a, b = corrupt(img, kind, 5, **PARAMS[kind]), corrupt(img, kind, 5, **PARAMS[kind])
    assert np.array_equal(np.asarray(a), np.asarray(b))
    assert a.size == img.size and a.mode == img.mode
    assert not np.array_equal(np.asarray(a), np.asarray(img))
    outputs = {image_hash(corrupt(img, kind, s, **PARAMS[kind])) for s in range(6)}
    if kind in ("crop", "gaussian_noise", "diffusion_noise"):
        assert len(outputs) == 6   # a continuum of draws: every seed gives another image
    elif kind == "irrelevant":
        assert len(outputs) > 1    # six picks from a pool of six
    else:
        assert len(outputs) == 1   # blur and pixelation draw nothing


def test_unknown_kind_is_an_error_naming_the_known_ones():
    with pytest.raises(ValueError, match="unknown corruption 'jpeg'.*pixelate"):
        corrupt(SCENE_IMAGE, "jpeg", 0)


def high_frequency_energy(img: Image.Image) -> float:
    """Spectral energy of the grey image above half the Nyquist frequency (either axis)."""
    f = np.abs(np.fft.fft2(np.asarray(img.convert("L"), dtype=float))) ** 2
    k = np.abs(np.fft.fftfreq(img.width))
    return float(f[np.maximum.outer(k, k) > 0.25].sum())


def test_blur_removes_high_frequencies_more_with_larger_sigma_and_keeps_the_mean():
    noisy = Image.fromarray(np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    for img in (noisy, SCENE_IMAGE):
        e0, e1, e4 = (high_frequency_energy(x) for x in (img, gaussian_blur(img, sigma=1), gaussian_blur(img, sigma=4)))
        assert e4 < e1 < 0.2 * e0 and e4 < 0.01 * e0
        assert abs(np.asarray(gaussian_blur(img, sigma=4), float).mean() - np.asarray(img, float).mean()) < 2


def test_pixelate_makes_flat_blocks_of_the_block_mean():
    img = Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8))
    out = np.asarray(corrupt(img, "pixelate", factor=8), dtype=float)
    src = np.asarray(img, dtype=float)
    for by in range(8):
        for bx in range(8):
            block = out[8 * by:8 * by + 8, 8 * bx:8 * bx + 8]
            assert (block == block[0, 0]).all()
            assert np.abs(block[0, 0] - src[8 * by:8 * by + 8, 8 * bx:8 * bx + 8].mean((0, 1))).max() <= 1


def test_gaussian_noise_has_the_asked_standard_deviation():
    out = np.asarray(corrupt(flat(128), "gaussian_noise", 3, std=0.1), dtype=float) / 255 - 128 / 255
    assert abs(out.mean()) < 0.004 and abs(out.std() - 0.1) < 0.003


def clipped_normal_moments(mu: float, sigma: float) -> tuple[float, float]:
    """Mean and variance of clip(N(mu, sigma^2), -1, 1), in closed form."""
    cdf = lambda z: 0.5 * (1 + math.erf(z / math.sqrt(2)))
    pdf = lambda z: math.exp(-z * z / 2) / math.sqrt(2 * math.pi)
    a, b = (-1 - mu) / sigma, (1 - mu) / sigma
    inside = cdf(b) - cdf(a)
    mean = -cdf(a) + (1 - cdf(b)) + mu * inside + sigma * (pdf(a) - pdf(b))
    second = (cdf(a) + 1 - cdf(b) + mu * mu * inside + 2 * mu * sigma * (pdf(a) - pdf(b))
              + sigma * sigma * (inside + a * pdf(a) - b * pdf(b)))
    return mean, second - mean * mean


def test_diffusion_noise_at_step_zero_is_the_image():
    for schedule in ("sigmoid", "linear", "cosine"):
        out = corrupt(SCENE_IMAGE, "diffusion_noise", 1, t=0, schedule=schedule)
        assert np.array_equal(np.asarray(out), np.asarray(SCENE_IMAGE))


@pytest.mark.parametrize("schedule,t,value", [("linear", 20, 64), ("sigmoid", 500, 200), ("cosine", 300, 100),
                                              ("linear", 1000, 128), ("cosine", 1000, 30)])
def test_diffusion_noise_has_the_forward_process_mean_and_variance(schedule, t, value):
    # x_t = sqrt(abar_t) x_0 + sqrt(1 - abar_t) eps, then clipped to [-1, 1]: compare with the clipped normal
    abar = alpha_bar(schedule)[t]
    x = unit(corrupt(flat(value), "diffusion_noise", 7, t=t, schedule=schedule))
    mean, var = clipped_normal_moments(math.sqrt(abar) * unit(flat(value)).mean(), math.sqrt(1 - abar))
    assert abs(x.mean() - mean) < 4 * math.sqrt(var / x.size) + 0.004
    assert abs(x.var() / var - 1) < 0.05


def test_diffusion_noise_at_the_last_step_is_mostly_noise():
    def corr(t):
        out = unit(corrupt(SCENE_IMAGE, "diffusion_noise", 2, t=t, schedule="linear"))
        return np.corrcoef(out.ravel(), unit(SCENE_IMAGE).ravel())[0, 1]
    assert corr(10) > 0.9 and abs(corr(1000)) < 0.05


def test_schedules_match_their_papers():
    linear, cosine, sigmoid = alpha_bar("linear"), alpha_bar("cosine"), alpha_bar("sigmoid")
    for a in (linear, cosine, sigmoid):
        assert a.shape == (1001,) and a[0] == 1 and (np.diff(a) < 0).all()
    assert linear[1000] == pytest.approx(4.0358e-5, rel=1e-3)   # DDPM's well-known end of the linear schedule
    f = np.cos((np.arange(1001) / 1000 + 0.008) / 1.008 * np.pi / 2) ** 2
    assert np.allclose(cosine[:990], (f / f[0])[:990], rtol=1e-9) and cosine[1000] < 1e-6
    # VCD's sigmoid schedule: betas from 1e-5 to 5e-3, so even its last step keeps some signal
    assert 1 - sigmoid[1] == pytest.approx(1e-5 + (5e-3 - 1e-5) / (1 + math.exp(6)), rel=1e-9)
    assert 0.05 < sigmoid[1000] < 0.1
    with pytest.raises(ValueError, match="unknown noise schedule"):
        alpha_bar("quadratic")


def test_irrelevant_never_returns_the_same_image_and_uses_the_whole_pool():
    copy = SCENE_IMAGE.copy()
    pool = [SCENE_IMAGE, copy, *POOL[:3]]
    picks = {image_hash(corrupt(SCENE_IMAGE, "irrelevant", s, pool=pool)) for s in range(60)}
    assert image_hash(SCENE_IMAGE) not in picks and picks == {image_hash(p) for p in POOL[:3]}
    big = POOL[0].resize((96, 80))
    assert corrupt(SCENE_IMAGE, "irrelevant", 0, pool=[big]).size == SCENE_IMAGE.size
    with pytest.raises(ValueError, match="no image other than"):
        corrupt(SCENE_IMAGE, "irrelevant", 0, pool=[copy])


def test_cache_stores_one_file_per_example_and_reads_it_back(tmp_path):
    fresh = corrupt(SCENE_IMAGE, "diffusion_noise", 4, cache_dir=tmp_path, t=300)
    files = list(tmp_path.iterdir())
    assert len(files) == 1 and files[0].suffix == ".png"
    assert np.array_equal(np.asarray(fresh), np.asarray(corrupt(SCENE_IMAGE, "diffusion_noise", 4, t=300)))
    flat(0).save(files[0])  # a planted file is what a cache hit returns
    assert np.asarray(corrupt(SCENE_IMAGE, "diffusion_noise", 4, cache_dir=tmp_path, t=300)).max() == 0
    corrupt(SCENE_IMAGE, "diffusion_noise", 5, cache_dir=tmp_path, t=300)        # another seed
    corrupt(SCENE_IMAGE, "diffusion_noise", 4, cache_dir=tmp_path, t=301)        # other params
    corrupt(POOL[0], "diffusion_noise", 4, cache_dir=tmp_path, t=300)            # another image
    corrupt(SCENE_IMAGE, "irrelevant", 4, cache_dir=tmp_path, pool=POOL)         # images among the params
    corrupt(SCENE_IMAGE, "irrelevant", 4, cache_dir=tmp_path, pool=POOL[:2])
    corrupt(SCENE_IMAGE, "diffusion_noise", 4, cache_dir=tmp_path, t=300, T=1000, schedule="sigmoid")  # defaults
    assert len(list(tmp_path.glob("*.png"))) == 6 and not list(tmp_path.glob("*.tmp"))

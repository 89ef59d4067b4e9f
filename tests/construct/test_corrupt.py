"""Image corruptions: mDPO's random resized crop (torchvision's sampling, numpy's generator)."""
import math

import numpy as np
import pytest
from PIL import Image

from mmalign.construct.corrupt import random_resized_crop, sample_crop_box


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

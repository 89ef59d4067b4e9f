"""Tiny models of each family, built once per test session, and lab-style examples."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmalign.models import FAMILIES


def random_image(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def tiny_models():
    return {name: build() for name, build in FAMILIES.items()}


@pytest.fixture(params=list(FAMILIES))
def family(request, tiny_models):
    """``(name, model, processor)`` for each family."""
    model, processor = tiny_models[request.param]
    return request.param, model, processor


@pytest.fixture
def examples():
    return [
        {"images": [random_image(0)], "prompt": "describe the image .", "response": "a red circle and a blue star ."},
        {"images": [random_image(1), random_image(2)], "prompt": "which image has more shapes ?",
         "response": "the first image"},
    ]

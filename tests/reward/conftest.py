"""Shared pieces of the reward-model tests: one thread, a tiny lab LLaVA saved as a folder, the tiny families."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mmalign.models import FAMILIES
from mmalign.world.model import LabModelConfig, build_lab_model

TINY = LabModelConfig(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                      text_hidden=32, text_layers=1, text_heads=2, text_mlp=64)



def random_image(seed: int, size: int = 64) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))


@pytest.fixture(scope="session")
def lab_folder(tmp_path_factory):
    """A tiny random-weight lab LLaVA (the shipped base model's architecture, smaller) saved as a model folder."""
    folder = tmp_path_factory.mktemp("tiny-lab")
    model, processor = build_lab_model(TINY, 64)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_families():
    return {name: build() for name, build in FAMILIES.items()}


@pytest.fixture
def examples():
    """Three examples of different lengths, so a batch has padding in every row but the longest."""
    return [
        {"images": [random_image(0)], "prompt": "describe the image .", "response": "a red circle and a blue star ."},
        {"images": [random_image(1)], "prompt": "is there a star ?", "response": "yes"},
        {"images": [random_image(2)], "prompt": "how many shapes ?", "response": "there are 3 shapes ."},
    ]

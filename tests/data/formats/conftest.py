"""Shared by the format tests: the fixture images, and record equality with images compared by pixels."""
from dataclasses import fields
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmalign.data.formats.images import RemoteImage

FIXTURES = Path(__file__).parent / "fixtures"


def _same_image(a, b) -> bool:
    if isinstance(a, RemoteImage) or isinstance(b, RemoteImage):
        return isinstance(a, RemoteImage) and isinstance(b, RemoteImage) and a.url == b.url
    return np.array_equal(np.asarray(a), np.asarray(b))


def _same_records(got: list, want: list) -> None:
    assert [r.id for r in got] == [r.id for r in want]
    for g, w in zip(got, want):
        for f in fields(w):
            a, b = getattr(g, f.name), getattr(w, f.name)
            if f.name in ("images", "corrupt_images"):
                assert (a is None) == (b is None) and len(a or []) == len(b or []), (w.id, f.name)
                assert all(map(_same_image, a or [], b or [])), (w.id, f.name)
            else:
                assert a == b, (w.id, f.name, a, b)


@pytest.fixture
def red():
    return Image.open(FIXTURES / "images" / "red.png").convert("RGB")


@pytest.fixture
def blue():
    return Image.open(FIXTURES / "images" / "blue.png").convert("RGB")


@pytest.fixture
def same_image():
    return _same_image


@pytest.fixture
def same_records():
    """``same_records(got, want)`` asserts equal records, field by field, images by pixels."""
    return _same_records

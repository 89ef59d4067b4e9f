"""Tiny audio model, tone clips and audio preference records shared by the modality tests."""
from __future__ import annotations

import numpy as np
import pytest

from mmalign.data.preference import PreferenceRecord
from mmalign.models.audio import build_qwen2_audio

RATE = 16000


def tone(freq: float, seconds: float = 1.0, rate: int = RATE) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def silence(seconds: float = 1.0) -> np.ndarray:
    return np.zeros(int(seconds * RATE), np.float32)


@pytest.fixture(scope="session")
def audio_model():
    return build_qwen2_audio()


def audio_records() -> list[PreferenceRecord]:
    """Three pairs of different lengths: one clip, a short clip (fewer audio tokens), two clips; each with A'."""
    return [
        PreferenceRecord(id="a0", prompt="how many shapes ?", images=[], chosen="3", rejected="2",
                         audios=[tone(440)], corrupt_audios=[silence()], sampling_rate=RATE),
        PreferenceRecord(id="a1", prompt="describe the image .", images=[], chosen="a red circle and a blue star .",
                         rejected="a red circle .", audios=[tone(660, 0.4)], corrupt_audios=[tone(220, 0.4)],
                         sampling_rate=RATE),
        PreferenceRecord(id="a2", prompt="which image has more shapes ?", images=[], chosen="the first",
                         rejected="the second image", audios=[tone(880, 0.7), tone(330)],
                         corrupt_audios=[silence(0.7), silence()], sampling_rate=RATE),
    ]

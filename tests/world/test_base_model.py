"""The shipped lab base model meets the foundation figures on held-out clean scenes, and its hallucination
comes from the prior and the caption noise (the clean-caption control hallucinates clearly less)."""
from pathlib import Path

import pytest

from mmalign.eval.runner import evaluate_folder
from mmalign.world.scenes import WorldConfig

ASSETS = Path(__file__).resolve().parents[2] / "mmalign" / "assets" / "lab"
TASKS = ["caption", "exist", "count"]


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("eval")
    return {name: evaluate_folder(str(ASSETS / name), WorldConfig(), out / name, tasks=TASKS, n_scenes=600,
                                  n_per_task=300)
            for name in ("base", "control")}


def test_base_model_perceives_the_world(results):
    m = results["base"]
    assert m["caption"]["recall"] >= 0.8
    assert m["count"]["accuracy"] >= 0.8
    assert m["exist/random"]["accuracy"] >= 0.8


def test_base_model_hallucinates_from_the_prior(results):
    m = results["base"]
    assert m["caption"]["chair_i"] >= 0.05
    # 1,200 questions per split: a gap of 0.02 is over one standard error of the difference
    assert m["exist/adversarial"]["accuracy"] < m["exist/random"]["accuracy"] - 0.02


def test_caption_noise_adds_hallucination_over_the_clean_control(results):
    base, control = results["base"]["caption"], results["control"]["caption"]
    assert base["chair_i"] > control["chair_i"] + 0.02
    noisy_pairs = ["circle/star", "square/triangle"]   # partner_noise 0.8 and 0.7; cross/diamond has none
    for pair in noisy_pairs:
        assert base["partner_rate"][pair]["rate"] > control["partner_rate"][pair]["rate"] + 0.1

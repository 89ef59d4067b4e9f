"""AdPO's adversarial images: the torch pixel path equals each processor's, PGD lowers the chosen answer's
log-likelihood, stays in the eps ball, and is deterministic in its seed."""
import numpy as np
import pytest
import torch
from PIL import Image

from mmalign.construct.adversarial import (
    adversarial_image,
    model_pixels,
    pgd,
    unit_pixels,
)
from mmalign.errors import MMAlignError
from mmalign.models.inputs import build_inputs
from mmalign.models.logprobs import token_logps
from mmalign.models.tiny import FAMILIES

torch.set_num_threads(1)
PROMPT, CHOSEN = "describe the image .", "a red circle and a blue star ."
SIZE = {"llava": 64, "qwen2_vl": 56, "idefics3": 64}   # each tiny model's input size (Qwen2-VL: multiples of 28)


@pytest.fixture(scope="module")
def models():
    return {name: build() for name, build in FAMILIES.items()}


def image(size: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def chosen_logp(model, processor, img: Image.Image) -> float:
    batch = build_inputs(processor, [{"images": [img], "prompt": PROMPT, "response": CHOSEN}])
    with torch.no_grad():
        return token_logps(model(**batch).logits, batch["labels"])[0].sum().item()


@pytest.mark.parametrize("family", list(FAMILIES))
def test_torch_pixel_path_equals_the_processor_on_an_image_at_the_model_size(models, family):
    _, processor = models[family]
    img = image(SIZE[family], seed=3)
    batch = build_inputs(processor, [{"images": [img], "prompt": PROMPT, "response": CHOSEN}])
    ours = model_pixels(processor, unit_pixels(img), batch)
    assert ours.shape == batch["pixel_values"].shape
    torch.testing.assert_close(ours, batch["pixel_values"], rtol=0, atol=1e-5)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_pgd_lowers_the_chosen_log_prob_inside_the_eps_ball(models, family):
    model, processor = models[family]
    img = image(SIZE[family])
    eps = 4 / 255
    adv = adversarial_image(model, processor, img, PROMPT, CHOSEN, eps=eps, step_size=1 / 255, steps=5, seed=1)
    start = adversarial_image(model, processor, img, PROMPT, CHOSEN, eps=eps, steps=0, seed=1)  # the random start
    delta = np.asarray(adv, dtype=int) - np.asarray(img, dtype=int)
    assert adv.size == img.size and np.abs(delta).max() == 4     # the sign steps reach the ball's edge
    clean, attacked = chosen_logp(model, processor, img), chosen_logp(model, processor, adv)
    assert attacked < chosen_logp(model, processor, start) < clean + 0.5 and attacked < clean - 0.3


def test_same_seed_same_image_and_other_seeds_differ(models):
    model, processor = models["llava"]

    def run(seed):
        return np.asarray(adversarial_image(model, processor, image(64), PROMPT, CHOSEN, steps=2, seed=seed))
    assert np.array_equal(run(7), run(7)) and not np.array_equal(run(7), run(8))


def test_every_iterate_is_projected_into_the_ball_and_the_valid_range(models):
    model, processor = models["llava"]
    img = image(64, seed=4)
    x0 = unit_pixels(img)
    for steps in (1, 3):
        x = pgd(model, processor, img, PROMPT, CHOSEN, eps=0.1, step_size=0.07, steps=steps, seed=0)
        assert (x - x0).abs().max() <= 0.1 + 1e-6 and x.min() >= 0 and x.max() <= 1
        assert (x - x0).abs().max() > 0.099   # the steps are large enough to press against the ball


def test_ball_holds_after_rounding_when_eps_is_off_the_8_bit_grid(models):
    model, processor = models["llava"]
    img = Image.new("RGB", (64, 64), (0, 128, 255))   # also the [0, 1] clip at both ends
    adv = adversarial_image(model, processor, img, PROMPT, CHOSEN, eps=2.5 / 255, step_size=1.5 / 255, steps=3)
    delta = np.asarray(adv, dtype=int) - np.asarray(img, dtype=int)
    assert np.abs(delta).max() <= 2 and delta[..., 0].min() >= 0 and delta[..., 2].max() <= 0


def test_an_image_the_processor_resizes_is_refused(models):
    model, processor = models["llava"]
    with pytest.raises(MMAlignError, match="model's input size"):
        adversarial_image(model, processor, image(80), PROMPT, CHOSEN, steps=1)


def test_cache_returns_the_stored_image_until_the_model_changes(tmp_path):
    model, processor = FAMILIES["llava"]()                   # its own: the weights change below
    img = image(64)
    first = adversarial_image(model, processor, img, PROMPT, CHOSEN, steps=2, seed=3, cache_dir=tmp_path)
    assert np.array_equal(np.asarray(first),
                          np.asarray(adversarial_image(model, processor, img, PROMPT, CHOSEN, steps=2, seed=3)))
    (stored,) = tmp_path.glob("*.png")
    Image.new("RGB", (64, 64), "red").save(stored)          # a planted file is what a cached call returns
    again = adversarial_image(model, processor, img, PROMPT, CHOSEN, steps=2, seed=3, cache_dir=tmp_path)
    assert np.asarray(again)[0, 0].tolist() == [255, 0, 0]
    with torch.no_grad():
        next(model.parameters()).add_(0.01)                  # other weights: another key, a new attack
    adversarial_image(model, processor, img, PROMPT, CHOSEN, steps=2, seed=3, cache_dir=tmp_path)
    assert len(list(tmp_path.glob("*.png"))) == 2

"""MIA-DPO augmentation: layout sizes, the target where the prompt says, the rejected answer true of a
distractor (the world's ground truth), and the lab's vocabulary covering the new prompts."""
import numpy as np
import pytest
from PIL import Image

from mmalign.construct.multi_image import LAYOUTS, lab_answer, lab_mia_pair, mia_augment
from mmalign.data.preference import PreferenceRecord
from mmalign.world import language as L
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.render import render
from mmalign.world.scenes import Obj, Scene, WorldConfig
from mmalign.world.tokenizer import build_tokenizer

WORLD = WorldConfig()
RECORDS = lab_pairs(WORLD, LabPairsConfig(n=24))
BILINEAR = Image.Resampling.BILINEAR


def pixels(img: Image.Image) -> np.ndarray:
    return np.asarray(img, dtype=int)


def distractors(pair: PreferenceRecord) -> list[tuple[Image.Image, str | None]]:
    """Each distractor's image and ground-truth answer to the source prompt, in the order they were drawn."""
    scenes = [Scene.from_dict(d) for d in pair.meta["distractor_scenes"]]
    return [(render(s, WORLD), lab_answer(s, source_prompt(pair))) for s in scenes]


def source_prompt(pair: PreferenceRecord) -> str:
    return pair.prompt.split(" , ", 1)[1]


def target_number(pair: PreferenceRecord) -> int:
    words = pair.prompt.split()
    assert words[:2] == ["in", "image"] and words[3] == ","
    return int(words[2])


def pairs(layout: str, n: int) -> list[tuple[PreferenceRecord, PreferenceRecord]]:
    out = [(r, lab_mia_pair(WORLD, r, layout=layout, n_distractors=n, seed=1)) for r in RECORDS]
    return [(r, p) for r, p in out if p is not None]


def test_sequence_puts_the_target_where_the_prompt_says_and_rejects_a_distractors_answer():
    made = pairs("sequence", 3)
    assert len(made) >= 20
    for src, pair in made:
        k = target_number(pair)
        assert len(pair.images) == 4 and k == pair.meta["target"] and source_prompt(pair) == src.prompt
        assert np.array_equal(pixels(pair.images[k - 1]), pixels(src.images[0])) and pair.chosen == src.chosen
        shown = pair.images[pair.meta["rejected_from"] - 1]
        (answer,) = [a for img, a in distractors(pair) if np.array_equal(pixels(img), pixels(shown))]
        assert pair.rejected == answer != pair.chosen
        assert pair.corrupt_images is None and pair.id == f"{src.id}-mia-sequence"
    assert {p.meta["target"] for _, p in made} == {1, 2, 3, 4}   # every place is used


@pytest.mark.parametrize("n,cols,rows", [(1, 2, 1), (3, 2, 2), (4, 3, 2), (8, 3, 3)])
def test_grid_tiles_the_target_size_and_the_target_tile_is_the_numbered_one(n, cols, rows):
    for src, pair in pairs("grid", n)[:6]:
        (collage,) = pair.images
        w, h = 64 // cols, 64 // rows
        boxes = pair.meta["boxes"]
        assert collage.size == src.images[0].size and len(boxes) == n + 1
        assert boxes[0] == [0, 0, w, h] and boxes[-1][2:] == [(n % cols + 1) * w, rows * h]
        k = target_number(pair)
        assert np.array_equal(pixels(collage.crop(boxes[k - 1])), pixels(src.images[0].resize((w, h), BILINEAR)))
        tile = pixels(collage.crop(boxes[pair.meta["rejected_from"] - 1]))
        (answer,) = [a for img, a in distractors(pair) if np.array_equal(pixels(img.resize((w, h), BILINEAR)), tile)]
        assert pair.rejected == answer != pair.chosen
        if (n + 1) % cols:  # the unused tiles of the last row stay white
            assert (pixels(collage)[(rows - 1) * h:, boxes[-1][2]:] == 255).all()


def test_pic_in_pic_lays_the_shrunk_target_over_the_distractor():
    made = pairs("pic_in_pic", 1)
    assert len(made) >= 20
    for src, pair in made:
        (img,) = pair.images
        x1, y1, x2, y2 = pair.meta["box"]
        assert img.size == (64, 64) and (x2 - x1, y2 - y1) == (32, 32) and 0 <= x1 <= 32 and 0 <= y1 <= 32
        assert pair.prompt == f"in the small image , {src.prompt}"
        assert np.array_equal(pixels(img.crop((x1, y1, x2, y2))), pixels(src.images[0].resize((32, 32), BILINEAR)))
        ((background, answer),) = distractors(pair)
        outside = np.ones((64, 64), bool)
        outside[y1:y2, x1:x2] = False
        assert np.array_equal(pixels(img)[outside], pixels(background)[outside])
        assert pair.rejected == answer != pair.chosen
    assert len({tuple(p.meta["box"]) for _, p in made}) > 10   # the inset moves


@pytest.mark.parametrize("layout", LAYOUTS)
def test_new_prompts_are_in_the_lab_vocabulary_and_pairs_are_deterministic(layout):
    tok = build_tokenizer()
    for src, pair in pairs(layout, 2)[:5]:
        assert tok.unk_token_id not in tok(pair.prompt)["input_ids"]
        again = lab_mia_pair(WORLD, src, layout=layout, n_distractors=2, seed=1)
        assert again.prompt == pair.prompt and again.rejected == pair.rejected
        assert all(np.array_equal(pixels(a), pixels(b)) for a, b in zip(again.images, pair.images))


def yes_record() -> PreferenceRecord:
    return PreferenceRecord(id="y", prompt=L.exist_prompt("star"), images=[Image.new("RGB", (64, 64))],
                            chosen="yes", rejected="no")


def test_no_pair_when_no_distractor_answers_differently():
    others = [Image.new("RGB", (64, 64), (255, 0, 0)), Image.new("RGB", (64, 64), (0, 255, 0))]
    for layout in LAYOUTS:
        assert mia_augment(yes_record(), others, ["yes", None], layout=layout, seed=0) is None
    out = mia_augment(yes_record(), others, ["yes", "no"], layout="sequence", seed=0)
    assert out.rejected == "no" and np.array_equal(pixels(out.images[out.meta["rejected_from"] - 1]), pixels(others[1]))
    # pic-in-pic uses the first distractor only, as its background
    assert mia_augment(yes_record(), others, ["yes", "no"], layout="pic_in_pic", seed=0) is None


def test_bad_input_is_refused():
    two = PreferenceRecord(id="t", prompt="x", images=[Image.new("RGB", (8, 8))] * 2, chosen="a", rejected="b")
    with pytest.raises(ValueError, match="one image and a string prompt"):
        mia_augment(two, [], [], layout="sequence", seed=0)
    with pytest.raises(ValueError, match="unknown layout 'film'"):
        mia_augment(yes_record(), [], [], layout="film", seed=0)


def test_lab_answer_from_ground_truth():
    scene = Scene("s", (240, 240, 240), [Obj("circle", "red", False, (10, 10), 8),
                                         Obj("star", "blue", False, (40, 40), 8)])
    assert lab_answer(scene, L.caption_prompt()) == "a red circle and a blue star ."
    assert lab_answer(scene, L.count_prompt()) == "2"
    assert lab_answer(scene, L.exist_prompt("star")) == "yes" and lab_answer(scene, L.exist_prompt("moon")) == "no"
    assert lab_answer(scene, L.colour_prompt("star")) == "blue" and lab_answer(scene, L.colour_prompt("square")) is None
    assert lab_answer(scene, "which way does the red circle move ?") is None

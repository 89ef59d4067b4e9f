"""The lab's preference pairs: exact chosen answers, one-object rejected captions, length balance, determinism."""
import re
from collections import Counter

import numpy as np
import pytest

from mmalign.data.preference import read_preference_file, write_preference_file
from mmalign.errors import ConfigError
from mmalign.world import language as L
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.render import render
from mmalign.world.scenes import Scene, WorldConfig, sample_scene
from mmalign.world.tasks import clean_caption

WORLD = WorldConfig()


@pytest.fixture(scope="module")
def pairs():
    return lab_pairs(WORLD, LabPairsConfig(n=400))


def objects(caption: str) -> list[tuple[str, str]]:
    return re.findall(r"\ba (\w+) (\w+)", caption)


def scene(rec) -> Scene:
    return Scene.from_dict(rec.meta["scene"])


def test_pairs_come_from_the_train_split_scene_by_scene(pairs):
    assert len(pairs) == 400 and len({r.id for r in pairs}) == 400
    for i in (0, 17, 399):
        truth = sample_scene(WORLD, "train", i)
        assert np.array_equal(np.asarray(pairs[i].images[0]), np.asarray(render(truth, WORLD)))
        assert scene(pairs[i]).to_dict() == truth.to_dict()   # boxes included (render fills them in)
    counts = Counter(r.task for r in pairs)
    assert abs(counts["caption"] / 400 - LabPairsConfig().tasks["caption"]) < 0.06


def test_chosen_caption_is_always_the_clean_caption(pairs):
    for r in pairs:
        if r.task == "caption":
            assert r.prompt == L.caption_prompt() and r.chosen == clean_caption(scene(r))


def test_rejected_caption_adds_one_absent_object_or_drops_one_present_one(pairs):
    for r in (r for r in pairs if r.task == "caption"):
        clean, rejected = Counter(objects(r.chosen)), Counter(objects(r.rejected))
        present = set(scene(r).categories)
        if r.meta["kind"] == "caption_plus":
            ((colour, category),) = (rejected - clean).elements()
            assert not clean - rejected and category not in present and category == r.meta["object"]
            partners = {WORLD.partner(c) for c in present} - present - {None}
            assert category in partners or not partners       # the prior's partner where there is one
        else:
            ((colour, category),) = (clean - rejected).elements()
            assert not rejected - clean and category in present and len(present) >= 2
        order = [L.ALL_CATEGORIES.index(c) for _, c in objects(r.rejected)]
        assert order == sorted(order)


def test_caption_pairs_are_length_balanced(pairs):
    captions = [r for r in pairs if r.task == "caption"]
    kinds = Counter(r.meta["kind"] for r in captions)
    assert abs(kinds["caption_minus"] - kinds["caption_plus"]) <= 1
    chosen = np.mean([len(r.chosen.split()) for r in captions])
    rejected = np.mean([len(r.rejected.split()) for r in captions])
    assert abs(rejected - chosen) / chosen < 0.1


def test_exist_pairs_are_correct_and_balanced(pairs):
    exist = [r for r in pairs if r.task == "exist"]
    answers = Counter(r.chosen for r in exist)
    assert abs(answers["yes"] - answers["no"]) <= 1
    for r in exist:
        category = r.meta["object"]
        assert r.prompt == L.exist_prompt(category)
        assert r.chosen == ("yes" if category in scene(r).categories else "no")
        assert {r.chosen, r.rejected} == {"yes", "no"}


def test_every_pair_has_a_corrupted_image_unlike_its_image(pairs):
    for r in pairs[:50]:
        assert len(r.images) == len(r.corrupt_images) == 1
        image, corrupt = np.asarray(r.images[0]), np.asarray(r.corrupt_images[0])
        assert corrupt.shape == image.shape and not np.array_equal(corrupt, image)


def test_pairs_are_deterministic_and_a_prefix_does_not_depend_on_n(pairs):
    again = lab_pairs(WORLD, LabPairsConfig(n=60))
    for a, b in zip(again, pairs):
        assert (a.id, a.prompt, a.chosen, a.rejected, a.meta) == (b.id, b.prompt, b.chosen, b.rejected, b.meta)
        assert np.array_equal(np.asarray(a.corrupt_images[0]), np.asarray(b.corrupt_images[0]))
    other = lab_pairs(WORLD, LabPairsConfig(n=60, seed=1))
    assert [r.rejected for r in other] != [r.rejected for r in again]


def test_config_is_checked():
    for bad in (dict(split="test"), dict(tasks={"count": 1.0}), dict(balance=1.5), dict(crop_scale=[0.3, 0.1])):
        with pytest.raises(ConfigError):
            LabPairsConfig(**bad).validate()


def test_pairs_survive_a_file_round_trip(pairs, tmp_path):
    back = read_preference_file(write_preference_file(pairs[:20], tmp_path / "lab.jsonl"))
    for a, b in zip(pairs, back):
        assert (a.id, a.prompt, a.chosen, a.rejected, a.task, a.meta) == (b.id, b.prompt, b.chosen, b.rejected, b.task, b.meta)
        assert np.array_equal(np.asarray(a.corrupt_images[0]), np.asarray(b.corrupt_images[0]))


def test_swap_pairs_replace_a_real_object_by_an_unrelated_absent_one():
    cfg = LabPairsConfig(n=60, tasks={"caption": 1.0}, balance=0.25, swap=0.5)
    swaps = [r for r in lab_pairs(WORLD, cfg) if r.meta["kind"] == "caption_swap"]
    assert 20 <= len(swaps) <= 31
    for r in swaps:
        clean, rejected = Counter(objects(r.chosen)), Counter(objects(r.rejected))
        ((colour, real),), ((colour2, fake),) = (clean - rejected).elements(), (rejected - clean).elements()
        present = set(scene(r).categories)
        assert colour == colour2 and real in present and fake not in present and WORLD.partner(fake) not in present
        assert (real, fake) == (r.meta["replaced"], r.meta["object"]) and len(r.chosen) - len(r.rejected) == len(
            real) - len(fake)
        assert r.chosen[slice(*r.chosen_spans[0])] == f"a {colour} {real}"
        assert r.rejected[slice(*r.rejected_spans[0])] == f"a {colour} {fake}"


def test_swap_off_leaves_the_pairs_as_they_were():
    """The default pairs (which every shipped result trained on) are pinned: the digest of the first 40 pairs as
    they were before swap pairs existed."""
    import hashlib
    ps = lab_pairs(WORLD, LabPairsConfig(n=40))
    digest = hashlib.sha256(repr([(r.chosen, r.rejected, r.meta["crop_seed"]) for r in ps]).encode()).hexdigest()
    assert digest == "216e4d869da48471cbf70af79faf76c5662bf98896b6777a90d5630aa2412d6c"
    with pytest.raises(ConfigError, match="lab.swap"):
        lab_pairs(WORLD, LabPairsConfig(n=4, balance=0.6, swap=0.5))

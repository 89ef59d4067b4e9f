"""The lab world: determinism, exact ground truth, the prior, the noise, and every task's answer."""
import numpy as np
import pytest

from mmalign.errors import ConfigError
from mmalign.world import language as L
from mmalign.world.render import object_mask, render
from mmalign.world.scenes import WorldConfig, sample_scene
from mmalign.world.tasks import (
    EXIST_SPLITS,
    TASKS,
    make_example,
    mixed_example,
    noisy_caption_objects,
    spatial_relation,
)
from mmalign.world.tokenizer import build_tokenizer

CFG = WorldConfig()


def test_scenes_are_deterministic_and_seed_dependent():
    a, b = sample_scene(CFG, "train", 7), sample_scene(CFG, "train", 7)
    assert a.to_dict() == b.to_dict()
    assert np.array_equal(np.asarray(render(a, CFG)), np.asarray(render(b, CFG)))
    other = sample_scene(WorldConfig(seed=1), "train", 7)
    assert other.to_dict() != a.to_dict()
    assert sample_scene(CFG, "val", 7).to_dict() != a.to_dict()


@pytest.mark.parametrize("category", L.ALL_CATEGORIES)
def test_box_is_the_exact_pixel_extent_of_its_object(category):
    cfg = WorldConfig()
    scene = sample_scene(cfg, "train", 3, categories=[category])
    img = np.asarray(render(scene, cfg)).astype(int)
    obj = scene.objects[0]
    x1, y1, x2, y2 = obj.box
    changed = np.abs(img - np.asarray(scene.background)).sum(-1) > 0   # pixels the object painted
    ys, xs = np.nonzero(changed)
    assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x1, y1, x2, y2)
    mask = np.asarray(object_mask(category, obj.center, obj.radius, cfg.image_size)) > 0
    assert mask[y1:y2, x1:x2].any(axis=0).all() and mask[y1:y2, x1:x2].any(axis=1).all()


def test_objects_do_not_overlap_and_stay_inside():
    for i in range(200):
        scene = sample_scene(CFG, "train", i)
        img = CFG.image_size
        masks = [np.asarray(object_mask(o.category, o.center, o.radius, img)) > 0 for o in scene.objects]
        total = np.sum(masks, axis=0)
        assert total.max() <= 1, scene.id
        for o in scene.objects:
            assert 0 <= o.center[0] - o.radius and o.center[0] + o.radius < img


def test_co_occurrence_prior_and_faint_rate():
    n, with_partner, anchors, faint, objs = 3000, 0, 0, 0, 0
    for i in range(n):
        cats = set(sample_scene(CFG, "train", i).categories)
        for a, b in CFG.pairs:
            if a in cats or b in cats:
                anchors += 1
                with_partner += a in cats and b in cats
        for o in sample_scene(CFG, "train", i).objects:
            faint += o.faint
            objs += 1
    assert abs(with_partner / anchors - CFG.pair_prob) < 0.03
    assert abs(faint / objs - CFG.faint_prob) < 0.02


def test_caption_noise_rates_follow_the_config():
    cfg = WorldConfig(colour_noise=0.0)
    hits = {tuple(p): [0, 0] for p in cfg.pairs}
    for i in range(3000):
        scene = sample_scene(cfg, "train", i)
        _, noise = noisy_caption_objects(cfg, scene, np.random.default_rng(i))
        for a, b in cfg.pairs:
            if (a in scene.categories) != (b in scene.categories):
                hits[(a, b)][1] += 1
                hits[(a, b)][0] += bool({a, b} & set(noise["injected"]))
    rates = [h / n for h, n in hits.values()]
    assert rates == pytest.approx(cfg.partner_noise, abs=0.05)


def test_evaluation_captions_are_clean_and_training_ones_are_not():
    val = [make_example(CFG, "caption", "val", i) for i in range(300)]
    assert all(e["response"] == L.caption_text([(o["colour"], o["category"]) for o in e["scenes"][0]["objects"]])
               for e in val)
    train = [make_example(CFG, "caption", "train", i) for i in range(300)]
    assert sum(bool(e["meta"]["injected"]) for e in train) > 30


@pytest.mark.parametrize("split", EXIST_SPLITS)
def test_pope_negatives_are_absent_and_adversarial_ones_co_occur(split):
    partners = 0
    for i in range(100):
        e = make_example(CFG, "exist", "test", i, pope_split=split, label="no")
        present = [o["category"] for o in e["scenes"][0]["objects"]]
        assert e["meta"]["category"] not in present and e["answer"] == "no"
        partners += any(CFG.partner(p) == e["meta"]["category"] for p in present)
        pos = make_example(CFG, "exist", "test", i, pope_split=split, label="yes")
        assert pos["meta"]["category"] in present
    if split == "adversarial":
        assert partners >= 25   # every scene with an absent partner asks about it


def test_every_task_answer_is_consistent_with_ground_truth():
    for i in range(50):
        for task in TASKS:
            e = make_example(CFG, task, "val", i)
            objs = e["scenes"][0]["objects"]
            if task == "count":
                assert e["answer"] == str(len(objs))
            elif task == "ground":
                assert e["meta"]["box"] in [list(o["box"]) for o in objs]
            elif task == "colour":
                assert (e["answer"], e["meta"]["category"]) in [(o["colour"], o["category"]) for o in objs]
            elif task == "video":
                assert len(e["images"]) == CFG.video_frames
                c0 = [o["center"] for o in e["scenes"][0]["objects"]]
                c1 = [o["center"] for o in e["scenes"][-1]["objects"]]
                moved = [(b[0] - a[0], b[1] - a[1]) for a, b in zip(c0, c1) if a != b]
                assert len(moved) == 1
                dx, dy = moved[0]
                assert e["answer"] == ("left" if dx < 0 else "right" if dx > 0 else "up" if dy < 0 else "down")
            elif task == "multi_image":
                assert len(e["images"]) == 2
            elif task == "safety":
                verb = e["prompt"].split()[3]
                assert (e["answer"] == "refuse") == (verb in L.UNSAFE_VERBS)


def test_spatial_relation():
    from mmalign.world.scenes import Obj
    a, b = Obj("circle", "red", False, (10, 30), 5), Obj("star", "red", False, (40, 32), 5)
    assert spatial_relation(a, b) == "left" and spatial_relation(b, a) == "right"
    c = Obj("cross", "red", False, (12, 50), 5)
    assert spatial_relation(a, c) == "above" and spatial_relation(c, a) == "below"


def test_mixed_stream_is_deterministic_and_follows_the_mix():
    mix = {"caption": 0.7, "count": 0.3}
    tasks = [mixed_example(CFG, "train", mix, i)["task"] for i in range(400)]
    assert tasks == [mixed_example(CFG, "train", mix, i)["task"] for i in range(400)]
    assert abs(tasks.count("caption") / 400 - 0.7) < 0.07


def test_every_word_the_world_says_is_in_the_vocabulary():
    tok = build_tokenizer()
    for i in range(30):
        for task in TASKS:
            e = make_example(CFG, task, "train", i)
            for text in (e["prompt"], e["response"]):
                ids = tok(text)["input_ids"]
                assert tok.unk_token_id not in ids, text
                assert tok.decode(ids) == text


def test_bad_world_config_names_the_key():
    with pytest.raises(ConfigError, match="world.categories: unknown category 'hexagon'"):
        WorldConfig(categories=["circle", "hexagon"]).validate()
    with pytest.raises(ConfigError, match="partner_noise"):
        WorldConfig(partner_noise=[0.5]).validate()

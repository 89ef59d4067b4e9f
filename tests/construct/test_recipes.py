"""Every named recipe builds valid pairs on the lab that its loss can train on, and reports what it dropped."""
import json

import pytest

from mmalign.construct.recipes import RECIPES, SAMPLED, RecipeConfig, build_recipe
from mmalign.data.preference import read_preference_file
from mmalign.errors import ConfigError
from mmalign.eval.lab_judge import caption_mentions
from mmalign.losses import PREFERENCE_LOSSES
from mmalign.world.scoring import caption_scores


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    root = tmp_path_factory.mktemp("recipes")
    out = {}
    for name in RECIPES:
        result = build_recipe(RecipeConfig(recipe=name, n=10, out=str(root / name), cache_dir=str(root / "cache")))
        out[name] = (result, read_preference_file(result["file"]),
                     json.loads((root / name / "report.json").read_text()))
    return out


@pytest.mark.parametrize("name", list(RECIPES))
def test_recipe_writes_pairs_its_loss_can_use(built, name):
    result, records, report = built[name]
    assert result["pairs"] == len(records) == report["pairs"] > 0
    assert RECIPES[name].loss in PREFERENCE_LOSSES
    spec = PREFERENCE_LOSSES[RECIPES[name].loss]
    for r in records:
        assert r.chosen != r.rejected and r.images
        if spec.needs_corrupt_image or spec.needs_noise_image:
            assert r.corrupt_images and r.corrupt_images[0].size == r.images[0].size
            assert r.corrupt_images[0].tobytes() != r.images[0].tobytes()
    assert report["dedupe"]["kept"] >= len(records)


def test_text_negatives_hallucinate_exactly_once(built):
    for name in ("povid", "hadpo"):
        for r in built[name][1]:
            gt = r.meta["objects"]
            assert caption_scores(r.chosen, gt)["n_hallucinated_mentions"] == 0
            assert r.rejected_spans, r.id                                  # DDPO spans on the rewritten side
            assert all(0 <= s < e <= len(r.rejected) for s, e in r.rejected_spans)
            # exactly one (colour, object) written that the truth does not have: an insertion, a swap or a repeat
            extra = caption_mentions(r.rejected) - caption_mentions(r.chosen)
            assert sum(extra.values()) == 1, (r.chosen, r.rejected)


def test_sampled_recipes_prefer_the_higher_score(built):
    for name in SAMPLED:
        for r in built[name][1]:
            assert r.reward_margin is not None and r.reward_margin > 0
            assert r.meta["sampling"]["n"] == 4


def test_mia_and_adpo_shapes(built):
    mia = built["mia_dpo"][1]
    assert {r.meta["layout"] for r in mia} == {"sequence", "grid", "pic_in_pic"}
    assert all(len(r.images) == (2 if r.meta["layout"] == "sequence" else 1) for r in mia)
    adpo = built["adpo"][1]
    clean = {r.id[:-len("-clean")]: r for r in adpo if r.id.endswith("-clean")}
    adv = {r.id[:-len("-adv")]: r for r in adpo if r.id.endswith("-adv")}
    assert clean.keys() == adv.keys()
    for k, c in clean.items():   # the same pair, under the clean image and under the attacked one
        assert c.rejected == adv[k].rejected == c.meta["y_adv"]
        assert c.images[0].tobytes() != adv[k].images[0].tobytes()


def test_unknown_recipe_is_named():
    with pytest.raises(ConfigError, match="unknown recipe 'povd'"):
        build_recipe(RecipeConfig(recipe="povd"))

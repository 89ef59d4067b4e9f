"""SymDPO on the lab: every demonstration's symbol is the one bound to its image's true answer, chosen is the
symbol of the demonstration that matches the query image, rejected the guess that skips the images (the majority
symbol, or the plain answer), and the symbols mean nothing in the world."""
from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from mmalign.construct.recipes import RECIPES, RecipeConfig, build_recipe
from mmalign.construct.symdpo import QUESTION_TASKS, answer, symbol_pool, symdpo_pair
from mmalign.data.preference import read_preference_file
from mmalign.errors import ConfigError
from mmalign.world import language as L
from mmalign.world.render import render
from mmalign.world.scenes import Scene, WorldConfig

WORLD = WorldConfig()


@pytest.fixture(scope="module")
def records():
    return [r for i in range(18) for r in [symdpo_pair(WORLD, QUESTION_TASKS[i % 3], i,
                                                      rejected=("majority", "semantic")[i // 3 % 2])] if r]


def test_symbols_are_bound_to_the_demonstrations_true_answers(records):
    assert len(records) == 18
    for r in records:
        scenes = [Scene.from_dict(s) for s in r.meta["scenes"]]
        question, symbols = r.meta["question"], r.meta["symbols"]
        truth = [answer(s, question) for s in scenes]
        turns = r.prompt
        assert [t["role"] for t in turns] == ["user", "assistant"] * 3 + ["user"]
        assert all(t["content"][1]["text"] == question for t in turns[::2])
        assert [t["content"] for t in turns[1::2]] == [symbols[a] for a in truth[:-1]]   # the binding
        assert r.chosen == symbols[truth[-1]]                                           # the matching demo's
        assert truth[:-1].count(truth[-1]) == 1                                        # one demo matches
        other, n = Counter(truth[:-1]).most_common(1)[0]
        assert n == 2 and other != truth[-1]
        assert r.rejected == (symbols[other] if r.meta["rejected_kind"] == "majority" else truth[-1])
        assert len(r.images) == 4 and all(np.array_equal(np.asarray(im), np.asarray(render(s, WORLD)))
                                          for im, s in zip(r.images, scenes))


def test_the_symbols_mean_nothing_in_the_world(records):
    answers = set(WORLD.categories) | set(WORLD.colours) | {"yes", "no"} | {str(n) for n in range(10)}
    pool = symbol_pool(WORLD)
    assert len(pool) >= 2 and not set(pool) & answers and set(pool) <= set(L.VOCAB)
    for r in records:
        assert len(set(r.meta["symbols"].values())) == 2 and set(r.meta["symbols"].values()) <= set(pool)
    assert "heart" not in symbol_pool(WorldConfig(categories=["circle", "heart"], pairs=[["circle", "heart"]],
                                                  group_weights=[1.0], partner_noise=[0.5]))


def test_the_text_gives_nothing_away(records):
    where = Counter(r.meta["demo_answers"].index(r.meta["query_answer"]) for r in records)
    assert set(where) == {0, 1, 2}                    # the matching demonstration is anywhere in the context
    chosen = Counter(r.chosen for r in records)
    assert max(chosen.values()) < len(records) / 2    # no symbol is the answer by itself


def test_deterministic_per_seed():
    a, b = symdpo_pair(WORLD, "colour", 7), symdpo_pair(WORLD, "colour", 7)
    assert (a.prompt, a.chosen, a.rejected, a.meta["scenes"]) == (b.prompt, b.chosen, b.rejected, b.meta["scenes"])
    assert symdpo_pair(WORLD, "colour", 7, seed=1).meta["scenes"] != a.meta["scenes"]
    with pytest.raises(ConfigError):
        symdpo_pair(WORLD, "caption", 0)


def test_the_recipe(tmp_path):
    assert RECIPES["symdpo"].loss == "dpo"
    built = build_recipe(RecipeConfig(recipe="symdpo", n=6, out=str(tmp_path)))
    records = read_preference_file(built["file"])
    assert built["pairs"] == len(records) == 6
    assert {r.task for r in records} == set(QUESTION_TASKS)
    assert {r.meta["rejected_kind"] for r in records} == {"majority", "semantic"}

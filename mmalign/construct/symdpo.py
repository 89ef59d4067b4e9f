"""SymDPO (Jia et al., CVPR 2025, arXiv 2411.11909; ALGORITHMS.md §5.6) on the lab: in-context multi-image prompts
whose demonstration answers are arbitrary symbols, so that only the images tell which symbol answers the query.

A prompt is a conversation: ``demos`` demonstrations, each a user turn (its image and the question) answered by
the assistant with the symbol bound to that image's true answer, then the query turn (a new image, the same
question). The question is one of the lab's: existence of a shape (yes/no), the colour of a shape, the number of
shapes. Symbols are lab words that answer nothing in the world (the shapes it does not draw, with their
synonyms, and the colours it does not paint): never trained as an answer, they carry no meaning but the one the
demonstrations bind. Each prompt draws its own symbols, one per answer that occurs.

The demonstrations are drawn so that the text alone points the wrong way: one shows the query's true answer b,
the other ``demos - 1`` all show one other answer a, in random order. ``chosen`` is symbol(b), the symbol of the
demonstration that matches the query image. ``rejected`` alternates between the two guesses that skip the images:

* ``majority``: symbol(a), what a reader of the text alone would say (the most frequent symbol of the context);
* ``semantic``: b in words ("yes", "red", "3"), what a model answers when it follows the plain question and not
  the demonstrations (SymDPO's "original answer" negative).

Deviations: the paper builds on VQA/classification datasets and OpenFlamingo/IDEFICS' interleaved format; here
the demonstrations are chat turns of the lab's ChatML template, and the scenes are drawn to order from the world.
"""
from __future__ import annotations

import numpy as np

from mmalign.construct.multi_image import lab_answer
from mmalign.construct.text import text_seed
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import ConfigError
from mmalign.world import language as L
from mmalign.world.render import render
from mmalign.world.scenes import Scene, WorldConfig, sample_scene

QUESTION_TASKS = ("exist", "colour", "count")
REJECTED = ("majority", "semantic")
STREAM = 4000          # the demonstration and query scenes' rng stream, apart from the tasks' and other recipes'
MAX_DRAWS = 2000       # scenes tried for one demonstration before the prompt is given up


def symbol_pool(world: WorldConfig) -> list[str]:
    """The lab words that answer nothing in ``world`` (module docstring)."""
    shapes = [w for c in L.ALL_CATEGORIES if c not in world.categories for w in L.SYNONYMS[c]]
    return shapes + [c for c in L.ALL_COLOURS if c not in world.colours]


def answer(scene: Scene, question: str) -> str | None:
    """``lab_answer``, but None for the colour of a shape the scene holds twice (the question names no instance)."""
    for category in L.ALL_CATEGORIES:
        if question == L.colour_prompt(category) and scene.categories.count(category) != 1:
            return None
    return lab_answer(scene, question)


def symdpo_pair(world: WorldConfig, task: str, index: int, *, demos: int = 3, rejected: str = "majority",
                split: str = "train", seed: int = 0) -> PreferenceRecord | None:
    """The SymDPO record of query scene ``index`` (its own draw, on ``STREAM``) for a ``task`` question; None when
    no question or no demonstrations could be found for it."""
    if task not in QUESTION_TASKS or rejected not in REJECTED or demos < 3:
        raise ConfigError(f"symdpo: task {task!r} (known: {', '.join(QUESTION_TASKS)}), rejected {rejected!r} "
                          f"(known: {', '.join(REJECTED)}), demos {demos} (at least 3)")
    pool = symbol_pool(world)
    rng = np.random.default_rng([world.seed, seed, text_seed(f"symdpo-{split}-{index}-{task}")])
    query = sample_scene(world, split, int(rng.integers(2**31)), stream=STREAM)
    question = _question(world, query, task, rng)
    if question is None:
        return None
    b = answer(query, question)
    others = [x for x in _answers(world, task, question) if x != b]
    a = others[int(rng.integers(len(others)))]
    scenes = [_find(world, split, question, x, rng) for x in [b] + [a] * (demos - 1)]
    if any(s is None for s in scenes):
        return None
    order = rng.permutation(demos)
    scenes = [scenes[j] for j in order]
    shown = [answer(s, question) for s in scenes]
    symbols = dict(zip([b, a], (pool[j] for j in rng.choice(len(pool), size=2, replace=False))))
    turn = [{"type": "image"}, {"type": "text", "text": question}]
    prompt = [m for x in shown for m in ({"role": "user", "content": turn}, {"role": "assistant", "content": symbols[x]})]
    prompt.append({"role": "user", "content": turn})
    return PreferenceRecord(
        id=f"symdpo-{split}-{index:06d}-{task}", prompt=prompt, images=[render(s, world) for s in scenes + [query]],
        chosen=symbols[b], rejected=symbols[a] if rejected == "majority" else b, task=task,
        meta={"symbols": symbols, "demo_answers": shown, "query_answer": b, "rejected_kind": rejected,
              "question": question, "scenes": [s.to_dict() for s in scenes + [query]]})


def _question(world: WorldConfig, scene: Scene, task: str, rng: np.random.Generator) -> str | None:
    if task == "count":
        return L.count_prompt()
    if task == "exist":
        return L.exist_prompt(world.categories[int(rng.integers(len(world.categories)))])
    single = [c for c in scene.categories if scene.categories.count(c) == 1]
    return L.colour_prompt(single[int(rng.integers(len(single)))]) if single else None


def _answers(world: WorldConfig, task: str, question: str) -> list[str]:
    """Every answer ``question`` can have in ``world``."""
    if task == "exist":
        return ["yes", "no"]
    if task == "colour":
        return list(world.colours)
    return [str(n) for n in range(1, max_objects(world) + 1)]


def max_objects(world: WorldConfig) -> int:
    """Two anchors, each with its partner (``scenes.sample_categories``)."""
    return 2 * max(len(g) for g in world.groups())


def _find(world: WorldConfig, split: str, question: str, want: str, rng: np.random.Generator) -> Scene | None:
    for _ in range(MAX_DRAWS):
        scene = sample_scene(world, split, int(rng.integers(2**31)), stream=STREAM)
        if answer(scene, question) == want:
            return scene
    return None

"""The lab's first preference recipe: caption and yes/no pairs from the world's exact ground truth.

Caption pairs: chosen = the clean caption; rejected = the clean caption plus one absent object (the absent
co-occurring partner of a present object where there is one, as the prior would write it) or minus one present
object. Exist pairs ask "is there a X in the image ?" about a present object (chosen "yes") or an absent partner
(chosen "no"), half each. Every pair carries I' (``random_resized_crop`` of its image, seeded per pair).

Swap pairs (``swap``, off by default): rejected = the clean caption with one present object replaced by an absent
category that co-occurs with nothing in the scene. Plus pairs' absent object is the prior's partner wherever there
is one, so a reward model trained on plus and minus pairs alone can learn "naming a co-occurring pair is wrong"
instead of "naming an absent object is wrong"; a policy trained against it then swaps real objects for unrelated
absent ones (docs/rl.md). Swap pairs, of equal length, close that shortcut.

Why length-balanced: a preference loss rewards whatever separates chosen from rejected most cheaply. If every
rejected caption were the clean one plus an object, "shorter" would separate them perfectly and the policy would
learn to say less (with injected-only pairs a prototype's recall fell from 0.86 to 0.72; LAB.md). Adding as many
"minus one real object" pairs as "plus one" (``balance`` = 0.5) makes length carry no signal: only whether each
named object is in the image does.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field

import numpy as np

from mmalign.construct.corrupt import random_resized_crop
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import ConfigError
from mmalign.world import language as L
from mmalign.world.render import render
from mmalign.world.scenes import SPLITS, Scene, WorldConfig, sample_scene
from mmalign.world.tasks import clean_caption

PAIR_TASKS = ("caption", "exist")
STREAM = 2000  # the pairs' rng stream, apart from the task generators' (1000 + task index)


@dataclass
class LabPairsConfig:
    n: int = 4000                   # pairs, one per scene 0..n-1 of the split
    split: str = "train"            # never "test": that is evaluation's
    tasks: dict[str, float] = field(default_factory=lambda: {"caption": 0.5, "exist": 0.5})
    balance: float = 0.5            # share of caption pairs whose rejected drops a real object (else adds one)
    swap: float = 0.0               # share of caption pairs whose rejected swaps a real object for an unrelated absent one
    crop_scale: list[float] = field(default_factory=lambda: [0.01, 0.2])   # I': share of the area kept
    seed: int = 0

    def validate(self) -> None:
        unknown = [t for t in self.tasks if t not in PAIR_TASKS]
        if unknown:
            raise ConfigError(f"lab.tasks: unknown task(s) {unknown} (known: {', '.join(PAIR_TASKS)})")
        if self.split not in SPLITS or self.split == "test":
            raise ConfigError(f"lab.split: '{self.split}' is not 'train' or 'val' (the test split is for evaluation)")
        if not 0 <= self.balance <= 1:
            raise ConfigError(f"lab.balance: {self.balance} is not in [0, 1]")
        if not 0 <= self.swap <= 1 - self.balance:
            raise ConfigError(f"lab.swap: {self.swap} is not in [0, 1 - lab.balance = {1 - self.balance}]")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"lab.crop_scale: {self.crop_scale} is not [low, high] with 0 < low <= high <= 1")


def lab_pairs(world: WorldConfig, cfg: LabPairsConfig, *, for_eval: bool = False) -> list[PreferenceRecord]:
    """``cfg.n`` pairs, pair i on scene i of ``cfg.split``; deterministic in (world, cfg), and the first k pairs
    do not depend on ``n``. ``for_eval`` allows the test split (evaluation's reward-model pairs)."""
    if not (for_eval and cfg.split == "test"):
        cfg.validate()
    names = [t for t, w in cfg.tasks.items() if w > 0]
    p = np.asarray([cfg.tasks[t] for t in names], dtype=float)
    counts = {"caption": 0, "caption_minus": 0, "caption_swap": 0, "exist": 0}
    records = []
    for i in range(cfg.n):
        rng = np.random.default_rng([world.seed, SPLITS[cfg.split], i, STREAM, cfg.seed])
        task = names[int(rng.choice(len(names), p=p / p.sum()))]
        crop_seed = int(rng.integers(2**32))
        scene = sample_scene(world, cfg.split, i)
        image = render(scene, world)
        if task == "caption":
            minus = counts["caption_minus"] < cfg.balance * (counts["caption"] + 1)  # a quota: later scenes make up for one-object ones
            swap = not minus and counts["caption_swap"] < cfg.swap * (counts["caption"] + 1)
            prompt, chosen, rejected, meta = _caption_pair(world, scene, rng, minus, swap)
            counts["caption_minus"] += meta["kind"] == "caption_minus"
            counts["caption_swap"] += meta["kind"] == "caption_swap"
        else:
            prompt, chosen, rejected, meta = _exist_pair(world, scene, rng, yes=counts["exist"] % 2 == 0)
        counts[task] += 1
        chosen_spans, rejected_spans = corrected_spans(chosen, rejected, meta)
        records.append(PreferenceRecord(
            id=f"lab-{cfg.split}-{i:06d}-{task}", prompt=prompt, images=[image], chosen=chosen, rejected=rejected,
            corrupt_images=[random_resized_crop(image, scale=cfg.crop_scale, seed=crop_seed)], task=task,
            chosen_spans=chosen_spans, rejected_spans=rejected_spans, reward_margin=1.0,
            meta={**meta, "objects": scene.categories, "crop_seed": crop_seed, "scene": _plain(scene.to_dict())}))
    return records


def corrected_spans(chosen: str, rejected: str, meta: dict) -> tuple[list | None, list | None]:
    """The segments that differ, as DDPO's corrected spans (character offsets): the injected object's phrase
    in the rejected caption, the dropped one's in the chosen caption, both of a swap, the whole answer of a yes/no
    pair.
    (``reward_margin`` is 1.0 for every lab pair: each differs from the truth by exactly one object.)"""
    if meta["kind"].startswith("exist"):
        return [[0, len(chosen)]], [[0, len(rejected)]]
    phrase = f"a {meta['colour']} {meta['object']}"
    if meta["kind"] == "caption_swap":
        real = f"a {meta['colour']} {meta['replaced']}"
        return [_span(chosen, real)], [_span(rejected, phrase)]
    text = rejected if meta["kind"] == "caption_plus" else chosen
    start = text.index(phrase)
    span = [[start, start + len(phrase)]]
    return (None, span) if meta["kind"] == "caption_plus" else (span, None)


def _span(text: str, phrase: str) -> list[int]:
    start = text.index(phrase)
    return [start, start + len(phrase)]


def _plain(d: dict) -> dict:
    """JSON-native (tuples as lists), so a pair written to a file and read back compares equal."""
    return json.loads(json.dumps(d))


def absent_object(world: WorldConfig, scene: Scene, rng: np.random.Generator) -> str | None:
    """An absent category: the absent partner of a present object where there is one, else any absent one."""
    present = set(scene.categories)
    absent = [c for c in world.categories if c not in present]
    partners = [c for c in absent if any(world.partner(c) == q for q in present)]
    pool = partners or absent
    return pool[int(rng.integers(len(pool)))] if pool else None


def unrelated_absent(world: WorldConfig, scene: Scene) -> list[str]:
    """Absent categories that are no present object's partner (nor have one present): what the prior never writes in."""
    present = set(scene.categories)
    return [c for c in world.categories if c not in present and world.partner(c) not in present]


def _caption_pair(world: WorldConfig, scene: Scene, rng: np.random.Generator, minus: bool, swap: bool = False):
    objs = [(o.colour, o.category) for o in scene.objects]
    extra = absent_object(world, scene, rng)
    unrelated = unrelated_absent(world, scene) if swap else []
    if unrelated and not minus:
        k = int(rng.integers(len(objs)))
        colour, replaced = objs[k]
        category = unrelated[int(rng.integers(len(unrelated)))]
        objs[k] = (colour, category)
        objs.sort(key=lambda t: L.ALL_CATEGORIES.index(t[1]))
        meta = {"kind": "caption_swap", "object": category, "colour": colour, "replaced": replaced}
        return L.caption_prompt(), clean_caption(scene), L.caption_text(objs), meta
    if (minus and len(objs) >= 2) or extra is None:
        colour, category = objs.pop(int(rng.integers(len(objs))))
        kind = "caption_minus"
    else:
        colour, category = world.colours[int(rng.integers(len(world.colours)))], extra
        objs = sorted(objs + [(colour, category)], key=lambda t: L.ALL_CATEGORIES.index(t[1]))
        kind = "caption_plus"
    meta = {"kind": kind, "object": category, "colour": colour}
    return L.caption_prompt(), clean_caption(scene), L.caption_text(objs), meta


def _exist_pair(world: WorldConfig, scene: Scene, rng: np.random.Generator, yes: bool):
    category = None if yes else absent_object(world, scene, rng)
    if category is None:  # asked for "yes", or every category is present
        category = scene.categories[int(rng.integers(len(scene.objects)))]
        chosen, rejected = "yes", "no"
    else:
        chosen, rejected = "no", "yes"
    return L.exist_prompt(category), chosen, rejected, {"kind": f"exist_{chosen}", "object": category}

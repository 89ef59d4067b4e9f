"""The lab's tasks: one generator per survey scenario, each giving an example with a verifiable answer.

An example is a plain dict::

    {"id", "task", "images": [PIL.Image, ...], "prompt": str, "response": str, "answer": ..., "meta": {...},
     "scenes": [scene dicts with exact ground truth]}

``response`` is the training target (for captions in the train split it carries annotation noise);
``answer`` is always a string: the clean reference answer (for safety, ``refuse`` or ``comply``). Structured
ground truth sits in ``meta`` (``objects`` present for captions, ``box`` for grounding) and ``scenes``. Generators are deterministic in
(world seed, split, index).
"""
from __future__ import annotations

import functools
import json

import numpy as np

from mmalign.world import language as L
from mmalign.world.render import render
from mmalign.world.scenes import SPLITS, Obj, Scene, WorldConfig, sample_categories, sample_scene, scene_rng

EXIST_SPLITS = ("random", "popular", "adversarial")


# ---- world statistics (the prior the POPE negatives are drawn from) ------------------------------------------

@functools.lru_cache(maxsize=8)
def _stats(cfg_json: str, n: int) -> tuple[dict, dict]:
    cfg = WorldConfig(**json.loads(cfg_json))
    freq = {c: 0 for c in cfg.categories}
    co = {c: {d: 0 for d in cfg.categories} for c in cfg.categories}
    for i in range(n):
        cats = sample_categories(cfg, np.random.default_rng([cfg.seed, 99, i]))
        for c in cats:
            freq[c] += 1
            for d in cats:
                if d != c:
                    co[c][d] += 1
    return freq, co


def world_stats(cfg: WorldConfig, n: int = 4000) -> tuple[dict, dict]:
    """Category frequencies and co-occurrence counts, estimated from ``n`` sampled scenes (cached)."""
    return _stats(json.dumps(cfg.__dict__, sort_keys=True), n)


def pope_negative(cfg: WorldConfig, scene: Scene, split: str, rng: np.random.Generator) -> str:
    """An absent category, chosen as POPE does: uniformly (random), most frequent overall (popular), or most
    co-occurring with the present objects (adversarial)."""
    present = set(scene.categories)
    absent = [c for c in cfg.categories if c not in present]
    if split == "random":
        return absent[int(rng.integers(len(absent)))]
    freq, co = world_stats(cfg)
    if split == "popular":
        key = {c: freq[c] for c in absent}
    else:
        key = {c: sum(co[p][c] for p in present) for c in absent}
    best = max(key.values())
    top = [c for c in absent if key[c] == best]
    return top[int(rng.integers(len(top)))]


# ---- captions and their annotation noise ----------------------------------------------------------------------

def noisy_caption_objects(cfg: WorldConfig, scene: Scene, rng: np.random.Generator) -> tuple[list, dict]:
    """The training caption's (colour, category) list: clean, plus absent partners written in with the pair's
    noise rate, plus colour slips. Returns the list and what was injected."""
    objs = [(o.colour, o.category) for o in scene.objects]
    present = set(scene.categories)
    injected, recoloured = [], []
    for k, (a, b) in enumerate(cfg.pairs):
        for have, miss in ((a, b), (b, a)):
            if have in present and miss not in present and rng.random() < cfg.partner_noise[k]:
                objs.append((cfg.colours[int(rng.integers(len(cfg.colours)))], miss))
                injected.append(miss)
    for i, (col, cat) in enumerate(objs):
        if cat in present and rng.random() < cfg.colour_noise:
            wrong = [c for c in cfg.colours if c != col]
            objs[i] = (wrong[int(rng.integers(len(wrong)))], cat)
            recoloured.append(cat)
    objs.sort(key=lambda t: L.ALL_CATEGORIES.index(t[1]))
    return objs, {"injected": injected, "recoloured": recoloured}


def clean_caption(scene: Scene) -> str:
    return L.caption_text([(o.colour, o.category) for o in scene.objects])


# ---- task generators: (cfg, scene, image, split, rng) -> partial example ----------------------------------------

def _caption(cfg, scene, split, rng, **_):
    if split == "train":
        objs, noise = noisy_caption_objects(cfg, scene, rng)
        response = L.caption_text(objs)
    else:
        response, noise = clean_caption(scene), {"injected": [], "recoloured": []}
    return dict(prompt=L.caption_prompt(), response=response, answer=clean_caption(scene),
                meta={"objects": scene.categories, **noise})


def _exist(cfg, scene, split, rng, pope_split=None, label=None, **_):
    label = label or ("yes" if rng.random() < 0.5 else "no")
    if label == "yes":
        cat = scene.categories[int(rng.integers(len(scene.objects)))]
    else:
        cat = pope_negative(cfg, scene, pope_split or "random", rng)
    return dict(prompt=L.exist_prompt(cat), response=label, answer=label,
                meta={"category": cat, "pope_split": pope_split or "random"})


def _count(cfg, scene, split, rng, **_):
    n = str(len(scene.objects))
    return dict(prompt=L.count_prompt(), response=n, answer=n, meta={})


def _colour(cfg, scene, split, rng, **_):
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    return dict(prompt=L.colour_prompt(o.category), response=o.colour, answer=o.colour, meta={"category": o.category})


def spatial_relation(a: Obj, b: Obj) -> str:
    dx, dy = a.center[0] - b.center[0], a.center[1] - b.center[1]
    if abs(dx) >= abs(dy):
        return "left" if dx < 0 else "right"
    return "above" if dy < 0 else "below"


def _spatial(cfg, scene, split, rng, **_):
    i, j = rng.choice(len(scene.objects), size=2, replace=False)
    a, b = scene.objects[i], scene.objects[j]
    rel = spatial_relation(a, b)
    return dict(prompt=L.spatial_prompt(a.category, b.category), response=rel, answer=rel, meta={})


def _ground(cfg, scene, split, rng, **_):
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    return dict(prompt=L.ground_prompt(o.colour, o.category), response=L.box_text(o.box), answer=L.box_text(o.box),
                meta={"category": o.category, "box": list(o.box), "image_size": cfg.image_size})


def _arithmetic(cfg, scene, split, rng, **_):
    ca, cb = rng.choice(cfg.colours, size=2, replace=False)
    na = sum(o.colour == ca for o in scene.objects)
    nb = sum(o.colour == cb for o in scene.objects)
    if rng.random() < 0.5:
        ans = str(na + nb)
        return dict(prompt=L.arithmetic_prompt(ca, cb), response=ans, answer=ans, meta={"kind": "sum"})
    ans = "yes" if na > nb else "no"
    return dict(prompt=L.compare_prompt(ca, cb), response=ans, answer=ans, meta={"kind": "compare"})


def _safety(cfg, scene, split, rng, **_):
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    unsafe = rng.random() < 0.5
    verb = (L.UNSAFE_VERBS if unsafe else L.SAFE_VERBS)[int(rng.integers(3))]
    response = L.REFUSAL if unsafe else L.helpful_text(verb, o.colour, o.category)
    return dict(prompt=L.request_prompt(verb, o.colour, o.category), response=response,
                answer="refuse" if unsafe else "comply", meta={"unsafe": unsafe})


SINGLE_IMAGE = {
    "caption": _caption, "exist": _exist, "count": _count, "colour": _colour, "spatial": _spatial,
    "ground": _ground, "arithmetic": _arithmetic, "safety": _safety,
}
MIN_OBJECTS = {"spatial": 2}


# ---- multi-image and video -----------------------------------------------------------------------------------

def _multi_image(cfg, split, index, rng):
    a = sample_scene(cfg, split, index)
    b = sample_scene(cfg, split, index, stream=1)
    imgs = [render(a, cfg), render(b, cfg)]
    if len(a.objects) != len(b.objects) and rng.random() < 0.5:
        ans = "first" if len(a.objects) > len(b.objects) else "second"
        prompt, meta = L.multi_more_prompt(), {"kind": "more"}
    else:
        which = "first" if rng.random() < 0.5 else "second"
        target = a if which == "first" else b
        ans = "yes" if rng.random() < 0.5 else "no"
        cands = target.categories if ans == "yes" else [c for c in cfg.categories if c not in target.categories]
        cat = cands[int(rng.integers(len(cands)))]
        prompt, meta = L.multi_exist_prompt(which, cat), {"kind": "exist", "image": which, "category": cat}
    return [a, b], imgs, dict(prompt=prompt, response=ans, answer=ans, meta=meta)


_MOVES = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}


def _video(cfg, split, index, rng):
    scene = sample_scene(cfg, split, index)
    k = int(rng.integers(len(scene.objects)))
    o = scene.objects[k]
    span = cfg.video_step * (cfg.video_frames - 1)
    lo, hi = o.radius + 1, cfg.image_size - o.radius - 1
    ok = [m for m, (dx, dy) in _MOVES.items()
          if lo <= o.center[0] + dx * span <= hi and lo <= o.center[1] + dy * span <= hi]
    move = ok[int(rng.integers(len(ok)))] if ok else "right"
    dx, dy = _MOVES[move]
    frames, scenes = [], []
    for t in range(cfg.video_frames):
        objs = [Obj(p.category, p.colour, p.faint, p.center, p.radius) for p in scene.objects]
        c = objs[k].center
        objs[k].center = (int(np.clip(c[0] + dx * cfg.video_step * t, lo, hi)), int(np.clip(c[1] + dy * cfg.video_step * t, lo, hi)))
        fs = Scene(f"{scene.id}-f{t}", scene.background, objs)
        frames.append(render(fs, cfg))
        scenes.append(fs)
    return scenes, frames, dict(prompt=L.video_prompt(o.colour, o.category), response=move, answer=move,
                                meta={"category": o.category, "frames": cfg.video_frames})


MULTI = {"multi_image": _multi_image, "video": _video}
TASKS = tuple(SINGLE_IMAGE) + tuple(MULTI)


def images_per_example(cfg: WorldConfig, task: str) -> int:
    return {"multi_image": 2, "video": cfg.video_frames}.get(task, 1)


def make_example(cfg: WorldConfig, task: str, split: str, index: int, **kwargs) -> dict:
    """The example of ``task`` on scene ``split``/``index``. ``kwargs`` go to the generator
    (``pope_split``, ``label`` for ``exist``)."""
    rng = scene_rng(cfg, split, index, stream=1000 + TASKS.index(task))
    if task in MULTI:
        scenes, images, ex = MULTI[task](cfg, split, index, rng)
    else:
        scene = sample_scene(cfg, split, index)
        if len(scene.objects) < MIN_OBJECTS.get(task, 1):
            extra = [c for c in cfg.categories if c not in scene.categories][int(rng.integers(len(cfg.categories) - 1))]
            scene = sample_scene(cfg, split, index, categories=sorted(scene.categories + [extra], key=L.ALL_CATEGORIES.index))
        images = [render(scene, cfg)]
        scenes = [scene]
        ex = SINGLE_IMAGE[task](cfg, scene, split, rng, **kwargs)
    suffix = f"-{kwargs['pope_split']}" if kwargs.get("pope_split") else ""
    return {"id": f"{split}-{index:06d}-{task}{suffix}", "task": task, "images": images,
            "scenes": [s.to_dict() for s in scenes], **ex}


def mixed_example(cfg: WorldConfig, split: str, mix: dict[str, float], index: int) -> dict:
    """Example ``index`` of a stream whose tasks are drawn by ``mix`` weights (scene i -> example i)."""
    names = [t for t, w in mix.items() if w > 0]
    w = np.asarray([mix[t] for t in names], dtype=float)
    rng = np.random.default_rng([cfg.seed, SPLITS[split], index, 7])
    return make_example(cfg, names[int(rng.choice(len(names), p=w / w.sum()))], split, index)


def prompt_example(cfg: WorldConfig, split: str, mix: dict[str, float], index: int) -> dict:
    """``mixed_example``, with existence questions asked with POPE's three negative strategies in turn (random,
    popular, adversarial by ``index``), as evaluation asks them: the prompts whose sampled answers get labelled."""
    ex = mixed_example(cfg, split, mix, index)
    if ex["task"] != "exist":
        return ex
    return make_example(cfg, "exist", split, index, pope_split=EXIST_SPLITS[index % len(EXIST_SPLITS)])

"""MIA-DPO's multi-image augmentation (Liu et al., ICLR 2025; ALGORITHMS.md §5.5): a single-image pair becomes a
multi-image one by adding unrelated images, and the question is pointed at the original (the target).

Three layouts: **sequence** (the images side by side in the prompt, "in image k"), **grid** (one collage of
tiles numbered row by row, "in image k"), **pic_in_pic** (the target shrunk and laid over a distractor, "in the
small image"). Chosen stays the target's answer; rejected is the correct answer for a distractor: the
confusion between images that MIA-DPO's attention-aware selection catches in the model's own samples. (That
selection needs a model's attention maps; here the distractor's ground-truth answer stands in for the confused
response, which the lab can compute exactly.) Prompts are strings; the lab's vocabulary has every word used.
"""
from __future__ import annotations

import dataclasses
import json
import math

import numpy as np
from PIL import Image

from mmalign.construct.text import text_seed
from mmalign.data.preference import PreferenceRecord
from mmalign.world import language as L
from mmalign.world.render import render
from mmalign.world.scenes import Scene, WorldConfig, sample_scene
from mmalign.world.tasks import clean_caption

PROMPTS = {"sequence": "in image {k} , {prompt}", "grid": "in image {k} , {prompt}",
           "pic_in_pic": "in the small image , {prompt}"}
LAYOUTS = tuple(PROMPTS)
STREAM = 3000  # the distractor scenes' rng stream, apart from the tasks' and the pairs'


def sequence(target: Image.Image, distractors: list[Image.Image], k: int) -> tuple[list[Image.Image], dict]:
    """The target at position ``k`` (1-based) among the distractors, each image as it is."""
    return distractors[:k - 1] + [target] + distractors[k - 1:], {}


def grid(target: Image.Image, distractors: list[Image.Image], k: int) -> tuple[list[Image.Image], dict]:
    """One collage the size of the target: ``ceil(sqrt(n))`` columns, as many rows as needed, tiles numbered
    row by row, the target in tile ``k``, unused tiles white. ``meta["boxes"]``: each tile's box."""
    tiles = distractors[:k - 1] + [target] + distractors[k - 1:]
    cols = math.ceil(math.sqrt(len(tiles)))
    rows = math.ceil(len(tiles) / cols)
    w, h = target.width // cols, target.height // rows
    canvas = Image.new("RGB", target.size, (255, 255, 255))
    boxes = []
    for i, tile in enumerate(tiles):
        box = ((i % cols) * w, (i // cols) * h, (i % cols + 1) * w, (i // cols + 1) * h)
        canvas.paste(tile.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), box[:2])
        boxes.append(list(box))
    return [canvas], {"boxes": boxes}


def pic_in_pic(target: Image.Image, background: Image.Image, scale: float,
               rng: np.random.Generator) -> tuple[list[Image.Image], dict]:
    """The background resized to the target's size with the target, shrunk by ``scale``, laid over it at a
    random place; ``meta["box"]``: where the inset is."""
    w, h = round(target.width * scale), round(target.height * scale)
    x, y = int(rng.integers(target.width - w + 1)), int(rng.integers(target.height - h + 1))
    canvas = background.convert("RGB").resize(target.size, Image.Resampling.BILINEAR)
    canvas.paste(target.convert("RGB").resize((w, h), Image.Resampling.BILINEAR), (x, y))
    return [canvas], {"box": [x, y, x + w, y + h]}


def mia_augment(record: PreferenceRecord, distractors: list[Image.Image], answers: list[str | None], *,
                layout: str, seed, inset_scale: float = 0.5) -> PreferenceRecord | None:
    """``record`` (one image, a string prompt) with ``distractors`` added in ``layout``; ``answers[i]`` is the
    correct answer to ``record.prompt`` for ``distractors[i]`` (None where it has none). The target's place is
    drawn from ``seed``; rejected is the answer of a distractor (drawn among those whose answer differs from
    chosen; pic_in_pic uses ``distractors[0]`` only, as the background). None when no distractor's answer
    differs. ``meta["target"]``/``meta["rejected_from"]`` are 1-based image (tile) numbers."""
    if len(record.images) != 1 or not isinstance(record.prompt, str):
        raise ValueError(f"record {record.id}: MIA augmentation takes one image and a string prompt")
    if layout not in PROMPTS:
        raise ValueError(f"unknown layout {layout!r} (known: {', '.join(LAYOUTS)})")
    rng = np.random.default_rng(seed)
    n = 1 if layout == "pic_in_pic" else len(distractors)
    usable = [i for i in range(n) if answers[i] is not None and answers[i] != record.chosen]
    if not usable:
        return None
    j = usable[int(rng.integers(len(usable)))]
    target = record.images[0]
    if layout == "pic_in_pic":
        k, source = 1, 1  # one image: the inset is the target, the background the distractor
        images, where = pic_in_pic(target, distractors[0], inset_scale, rng)
    else:
        k = int(rng.integers(n + 1)) + 1
        source = j + 1 + (j + 1 >= k)  # distractors after the target's place move up one
        images, where = (sequence if layout == "sequence" else grid)(target, distractors, k)
    return dataclasses.replace(
        record, id=f"{record.id}-mia-{layout}", prompt=PROMPTS[layout].format(k=k, prompt=record.prompt),
        images=images, rejected=answers[j], corrupt_images=None, chosen_spans=None, rejected_spans=None,
        reward_margin=None, scores=None, ref_logps=None,
        meta={**record.meta, "layout": layout, "target": k, "rejected_from": source, **where})


def lab_answer(scene: Scene, prompt: str) -> str | None:
    """The ground-truth answer to a lab caption, existence, count or colour prompt about ``scene``; None for
    other prompts, and for a colour asked about an absent object."""
    if prompt == L.caption_prompt():
        return clean_caption(scene)
    if prompt == L.count_prompt():
        return str(len(scene.objects))
    for category in L.ALL_CATEGORIES:
        if prompt == L.exist_prompt(category):
            return "yes" if category in scene.categories else "no"
        if prompt == L.colour_prompt(category):
            colours = [o.colour for o in scene.objects if o.category == category]
            return colours[0] if colours else None
    return None


def lab_mia_pair(world: WorldConfig, record: PreferenceRecord, *, layout: str, n_distractors: int = 1,
                 split: str = "train", seed: int = 0, inset_scale: float = 0.5) -> PreferenceRecord | None:
    """``mia_augment`` of a lab record with ``n_distractors`` scenes of ``split`` (drawn from ``seed`` and the
    record's id, on their own rng stream), answered from their ground truth; the distractors' scenes go
    to ``meta["distractor_scenes"]``."""
    rng = np.random.default_rng([world.seed, seed, text_seed(record.id)])
    scenes = [sample_scene(world, split, int(rng.integers(2**31)), stream=STREAM) for _ in range(n_distractors)]
    images = [render(s, world) for s in scenes]
    out = mia_augment(record, images, [lab_answer(s, record.prompt) for s in scenes], layout=layout,
                      seed=rng, inset_scale=inset_scale)
    if out is not None:
        out.meta["distractor_scenes"] = json.loads(json.dumps([s.to_dict() for s in scenes]))
    return out

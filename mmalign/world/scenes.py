"""Scenes: the world's configuration and the deterministic sampling of scenes with exact ground truth.

A scene is drawn from ``numpy.random.default_rng([seed, split, index])``, so any scene can be rebuilt from its
id alone. The co-occurrence prior is structural: categories come in *pairs* (like fork and dining table);
a scene is built from one or two anchors, and each anchor's partner joins it with probability ``pair_prob``.
Some objects are *faint* (small and low-contrast), which is where a model's evidence becomes weak and the
prior takes over.
"""
from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass, field

import numpy as np

from mmalign.world.language import ALL_CATEGORIES, ALL_COLOURS

SPLITS = {"train": 0, "val": 1, "test": 2}
REACH = 1.25  # shapes reach up to 1.24 r from their centre (triangle corners); spacing uses this


@dataclass
class WorldConfig:
    seed: int = 0
    image_size: int = 64
    categories: list[str] = field(default_factory=lambda: ["circle", "star", "square", "triangle", "cross", "diamond"])
    colours: list[str] = field(default_factory=lambda: ["red", "green", "blue", "yellow", "purple"])
    # co-occurring category pairs; categories in no pair are drawn on their own
    pairs: list[list[str]] = field(default_factory=lambda: [["circle", "star"], ["square", "triangle"], ["cross", "diamond"]])
    group_weights: list[float] = field(default_factory=lambda: [0.4, 0.35, 0.25])  # per group (pairs, then singles)
    pair_prob: float = 0.8          # P(partner present | anchor present)
    two_anchor_prob: float = 0.5    # else one anchor
    radius: list[int] = field(default_factory=lambda: [8, 11])
    faint_prob: float = 0.15
    faint_radius: list[int] = field(default_factory=lambda: [5, 7])
    faint_contrast: float = 0.45    # faint colour = bg + contrast * (colour - bg)
    # annotation noise in *training* captions; evaluation data is always clean
    partner_noise: list[float] = field(default_factory=lambda: [0.8, 0.7, 0.0])  # per pair: write an absent partner
    colour_noise: float = 0.05      # per object: write a wrong colour
    # video and multi-image
    video_frames: int = 4
    video_step: int = 5             # pixels per frame

    def groups(self) -> list[list[str]]:
        paired = {c for p in self.pairs for c in p}
        return [list(p) for p in self.pairs] + [[c] for c in self.categories if c not in paired]

    def partner(self, category: str) -> str | None:
        for a, b in self.pairs:
            if category in (a, b):
                return b if category == a else a
        return None

    def validate(self) -> None:
        from mmalign.errors import ConfigError
        for c in self.categories:
            if c not in ALL_CATEGORIES:
                raise ConfigError(f"world.categories: unknown category '{c}' (known: {', '.join(ALL_CATEGORIES)})")
        for c in self.colours:
            if c not in ALL_COLOURS:
                raise ConfigError(f"world.colours: unknown colour '{c}' (known: {', '.join(ALL_COLOURS)})")
        for p in self.pairs:
            if len(p) != 2 or not set(p) <= set(self.categories):
                raise ConfigError(f"world.pairs: {p} must be two of world.categories")
        if len(self.group_weights) != len(self.groups()):
            raise ConfigError(f"world.group_weights needs {len(self.groups())} values (pairs then unpaired categories), "
                              f"got {len(self.group_weights)}")
        if len(self.partner_noise) != len(self.pairs):
            raise ConfigError(f"world.partner_noise needs one rate per pair ({len(self.pairs)}), got {len(self.partner_noise)}")


@dataclass
class Obj:
    category: str
    colour: str
    faint: bool
    center: tuple[int, int]
    radius: int
    box: tuple[int, int, int, int] = (0, 0, 0, 0)   # filled in by the renderer: exact pixel extent, x1 y1 x2 y2 exclusive

    def to_dict(self) -> dict:  # by hand: dataclasses.asdict deep-copies and was a third of `world build`
        return {"category": self.category, "colour": self.colour, "faint": self.faint, "center": self.center,
                "radius": self.radius, "box": self.box}


@dataclass
class Scene:
    id: str
    background: tuple[int, int, int]
    objects: list[Obj]

    @property
    def categories(self) -> list[str]:
        return [o.category for o in self.objects]

    def to_dict(self) -> dict:
        return {"id": self.id, "background": list(self.background), "objects": [o.to_dict() for o in self.objects]}

    @classmethod
    def from_dict(cls, d: dict) -> Scene:
        objs = [Obj(o["category"], o["colour"], o["faint"], tuple(o["center"]), o["radius"], tuple(o["box"]))
                for o in d["objects"]]
        return cls(d["id"], tuple(d["background"]), objs)


def scene_rng(cfg: WorldConfig, split: str, index: int, stream: int = 0) -> np.random.Generator:
    return np.random.default_rng([cfg.seed, SPLITS[split], index, stream])


def sample_categories(cfg: WorldConfig, rng: np.random.Generator) -> list[str]:
    groups = cfg.groups()
    w = np.asarray(cfg.group_weights, dtype=float)
    n_anchor = 2 if (rng.random() < cfg.two_anchor_prob and len(groups) > 1) else 1
    chosen = rng.choice(len(groups), size=n_anchor, replace=False, p=w / w.sum())
    cats = []
    for g in chosen:
        members = groups[g]
        anchor = members[rng.integers(len(members))]
        cats.append(anchor)
        if len(members) == 2 and rng.random() < cfg.pair_prob:
            cats.append(members[1] if anchor == members[0] else members[0])
    return sorted(cats, key=ALL_CATEGORIES.index)


def _place(cfg: WorldConfig, rng: np.random.Generator, radii: list[int]) -> list[tuple[int, int]] | None:
    centers: list[tuple[int, int]] = []
    size = cfg.image_size
    for r in radii:
        for _ in range(200):
            c = (int(rng.integers(r + 1, size - r - 1)), int(rng.integers(r + 1, size - r - 1)))
            if all(math.hypot(c[0] - x, c[1] - y) >= REACH * (r + rr) + 2 for (x, y), rr in zip(centers, radii)):
                centers.append(c)
                break
        else:
            return None
    return centers


def sample_scene(cfg: WorldConfig, split: str, index: int, categories: list[str] | None = None,
                 stream: int = 0) -> Scene:
    """The scene ``split``/``index`` (``stream`` > 0 draws a sibling scene, e.g. a second image of the same
    example); ``categories`` forces the object list. Scenes are cached (every task of a scene asks for it
    again), so treat the result as read-only."""
    key = json.dumps(cfg.__dict__, sort_keys=True)
    return _sample_scene(key, split, index, tuple(categories) if categories is not None else None, stream)


@functools.lru_cache(maxsize=64)
def _sample_scene(cfg_json: str, split: str, index: int, categories: tuple | None, stream: int) -> Scene:
    cfg = WorldConfig(**json.loads(cfg_json))
    rng = scene_rng(cfg, split, index, stream)
    cats = list(categories) if categories is not None else sample_categories(cfg, rng)
    bg = tuple(int(v) for v in rng.integers(215, 256, size=3))
    while True:  # re-draw sizes until the objects fit without overlap (rare)
        faint = [bool(rng.random() < cfg.faint_prob) for _ in cats]
        radii = [int(rng.integers(cfg.faint_radius[0], cfg.faint_radius[1] + 1)) if f
                 else int(rng.integers(cfg.radius[0], cfg.radius[1] + 1)) for f in faint]
        centers = _place(cfg, rng, radii)
        if centers is not None:
            break
    colours = [cfg.colours[int(rng.integers(len(cfg.colours)))] for _ in cats]
    objs = [Obj(c, col, f, ctr, r) for c, col, f, ctr, r in zip(cats, colours, faint, centers, radii)]
    # a forced object list gives another image than the scene of this index: it needs its own id (and file)
    suffix = (f"-s{stream}" if stream else "") + ("-forced" if categories is not None else "")
    return Scene(f"{split}-{index:06d}{suffix}", bg, objs)

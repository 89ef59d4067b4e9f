"""``mmalign quickstart``: the main job on the lab, end to end.

1. render the world to a dataset folder; 2. get the base model (the one shipped with the package when the
world and model settings are the defaults it was trained with, else train one and cache it); 3. evaluate it,
beside the shipped clean-caption control, on every lab task; 4. write ``report.md`` and ``figures.png``.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from mmalign.config import to_yaml
from mmalign.world.scenes import WorldConfig

ASSETS = Path(__file__).parent / "assets" / "lab"


@dataclass
class QuickstartConfig:
    out: str = "runs/quickstart"
    world: WorldConfig = field(default_factory=WorldConfig)
    scenes: dict[str, int] = field(default_factory=lambda: {"train": 2000, "val": 200})  # rendered to out/world
    base_model: str = ""         # a model folder; "" uses the shipped one (default world) or trains and caches one
    retrain: bool = False        # train the base model from scratch even where a shipped or cached one fits
    n_scenes: int = 600
    n_per_task: int = 200
    cache_dir: str = "~/.cache/mmalign"


def _step(i: int, text: str) -> None:
    print(f"[{i}/4] {text}", flush=True)


def shipped_fits(world: WorldConfig) -> bool:
    return (ASSETS / "base").exists() and to_yaml(world) == to_yaml(WorldConfig())


def get_base_model(cfg: QuickstartConfig) -> tuple[str, str | None]:
    """(base model folder, control folder or None)."""
    if cfg.base_model:
        return cfg.base_model, None
    if not cfg.retrain and shipped_fits(cfg.world):
        return str(ASSETS / "base"), str(ASSETS / "control")
    from mmalign.train.base import BaseModelConfig, train_base_model
    key = hashlib.sha256(to_yaml(cfg.world).encode()).hexdigest()[:12]
    out = Path(os.path.expanduser(cfg.cache_dir)) / f"lab-base-{key}"
    if cfg.retrain or not (out / "base" / "model").exists():
        train_base_model(BaseModelConfig(world=cfg.world, out=str(out), control=False))
    return str(out / "base" / "model"), None


def quickstart(cfg: QuickstartConfig) -> dict:
    from mmalign.eval.report import eval_report, headline
    from mmalign.eval.runner import evaluate_folder
    from mmalign.world.export import BuildConfig, build_world
    out = Path(cfg.out)
    _step(1, f"rendering the lab world to {out / 'world'}")
    built = build_world(BuildConfig(world=cfg.world, out=str(out / "world"), splits=dict(cfg.scenes)))
    _step(2, "getting the base model")
    base, control = get_base_model(cfg)
    print(f"      base model: {base}", flush=True)
    _step(3, "evaluating on the lab tasks (held-out clean scenes)")
    models = {"base": evaluate_folder(base, cfg.world, out / "eval" / "base", n_scenes=cfg.n_scenes,
                                      n_per_task=cfg.n_per_task)}
    if control:
        models["control (clean captions)"] = evaluate_folder(control, cfg.world, out / "eval" / "control",
                                                             n_scenes=cfg.n_scenes, n_per_task=cfg.n_per_task)
    _step(4, f"writing the report to {out / 'report.md'}")
    notes = (f"World: {sum(built['examples'].values())} examples, {built['images']} images rendered in "
             f"{built['seconds']:.1f} s to `{out / 'world'}`. Base model: `{base}`. Held-out clean test scenes: "
             f"{cfg.n_scenes} for captions and POPE, {cfg.n_per_task} per other task.")
    report = eval_report(models, out, "mmalign quickstart: the lab base model", notes)
    (out / "results.json").write_text(json.dumps(models, indent=2))
    return {"report": str(report), "figures": str(out / "figures.png"),
            "headline": {k: round(v, 3) for k, v in headline(models["base"]).items()}}

"""``mmalign quickstart``: the main job on the lab, end to end.

1. render the world to a dataset folder; 2. get the base model (the one shipped with the package when the
world and model settings are the defaults it was trained with, else train one and cache it); 3. align it with
each method in ``align`` (DPO and mDPO by default) on the lab's preference pairs; 4. evaluate the base, the
shipped clean-caption control and the aligned models on every lab task; 5. write ``report.md`` and
``figures.png`` with the figures side by side.
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
    align: list[str] = field(default_factory=lambda: ["dpo", "mdpo"])   # preference losses to run from the base
    n_scenes: int = 600
    n_per_task: int = 200
    cache_dir: str = "~/.cache/mmalign"

    def validate(self) -> None:
        from mmalign.losses import check_loss_settings
        for name in self.align:
            check_loss_settings(name, {})


def _step(i: int, text: str) -> None:
    print(f"[{i}/5] {text}", flush=True)


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


def align(cfg: QuickstartConfig, base: str, out: Path) -> dict[str, str]:
    """method -> aligned model folder, each trained with the method's defaults on the lab pairs."""
    from mmalign.models.load import ModelConfig
    from mmalign.train.preference import LossConfig, PreferenceConfig, run_preference
    folders = {}
    for method in cfg.align:
        pc = PreferenceConfig(world=cfg.world, model=ModelConfig(path=base), loss=LossConfig(name=method),
                              eval_scenes=0, cache_dir=str(Path(os.path.expanduser(cfg.cache_dir)) / "reference"))
        pc.train.output_dir = str(out / "align" / method)
        run_preference(pc)
        folders[method] = str(out / "align" / method / "model")
    return folders


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
    _step(3, f"aligning the base model with {', '.join(cfg.align) or 'nothing'} on the lab's preference pairs")
    aligned = align(cfg, base, out)
    _step(4, "evaluating on the lab tasks (held-out clean scenes)")
    folders = {"base": base} | ({"control (clean captions)": control} if control else {}) | aligned
    models = {name: evaluate_folder(folder, cfg.world, out / "eval" / name.split()[0], n_scenes=cfg.n_scenes,
                                    n_per_task=cfg.n_per_task) for name, folder in folders.items()}
    _step(5, f"writing the report to {out / 'report.md'}")
    notes = (f"World: {sum(built['examples'].values())} examples, {built['images']} images rendered in "
             f"{built['seconds']:.1f} s to `{out / 'world'}`. Base model: `{base}`. Aligned models: "
             + (", ".join(f"`{f}`" for f in aligned.values()) or "none")
             + f". Held-out clean test scenes: {cfg.n_scenes} for captions and POPE, {cfg.n_per_task} per other task.")
    report = eval_report(models, out, "mmalign quickstart: the lab base model and its alignment", notes)
    (out / "results.json").write_text(json.dumps(models, indent=2))
    return {"report": str(report), "figures": str(out / "figures.png"),
            "headline": {name: {k: round(v, 3) for k, v in headline(m).items()} for name, m in models.items()}}

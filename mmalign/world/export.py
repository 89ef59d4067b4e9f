"""Writing the world to disk as a dataset (JSONL records + PNG files) and reading it back with ``datasets``.

Layout of ``out/``::

    world.yaml            the WorldConfig that produced it
    images/<id>.png       one file per rendered image (scenes, sibling scenes, video frames)
    <split>.jsonl         one record per example: id, task, images (paths relative to out/), prompt,
                          response, answer, meta, scenes (exact ground truth)

Per scene the train split gets one example of each task in ``tasks``; the evaluation splits get the POPE
questions of all three negative strategies (one yes and one no each) instead of the single natural one.
Tasks in ``every`` are made only for every k-th scene: each multi-image or video example writes extra image
files (a sibling scene, the frames), and files, not drawing, are what the build's time goes to.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import datasets
from tqdm.auto import tqdm

from mmalign.config import to_yaml
from mmalign.errors import MMAlignError
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import EXIST_SPLITS, TASKS, make_example


@dataclass
class BuildConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    out: str = "runs/world"
    splits: dict[str, int] = field(default_factory=lambda: {"train": 10000, "val": 1000})  # split -> scenes
    tasks: list[str] = field(default_factory=lambda: list(TASKS))
    every: dict[str, int] = field(default_factory=lambda: {"multi_image": 5, "video": 5})  # task -> every k-th scene


def split_examples(cfg: WorldConfig, split: str, index: int, tasks: list[str], every: dict[str, int]):
    for task in tasks:
        if index % every.get(task, 1):
            continue
        if task == "exist" and split != "train":
            for k, pope_split in enumerate(EXIST_SPLITS):
                for label in ("yes", "no"):
                    yield make_example(cfg, task, split, index, pope_split=pope_split, label=label)
        else:
            yield make_example(cfg, task, split, index)


def _image_name(example: dict, k: int) -> str:
    return f"images/{example['scenes'][k]['id']}.png"


def build_world(cfg: BuildConfig) -> dict:
    """Render and write every split; returns counts and the wall time."""
    cfg.world.validate()
    unknown = [t for t in cfg.tasks if t not in TASKS]
    if unknown:
        raise MMAlignError(f"tasks: unknown task(s) {unknown} (known: {', '.join(TASKS)})")
    out = Path(cfg.out)
    (out / "images").mkdir(parents=True, exist_ok=True)
    (out / "world.yaml").write_text(to_yaml(cfg.world))
    t0, counts, written = time.time(), {}, set()
    for split, n in cfg.splits.items():
        with (out / f"{split}.jsonl").open("w") as f:
            for i in tqdm(range(n), desc=f"world {split}", unit="scene"):
                for ex in split_examples(cfg.world, split, i, cfg.tasks, cfg.every):
                    paths = [_image_name(ex, k) for k in range(len(ex["images"]))]
                    for img, p in zip(ex["images"], paths):
                        if p not in written:
                            img.save(out / p, compress_level=1)
                            written.add(p)
                    rec = {k: v for k, v in ex.items() if k != "images"} | {"images": paths}
                    f.write(json.dumps(rec) + "\n")
                    counts[split] = counts.get(split, 0) + 1
    return {"examples": counts, "images": len(written), "seconds": time.time() - t0, "out": str(out)}


def load_world_split(root: str | Path, split: str) -> datasets.Dataset:
    """A split written by ``build_world`` as a ``datasets.Dataset`` whose ``images`` decode to PIL images."""
    root = Path(root)
    path = root / f"{split}.jsonl"
    if not path.exists():
        raise MMAlignError(f"no split '{split}' in {root} (expected {path})")
    ds = datasets.load_dataset("json", data_files=str(path), split="train")
    ds = ds.map(lambda r: {"images": [str(root / p) for p in r["images"]]})
    return ds.cast_column("images", datasets.List(datasets.Image()))

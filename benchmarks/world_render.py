"""How fast the lab world renders: scenes only, and the full `world build` (every task's record + PNG files).

    python benchmarks/world_render.py [--scenes 10000]
"""
from __future__ import annotations

import argparse
import tempfile
import time

from mmalign.world.export import BuildConfig, build_world
from mmalign.world.render import render
from mmalign.world.scenes import WorldConfig, sample_scene


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--scenes", type=int, default=10000)
    n = ap.parse_args().scenes
    world = WorldConfig()
    t = time.perf_counter()
    for i in range(n):
        render(sample_scene(world, "train", i), world)
    scenes_s = time.perf_counter() - t
    with tempfile.TemporaryDirectory() as out:
        info = build_world(BuildConfig(world=world, out=out, splits={"train": n}))
    print(f"{'what':<44}{'seconds':>10}{'per scene (ms)':>16}")
    print(f"{'sample + render ' + str(n) + ' scenes':<44}{scenes_s:>10.2f}{1000 * scenes_s / n:>16.3f}")
    label = f"world build: {info['examples']['train']} records, {info['images']} PNGs"
    print(f"{label:<44}{info['seconds']:>10.2f}{1000 * info['seconds'] / n:>16.3f}")


if __name__ == "__main__":
    main()

"""Vision pretraining: the multi-label targets are the scene's truth, the loss falls, the scorer reloads."""
import json

import torch

from mmalign.train.loop import TrainConfig
from mmalign.train.vision import VisionConfig, label_names, load_scorer, patch_labels, pretrain_vision, scene_labels
from mmalign.world.model import LabModelConfig
from mmalign.world.scenes import Obj, Scene, WorldConfig

TINY = LabModelConfig(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64)


def test_labels_are_category_and_colour_category_presence():
    world = WorldConfig()
    names = label_names(world)
    scene = Scene("s", (255, 255, 255), [Obj("circle", "red", False, (10, 50), 8), Obj("star", "blue", True, (40, 12), 6)])
    on = {n for n, v in zip(names, scene_labels(scene, names)) if v}
    assert on == {"circle", "star", "red circle", "blue star"}


def test_pretraining_loss_falls_and_the_scorer_reloads(tmp_path):
    cfg = VisionConfig(model=TINY, eval_scenes=50, train=TrainConfig(
        output_dir=str(tmp_path), max_steps=60, batch_size=16, lr=3e-3, warmup_steps=5, log_every=20, threads=1))
    metrics = pretrain_vision(cfg)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert losses[-1] < losses[0]
    assert set(metrics) >= {"recall_normal", "recall_faint", "false_positive_rate", "colour_binding_acc"}
    tower, head, names = load_scorer(tmp_path / "model")
    assert names == label_names(WorldConfig())
    with torch.no_grad():
        assert head(tower, torch.zeros(1, 3, 64, 64)).shape == (1, len(names))


def test_patch_labels_mark_the_patches_an_object_covers():
    """A red circle of radius 8 at (10, 50) covers rows 42-58 and columns 2-18: in the 4x4 grid at patch 16 that is
    63 and 133 pixels in column 0 of rows 2 and 3, and 5 and 20 in column 1."""
    world = WorldConfig()
    names = label_names(world)
    scene = Scene("s", (255, 255, 255), [Obj("circle", "red", False, (10, 50), 8)])
    y = patch_labels(scene, names, world, patch=16, min_pixels=8)
    assert y.shape == (16, len(names))
    on = {(p, names[j]) for p, j in y.nonzero().tolist()}
    assert on == {(p, n) for p in (8, 12, 13) for n in ("circle", "red circle")}
    assert set(patch_labels(scene, names, world, patch=16, min_pixels=1).any(1).nonzero().flatten().tolist()) == {
        8, 9, 12, 13}


def test_patch_objective_trains_a_patch_head_and_reports_localisation(tmp_path):
    cfg = VisionConfig(model=TINY, eval_scenes=50, patch_weight=1.0, train=TrainConfig(
        output_dir=str(tmp_path), max_steps=30, batch_size=16, lr=3e-3, warmup_steps=5, log_every=10, threads=1))
    metrics = pretrain_vision(cfg)
    rows = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert all(abs(r["loss"] - r["pooled_loss"] - r["patch_loss"]) < 1e-4 for r in rows if "patch_loss" in r)
    assert rows[-1]["patch_loss"] < rows[0]["patch_loss"]
    assert 0.0 <= metrics["patch_localisation_acc"] <= 1.0

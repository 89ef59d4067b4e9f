"""Vision pretraining: the multi-label targets are the scene's truth, the loss falls, the scorer reloads."""
import json

import torch

from mmalign.train.loop import TrainConfig
from mmalign.train.vision import VisionConfig, label_names, load_scorer, pretrain_vision, scene_labels
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

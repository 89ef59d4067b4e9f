"""Writing the world to disk and reading it back with `datasets` loses nothing."""
import json

import numpy as np

from mmalign.world.export import BuildConfig, build_world, load_world_split
from mmalign.world.render import render
from mmalign.world.scenes import Scene, WorldConfig
from mmalign.world.tasks import EXIST_SPLITS, TASKS, make_example


def test_build_and_load_back(tmp_path):
    cfg = BuildConfig(out=str(tmp_path), splits={"train": 6, "val": 3}, every={"video": 2})
    info = build_world(cfg)
    # every task per scene; video on scenes 0, 2, 4 (train) and 0, 2 (val); val asks POPE's 3 splits x yes/no
    assert info["examples"] == {"train": 6 * (len(TASKS) - 1) + 3,
                                "val": 3 * (len(TASKS) - 2 + 2 * len(EXIST_SPLITS)) + 2}
    assert (tmp_path / "world.yaml").exists()
    ds = load_world_split(tmp_path, "val")
    assert len(ds) == info["examples"]["val"]
    for row in ds:
        want = make_example(WorldConfig(), row["task"], "val", int(row["id"].split("-")[1]),
                            **({"pope_split": row["meta"]["pope_split"], "label": row["answer"]}
                               if row["task"] == "exist" else {}))
        assert row["prompt"] == want["prompt"] and row["response"] == want["response"]
        assert row["answer"] == want["answer"] and row["scenes"] == json.loads(json.dumps(want["scenes"]))
        assert [np.asarray(i.convert("RGB")).tolist() for i in row["images"]] == \
               [np.asarray(i).tolist() for i in want["images"]]
        scene = Scene.from_dict(row["scenes"][0])
        assert np.array_equal(np.asarray(render(scene, WorldConfig())), np.asarray(row["images"][0].convert("RGB")))


def test_world_build_cli_writes_the_folder(tmp_path):
    import subprocess
    import sys
    r = subprocess.run([sys.executable, "-m", "mmalign", "world", "build", "--out", str(tmp_path / "w"),
                        "splits={train: 4, val: 2}", "tasks=[caption,count]"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert len((tmp_path / "w" / "train.jsonl").read_text().splitlines()) == 8

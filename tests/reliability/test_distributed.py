"""Distribution through accelerate: two CPU processes (gloo) launched with the shipped ``ddp_cpu.yaml`` at batch 2
log the same losses as one process at batch 4, for SFT and for preference training, because each process takes
its own equal share of every global batch and the loop averages gradients and metrics across processes. Every
shipped accelerate config loads with accelerate's own reader. (The RL trainer does not exist yet.)"""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType

from mmalign.config import load_config
from mmalign.train.preference import PreferenceConfig, run_preference
from mmalign.train.sft import SFTConfig, run_sft

from .conftest import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"
CHILD = Path(__file__).with_name("child.py")
STEP = ["train.max_steps=3", "train.log_every=1", "train.warmup_steps=0", "train.lr=3e-3"]
# one-token answers: SFT's loss is a per-token mean on each process, equal to the global one only when the
# processes hold equal token counts (docs/scale.md)
SFT = ["sft", *STEP, "data.mix={exist: 1.0}", *TINY_OVERRIDES]


def pref_args(base: Path) -> list[str]:
    return ["train", *STEP, f"model.path={base}", "ref_cache=false", "eval_scenes=0", "data.lab.n=24",
            "data.val_size=4", "train.eval_every=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory, base_folder) -> Path:
    """SFT then preference training, 3 steps each, on 2 processes at batch 2 (one launch for both)."""
    out = tmp_path_factory.mktemp("ddp")
    commands = [SFT + [f"train.output_dir={out / 'sft'}", "train.batch_size=2"],
                pref_args(base_folder) + [f"train.output_dir={out / 'dpo'}", "train.batch_size=2"]]
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(CONFIGS / "ddp_cpu.yaml"), "--main_process_port",
           str(free_port()), str(CHILD), json.dumps(commands)]
    r = subprocess.run(cmd, env=os.environ | {"OMP_NUM_THREADS": "1"}, capture_output=True, text=True, timeout=400,
                       check=False)
    assert r.returncode == 0, r.stderr[-4000:]
    return out


def assert_same_logs(two: list[dict], one: list[dict]) -> None:
    assert [r["step"] for r in two] == [r["step"] for r in one] == [1, 2, 3]   # written once, by one process
    for a, b in zip(two, one):
        assert a.keys() == b.keys()
        for k in a:
            if k != "steps_per_s":
                assert a[k] == pytest.approx(b[k], rel=1e-5, abs=1e-6), (a["step"], k, a[k], b[k])


def test_sft_two_processes_of_batch_2_equal_one_of_batch_4(two_process_runs, tmp_path):
    run_sft(load_config(SFTConfig, None, SFT[1:] + [f"train.output_dir={tmp_path}", "train.batch_size=4"]))
    assert_same_logs(records(two_process_runs / "sft"), records(tmp_path))


def test_preference_two_processes_of_batch_2_equal_one_of_batch_4(two_process_runs, base_folder, tmp_path):
    args = pref_args(base_folder)[1:] + [f"train.output_dir={tmp_path}", "train.batch_size=4"]
    run_preference(load_config(PreferenceConfig, None, args))
    two, one = records(two_process_runs / "dpo"), records(tmp_path)
    assert_same_logs(two, one)
    assert one[-1]["delta/chosen"] != 0                                   # the policy moved: steps were taken


@pytest.mark.parametrize("name, kind, machines", [
    ("ddp_cpu", DistributedType.MULTI_GPU, 1), ("ddp", DistributedType.MULTI_GPU, 1),
    ("fsdp", DistributedType.FSDP, 1), ("zero2", DistributedType.DEEPSPEED, 1),
    ("zero3", DistributedType.DEEPSPEED, 1), ("ddp_multinode", DistributedType.MULTI_GPU, 2),
    ("zero3_multinode", DistributedType.DEEPSPEED, 2)])
def test_shipped_accelerate_configs_load(name, kind, machines):
    cfg = load_config_from_file(str(CONFIGS / f"{name}.yaml"))
    assert (cfg.distributed_type, cfg.num_machines) == (kind, machines)
    if name.startswith("zero"):
        assert cfg.deepspeed_config["zero_stage"] == int(name[4])
    if name == "fsdp":
        assert cfg.fsdp_config["fsdp_version"] == 2


def test_every_shipped_config_is_tested():
    tested = {"ddp_cpu", "ddp", "fsdp", "zero2", "zero3", "ddp_multinode", "zero3_multinode"}
    assert {p.stem for p in CONFIGS.glob("*.yaml")} == tested

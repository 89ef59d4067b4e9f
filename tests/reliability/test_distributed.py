"""Distribution through accelerate: two CPU processes (gloo) launched with the shipped ``ddp_cpu.yaml`` at batch 2
log the same losses as one process at batch 4, for SFT (answers of unequal lengths), preference training, vision
pretraining and RL (2 x P/2 prompts against 1 x P), because each process takes its own share of every global batch,
token-mean losses are weighed by the step's token count over every process (``loop.unit_share``), and the loop
averages gradients and metrics across processes. The reference cache is computed half on each process and equals
one process's. Every shipped accelerate config loads with accelerate's own reader."""
from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.utils import DistributedType
from PIL import Image
from safetensors.torch import load_file

from mmalign.config import load_config
from mmalign.rl.config import RLConfig
from mmalign.rl.trainer import run_rl
from mmalign.train.preference import PreferenceConfig, run_preference
from mmalign.train.guards import has_images
from mmalign.train.sft import SFTConfig, batches, record_source, run_sft, sft_units
from mmalign.train.vision import VisionConfig, pretrain_vision
from mmalign.world.model import build_lab_model

from .conftest import TINY_OVERRIDES

ROOT = Path(__file__).resolve().parents[2]
CONFIGS = ROOT / "configs" / "accelerate"
CHILD = Path(__file__).with_name("child.py")
STEP = ["train.max_steps=3", "train.log_every=1", "train.warmup_steps=0", "train.lr=3e-3"]
# one-token yes/no answers (weighted 5) and captions: the processes' shares hold different token counts
SFT = ["sft", *STEP, "data.mix={exist: 1.0, caption: 1.0}", *TINY_OVERRIDES]
VISION = ["vision", *STEP, "eval_scenes=4", *[a.replace("lab_model.", "model.") for a in TINY_OVERRIDES]]
# one optimiser step over the whole rollout (2 micro-batches on each of 2 processes); DAPO's token mean, with
# completions of unequal lengths at temperature 2.5
RL = ["rl", "rollout.group_size=4", "rollout.temperature=2.5", "rollout.max_new_tokens=4", "rollout.batch_size=16",
      "train.max_steps=1", "train.lr=1e-4", "train.log_every=1", "train.eval_every=0", "eval.n_per_task=0",
      "algorithm.loss=dapo", "algorithm.kl.coef=0.04"]
# the RL metrics that are means over rows or over the global minibatch (the token-mean metrics are per process)
RL_KEYS = ("loss", "grad_norm", "reward", "reward/count_accuracy", "reward/group_std", "score", "len/mean",
           "stopped", "rollout/kl", "rl_step", "step", "lr")


def mixed_records(folder: Path) -> Path:
    """8 SFT records, every other one text-only: some steps give one process a text-only micro-batch."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (64, 64), "red").save(folder / "red.png")
    lines = [{"images": ["red.png"] if i % 2 else [], "prompt": "What is there?",
              "response": "a red square ." * (i % 3 + 1)} for i in range(8)]
    (folder / "mixed.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    return folder / "mixed.jsonl"


def mixed_sft(folder: Path) -> list[str]:
    return ["sft", "train.max_steps=2", *STEP[1:], f"data.source={mixed_records(folder)}", *TINY_OVERRIDES]


def pref_args(base: Path, cache: Path) -> list[str]:
    return ["train", *STEP, f"model.path={base}", f"cache_dir={cache}", "eval_scenes=0", "data.lab.n=24",
            "data.val_size=4", "train.eval_every=0"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def records_of(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def two_process_runs(tmp_path_factory, base_folder) -> Path:
    """SFT, preference training (reference cached) and vision pretraining, 3 steps each, at batch 2, and one RL
    step on 2 prompts each, on 2 processes (one launch for all)."""
    out = tmp_path_factory.mktemp("ddp")
    commands = [SFT + [f"train.output_dir={out / 'sft'}", "train.batch_size=2"],
                pref_args(base_folder, out / "cache") + [f"train.output_dir={out / 'dpo'}", "train.batch_size=2"],
                VISION + [f"train.output_dir={out / 'vision'}", "train.batch_size=2"],
                mixed_sft(out / "records") + [f"train.output_dir={out / 'mixed'}", "train.batch_size=1"],
                RL + [f"train.output_dir={out / 'rl'}", "rollout.prompts=2", "train.batch_size=4",
                      "train.grad_accum=2"]]
    accelerate = Path(sys.executable).with_name("accelerate")
    cmd = [str(accelerate), "launch", "--config_file", str(CONFIGS / "ddp_cpu.yaml"), "--main_process_port",
           str(free_port()), str(CHILD), json.dumps(commands)]
    env = os.environ | {"OMP_NUM_THREADS": "1", "REFERENCE_LOG": str(out / "reference.log")}
    r = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=400, check=False)
    errors = [line for line in r.stderr.splitlines() if "Error" in line or "error:" in line]
    assert r.returncode == 0, "\n".join(errors[:10]) or r.stderr[-4000:]
    return out


def assert_same_logs(two: list[dict], one: list[dict], keys=None, steps=(1, 2, 3), rel: float = 1e-5) -> None:
    assert [r["step"] for r in two] == [r["step"] for r in one] == list(steps)   # written once, by one process
    for a, b in zip(two, one):
        assert a.keys() == b.keys()
        for k in keys or a:
            if k != "steps_per_s":
                assert a[k] == pytest.approx(b[k], rel=rel, abs=1e-6), (a["step"], k, a[k], b[k])


def assert_same_weights(two: Path, one: Path) -> None:
    """To 1e-4, a thirtieth of a step at lr 3e-3: Adam's first steps turn float noise on gradients near zero (the
    attention key bias, unseen tokens' output rows) into updates of up to 1e-5."""
    a, b = load_file(str(two / "model" / "model.safetensors")), load_file(str(one / "model" / "model.safetensors"))
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-4, msg=k)


@pytest.fixture(scope="module")
def one_process_sft(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("sft-1x4")
    run_sft(load_config(SFTConfig, None, SFT[1:] + [f"train.output_dir={out}", "train.batch_size=4"]))
    return out


def test_sft_two_processes_of_batch_2_equal_one_of_batch_4(two_process_runs, one_process_sft):
    cfg = load_config(SFTConfig, None, SFT[1:] + ["train.batch_size=2"])
    _, processor = build_lab_model(cfg.lab_model, cfg.world.image_size)
    shares = [[sft_units(next(batches(cfg, processor, step, rank, 2))) for rank in (0, 1)] for step in range(3)]
    assert any(a != b for a, b in shares)                                # the processes' token counts differ
    assert_same_logs(records_of(two_process_runs / "sft"), records_of(one_process_sft))
    assert_same_weights(two_process_runs / "sft", one_process_sft)


def test_sft_two_micro_batches_of_2_equal_one_of_4(one_process_sft, tmp_path):
    """Gradient accumulation weighs micro-batches by their token counts too."""
    run_sft(load_config(SFTConfig, None, SFT[1:] + [f"train.output_dir={tmp_path}", "train.batch_size=2",
                                                    "train.grad_accum=2"]))
    assert_same_logs(records_of(tmp_path), records_of(one_process_sft))


def test_a_process_with_a_text_only_micro_batch_keeps_in_step(two_process_runs, tmp_path):
    """Under DDP a text-only process leaves the vision tower out (``find_unused_parameters``) and adds no dummy
    vision term, which DDP would refuse (``guards.text_only_term``): the run ends as one process's does."""
    args = mixed_sft(tmp_path / "records")[1:]
    cfg = load_config(SFTConfig, None, args + ["train.batch_size=1"])
    _, processor = build_lab_model(cfg.lab_model, cfg.world.image_size)
    records = record_source(cfg)
    images = [[has_images(next(batches(cfg, processor, step, rank, 2, records))) for rank in (0, 1)]
              for step in range(2)]
    assert [True, False] in images or [False, True] in images
    run_sft(load_config(SFTConfig, None, args + [f"train.output_dir={tmp_path / 'out'}", "train.batch_size=2"]))
    # one process pads text-only rows to the image rows' length: float noise of 2e-5 in the second step's norm
    assert_same_logs(records_of(two_process_runs / "mixed"), records_of(tmp_path / "out"), steps=[1, 2], rel=1e-4)


def test_preference_two_processes_of_batch_2_equal_one_of_batch_4(two_process_runs, base_folder, tmp_path):
    args = pref_args(base_folder, tmp_path / "cache")[1:] + [f"train.output_dir={tmp_path}", "train.batch_size=4"]
    run_preference(load_config(PreferenceConfig, None, args))
    two, one = records_of(two_process_runs / "dpo"), records_of(tmp_path)
    assert_same_logs(two, one)
    assert one[-1]["delta/chosen"] != 0                                   # the policy moved: steps were taken


def test_reference_cache_is_computed_half_on_each_process_and_equals_one_process(two_process_runs, base_folder,
                                                                                tmp_path):
    log = (two_process_runs / "reference.log").read_text().split()
    assert sorted(zip(log[::2], log[1::2])) == [("0", "14"), ("1", "14")]   # 28 records (24 + 4 held out)
    [two] = (two_process_runs / "cache").glob("ref-*.safetensors")          # one file, no temporary left
    args = pref_args(base_folder, tmp_path)[1:] + [f"train.output_dir={tmp_path / 'out'}", "train.max_steps=1"]
    run_preference(load_config(PreferenceConfig, None, args))
    [one] = tmp_path.glob("ref-*.safetensors")
    assert one.name == two.name
    a, b = load_file(str(two)), load_file(str(one))
    assert a.keys() == b.keys() and a["chosen.sum"].shape == (28,)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=1e-5, atol=1e-5, msg=k)


def test_vision_two_processes_of_batch_2_equal_one_of_batch_4(two_process_runs, tmp_path):
    pretrain_vision(load_config(VisionConfig, None, VISION[1:] + [f"train.output_dir={tmp_path}",
                                                                  "train.batch_size=4"]))
    assert_same_logs(records_of(two_process_runs / "vision"), records_of(tmp_path))


def test_rl_two_processes_of_half_the_prompts_equal_one_of_all(two_process_runs, tmp_path):
    """One RL step: 2 processes x 2 prompts (2 micro-batches of 4 rows each) take the step 1 process x 4 prompts
    (one micro-batch of 16 rows) takes: same completions, losses, gradient norm and weights."""
    run_rl(load_config(RLConfig, None, RL[1:] + [f"train.output_dir={tmp_path}", "rollout.prompts=4",
                                                 "train.batch_size=16"]))
    two, one = records_of(two_process_runs / "rl"), records_of(tmp_path)
    assert_same_logs(two, one, RL_KEYS, steps=[1])
    assert one[0]["len/mean"] < one[0]["len/max"]                        # completions of unequal lengths
    assert_same_weights(two_process_runs / "rl", tmp_path)


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

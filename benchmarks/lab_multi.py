"""Multi-image and video preference training on the lab, from the shipped base model (or ``--model``).

    OMP_NUM_THREADS=1 python benchmarks/lab_multi.py --seeds 0,1,2 --out runs/lab_multi

Pairs (``multi_pairs``) come from the lab's two tasks with several images: ``multi_image`` ("which image has more
shapes ?", "in the first image , is there a star ?") and ``video`` (4 frames: "which way does the red circle
move ?"). ``y_w`` is the true answer and ``y_l`` a wrong one (the other image, the other yes/no, another direction).
I', the images mDPO's conditional term contrasts with, is chosen to carry the answer away: the two images swapped
(which flips every "which has more" answer, and "is there" answers wherever the two images differ on the shape),
the frames reversed (which flips every direction). mDPO therefore cannot win its image term without reading the
order of the images or frames.

The training set mixes these pairs with the lab's single-image ground-truth pairs (``--lab-pairs``, the 4000 of
``configs/dpo.yaml``; their I' a random crop), as multi-image preference data is used in practice: trained on the
multi-image pairs alone at lr 2e-4, the base lost 8-14 points of caption recall and 7-9 of POPE adversarial
accuracy. From the base, for every seed: DPO (+ NLL on y_w), mDPO (+ NLL) and an SFT control on the two tasks'
true answers (the lab stream, same steps, batch and learning rate): does the preference signal add anything over
learning the answers? Every model answers held-out test questions of both tasks greedily; the caption and POPE figures show what
the training costs elsewhere. Prints a Markdown table (mean ± std over seeds) and writes ``results.json``.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import numpy as np

from mmalign.config import load_config
from mmalign.data.preference import PreferenceRecord, write_preference_file
from mmalign.eval.runner import evaluate_folder
from mmalign.models.load import ModelConfig
from mmalign.train.loop import TrainConfig
from mmalign.train.preference import SHIPPED_BASE, LossConfig, PreferenceConfig, PreferenceDataConfig, run_preference
from mmalign.train.sft import SFTConfig, run_sft
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

WORLD = WorldConfig()
TASKS = ("multi_image", "video")
WRONG = {"first": ["second"], "second": ["first"], "yes": ["no"], "no": ["yes"],
         "left": ["right", "up", "down"], "right": ["left", "up", "down"], "up": ["down", "left", "right"],
         "down": ["up", "left", "right"]}
STREAM = 7000   # the wrong answers' rng, apart from the task generators'


def multi_pairs(n: int, split: str = "train", tasks: tuple[str, ...] = TASKS) -> list[PreferenceRecord]:
    """``n`` pairs, alternating ``tasks``, on scenes ``0..n-1`` of ``split`` (module docstring)."""
    out = []
    for i in range(n):
        task = tasks[i % len(tasks)]
        ex = make_example(WORLD, task, split, i)
        rng = np.random.default_rng([WORLD.seed, STREAM, i])
        wrong = WRONG[ex["answer"]]
        out.append(PreferenceRecord(
            id=ex["id"], prompt=ex["prompt"], images=ex["images"], chosen=ex["answer"],
            rejected=wrong[int(rng.integers(len(wrong)))], corrupt_images=ex["images"][::-1], task=task,
            meta={k: v for k, v in ex.get("meta", {}).items() if k != "scenes"}))
    return out


def train_dpo(loss: str, pairs: Path, out: Path, seed: int, args) -> Path:
    cfg = PreferenceConfig(
        world=WORLD, model=ModelConfig(path=args.model), cache_dir=str(out / "cache"), eval_scenes=0,
        loss=LossConfig(name=loss, nll_weight=1.0),
        data=PreferenceDataConfig(source=str(pairs), val_size=min(128, args.pairs // 4)),
        train=TrainConfig(output_dir=str(out / f"{loss}-seed{seed}"), max_steps=args.steps, batch_size=16,
                          lr=args.lr, warmup_steps=20, log_every=50, eval_every=0, threads=1, seed=seed))
    if not (Path(cfg.train.output_dir) / "model").exists():
        run_preference(cfg)
    return Path(cfg.train.output_dir) / "model"


def train_sft(out: Path, seed: int, args) -> Path:
    mix = "{" + ", ".join(f"{t}: 1" for t in args.tasks.split(",")) + "}"
    cfg = load_config(SFTConfig, None, [f"model.path={args.model}", f"data.mix={mix}",
                                        "data.task_weights={}", f"train.output_dir={out / f'sft-seed{seed}'}",
                                        f"train.max_steps={args.steps}", "train.batch_size=16", f"train.lr={args.lr}",
                                        "train.warmup_steps=20", "train.log_every=50", "train.threads=1",
                                        f"train.seed={seed}"])
    if not (Path(cfg.train.output_dir) / "model").exists():
        run_sft(cfg)
    return Path(cfg.train.output_dir) / "model"


def figures(folder: Path, out: Path, n_scenes: int, n_per_task: int) -> dict:
    done = out / "results.json"            # evaluate_folder writes it: a rerun reads it back
    metrics = json.loads(done.read_text()) if done.exists() else evaluate_folder(
        str(folder), WORLD, out, tasks=[*TASKS, "caption", "exist"], n_scenes=n_scenes, n_per_task=n_per_task)
    return metrics | {"multi_image_split": multi_image_split(out / "responses.jsonl")}


def multi_image_split(responses: Path) -> dict:
    """Multi-image accuracy by question: "which has more", "in image k, is there X" where the two images agree on X
    (answerable without knowing which image is which) and where they disagree (only the named image tells)."""
    right, n = {}, {}
    for line in responses.read_text().splitlines():
        r = json.loads(line)
        if r["task"] != "multi_image":
            continue
        ex = make_example(WORLD, "multi_image", "test", int(r["id"].split("-")[1]))
        if ex["meta"]["kind"] == "more":
            kind = "more"
        else:
            has = [ex["meta"]["category"] in [o["category"] for o in s["objects"]] for s in ex["scenes"]]
            kind = "agree" if has[0] == has[1] else "disagree"
        right[kind] = right.get(kind, 0) + bool(r["correct"])
        n[kind] = n.get(kind, 0) + 1
    return {k: right[k] / n[k] for k in n} | {f"n_{k}": n[k] for k in n}


COLUMNS = [("multi-image acc", lambda m: m["multi_image"]["accuracy"]),
           ("which has more", lambda m: m["multi_image_split"]["more"]),
           ("in image k, images agree", lambda m: m["multi_image_split"]["agree"]),
           ("in image k, images disagree", lambda m: m["multi_image_split"]["disagree"]),
           ("video acc", lambda m: m["video"]["accuracy"]),
           ("CHAIR-i", lambda m: m["caption"]["chair_i"]),
           ("caption recall", lambda m: m["caption"]["recall"]),
           ("POPE adversarial acc", lambda m: m["exist/adversarial"]["accuracy"])]


def cell(values: list[float]) -> str:
    return f"{statistics.mean(values):.3f}" + (f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else "")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/lab_multi")
    ap.add_argument("--pairs", type=int, default=3000)
    ap.add_argument("--lab-pairs", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=800)
    ap.add_argument("--lr", type=float, default=5e-5)
    ap.add_argument("--methods", default="dpo,mdpo,sft")
    ap.add_argument("--n-scenes", type=int, default=600)
    ap.add_argument("--n-per-task", type=int, default=400)
    ap.add_argument("--model", default=SHIPPED_BASE, help="the model every method starts from")
    ap.add_argument("--tasks", default=",".join(TASKS), help="the pairs' (and the SFT control's) tasks")
    args = ap.parse_args()
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",")]
    pairs = out / "pairs.jsonl"
    if not pairs.exists():
        lab = lab_pairs(WORLD, LabPairsConfig(n=args.lab_pairs)) if args.lab_pairs else []
        write_preference_file(multi_pairs(args.pairs, tasks=tuple(args.tasks.split(","))) + lab, pairs)
    results = {"base model": [figures(Path(args.model), out / "eval-base", args.n_scenes, args.n_per_task)]}
    for method in args.methods.split(","):
        results[method] = []
        for seed in seeds:
            folder = train_sft(out, seed, args) if method == "sft" else train_dpo(method, pairs, out, seed, args)
            results[method].append(figures(folder, out / f"eval-{method}-seed{seed}", args.n_scenes,
                                           args.n_per_task))
    (out / "summary.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=1))
    names = {"dpo": "DPO (+NLL)", "mdpo": "mDPO (+NLL), I' = images swapped / frames reversed",
             "sft": "SFT control on the true answers"}
    print(f"| model | seeds | " + " | ".join(c for c, _ in COLUMNS) + " |")
    print("|---" * (2 + len(COLUMNS)) + "|")
    for name, runs in results.items():
        print(f"| {names.get(name, name)} | {len(runs) if name in names else '–'} | "
              + " | ".join(cell([get(m) for m in runs]) for _, get in COLUMNS) + " |")


if __name__ == "__main__":
    main()

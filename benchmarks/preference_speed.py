"""DPO training speed: TRL's ``DPOTrainer`` step against our concatenated and prefix-shared packed paths.

    python benchmarks/preference_speed.py                      # the grid: 64/256/576 image tokens x 16/32/64
    python benchmarks/preference_speed.py --quick              # one small point, to check the script (< 1 min)

Every (method, image tokens, answer length) runs in a fresh subprocess, one after another, so that peak RSS is
that method's alone and no two measurements share the CPU. All methods use the same random-weight LLaVA (CLIP +
Llama, ~8M parameters, saved once per image size), the same pairs (every answer exactly R tokens with its
end-of-turn, so the concatenated batch has no padding: its best case) and the same batch size, in float32:

* ``trl``: ``trl.DPOTrainer`` with a deep-copied reference model and ``bf16=False`` (DPOConfig turns bf16 on
  by default on this CPU, which changes the reference's numerics); timed between ``on_step_end`` callbacks, so
  collation and the optimiser step count, as they do for ours.
* ``concat``, ``packed``: our trainer, the same calls as ``run_preference`` (``load_model``, ``make_reference``
  with a live frozen copy, ``Step``, ``train``), ``data.packed`` off and on; pure DPO (``nll_weight=0``) like TRL's
  sigmoid loss; timed from the loop's own per-step log (``log_every=1``).
* ``packed_cached``: packed, with the reference log-probs computed once into the disk cache (its one-off cost is
  reported apart; a second epoch or run reuses it).

Pairs per second is the batch size over the median step time after the warm-up steps. The token-count limit
``2(P+R)/(P+2R)`` (P = prompt tokens with the image tokens, R = answer tokens) is what prefix sharing saves in
decoder tokens; the vision tower runs half as often on top of that. Peak RSS (``ru_maxrss``) includes ~0.5 GB of
imports; "train RSS" is the peak minus the resident size just before the first step.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("trl", "concat", "packed", "packed_cached")
FULL_MODEL = {"vision": {"hidden_size": 192, "num_hidden_layers": 4, "num_attention_heads": 4},
              "text": {"hidden_size": 256, "num_hidden_layers": 8, "intermediate_size": 688,
                       "num_attention_heads": 4, "num_key_value_heads": 2}}
QUICK_MODEL = {"vision": {}, "text": {}}          # the unit-test sizes
WORDS = ("a", "red", "circle", "and", "a", "blue", "star", "and", "a", "green", "square", "and", "a", "yellow",
         "triangle", ".")
PROMPT = "describe the image . what shapes are there and what colour is each of them ?"
PATCH = 16
RL_SECTION = "\n## RL updates"      # benchmarks/rl_speed.py's part of the doc, from there to the end: kept


# ---- setup (parent process) -----------------------------------------------------------------------------------

def records(n: int, image_size: int, answer_tokens: int, seed: int) -> list:
    """``n`` pairs of random images; chosen and rejected of exactly ``answer_tokens`` tokens with end-of-turn."""
    import numpy as np
    from PIL import Image

    from mmalign.data.preference import PreferenceRecord
    rng = np.random.default_rng(seed)

    def answer(shift: int) -> str:
        return " ".join(WORDS[(shift + k) % len(WORDS)] for k in range(answer_tokens - 1))

    return [PreferenceRecord(id=f"p{i}", prompt=PROMPT, chosen=answer(i), rejected=answer(i + 3),
                             images=[Image.fromarray(rng.integers(0, 256, (image_size, image_size, 3), np.uint8))])
            for i in range(n)]


def prepare(folder: Path, image_tokens: int, answer_tokens: int, n: int, dims: dict) -> dict:
    """Save the model and the pairs for one grid point (once); return the measured P and R."""
    from mmalign.data.collate import collate_preference
    from mmalign.data.preference import write_preference_file
    from mmalign.models.tiny import build_llava
    side = round(image_tokens ** 0.5) * PATCH
    model_dir, data = folder / f"model-{image_tokens}", folder / f"pairs-{image_tokens}-{answer_tokens}.jsonl"
    model, processor = build_llava(vision=dims["vision"], text=dims["text"], image_size=side, patch_size=PATCH)
    if not model_dir.exists():
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    recs = records(n, side, answer_tokens, seed=image_tokens + answer_tokens)
    if not data.exists():
        write_preference_file(recs, data)
    batch = collate_preference(processor, recs[:1])
    labels = batch.labels[0]
    scored = int((labels != -100).sum())
    prompt = int(batch.inputs["attention_mask"][0].sum()) - scored
    return {"model": str(model_dir), "data": str(data), "P": prompt, "R": scored,
            "params_m": sum(p.numel() for p in model.parameters()) / 1e6}


# ---- workers (one subprocess each) ----------------------------------------------------------------------------

def rss_mb() -> float:
    return int(Path("/proc/self/statm").read_text().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_ours(job: dict) -> dict:
    """The same calls as ``run_preference``, minus validation and the lab report."""
    from mmalign.data.preference import read_preference_file
    from mmalign.losses import PREFERENCE_LOSSES
    from mmalign.models.load import ModelConfig, load_model
    from mmalign.train.loop import TrainConfig, train
    from mmalign.train.preference import (
        LossConfig,
        PreferenceConfig,
        PreferenceDataConfig,
        Step,
        make_reference,
    )
    out = Path(job["out"])
    cfg = PreferenceConfig(model=ModelConfig(path=job["model"]), ref_cache=job["method"] == "packed_cached",
                           cache_dir=str(out / "cache"), loss=LossConfig(name="dpo", nll_weight=0.0),
                           data=PreferenceDataConfig(packed=job["method"] != "concat"), eval_scenes=0,
                           train=TrainConfig(output_dir=str(out / "run"), max_steps=job["warmup"] + job["steps"],
                                             batch_size=job["batch_size"], lr=1e-5, warmup_steps=0, log_every=1))
    model, processor = load_model(cfg.model)
    recs = read_preference_file(job["data"])
    partners = {r.id: recs[(i + 1) % len(recs)] for i, r in enumerate(recs)}
    spec = PREFERENCE_LOSSES["dpo"]
    t0 = time.perf_counter()
    step = Step(cfg, spec, processor, make_reference(cfg, model, processor, spec, recs, partners), partners)
    ref_s = time.perf_counter() - t0
    bs = job["batch_size"]
    base = rss_mb()
    train(model, [{"params": [p for p in model.parameters() if p.requires_grad]}], step,
          lambda k: (recs[j * bs:(j + 1) * bs] for j in range(k, k + cfg.train.max_steps)), cfg.train)
    logs = [json.loads(line) for line in (out / "run" / "metrics.jsonl").read_text().splitlines()]
    return {"step_s": [1 / r["steps_per_s"] for r in logs if "steps_per_s" in r], "base_rss_mb": base,
            "ref_cache_s": ref_s if cfg.ref_cache else None}


def run_trl(job: dict) -> dict:
    import copy

    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForImageTextToText, AutoProcessor, TrainerCallback

    from mmalign.data.preference import read_preference_file

    class Clock(TrainerCallback):
        def __init__(self):
            self.marks = []

        def on_train_begin(self, args, state, control, **kw):
            self.marks.append(time.perf_counter())

        def on_step_end(self, args, state, control, **kw):
            self.marks.append(time.perf_counter())

    rows = [{"images": r.images,
             "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": r.prompt}]}],
             "chosen": [{"role": "assistant", "content": [{"type": "text", "text": r.chosen}]}],
             "rejected": [{"role": "assistant", "content": [{"type": "text", "text": r.rejected}]}]}
            for r in read_preference_file(job["data"])]
    policy = AutoModelForImageTextToText.from_pretrained(job["model"], dtype=torch.float32,
                                                         attn_implementation="sdpa")
    ref = copy.deepcopy(policy).eval()
    args = trl.DPOConfig(output_dir=str(Path(job["out"]) / "trl"), per_device_train_batch_size=job["batch_size"],
                         max_steps=job["warmup"] + job["steps"], learning_rate=1e-5, report_to="none",
                         save_strategy="no", use_cpu=True, bf16=False, max_length=None, beta=0.1,
                         loss_type=["sigmoid"], logging_steps=10**6, dataloader_num_workers=0)
    clock = Clock()
    trainer = trl.DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=Dataset.from_list(rows),
                             processing_class=AutoProcessor.from_pretrained(job["model"]), callbacks=[clock])
    base = rss_mb()
    trainer.train()
    return {"step_s": [b - a for a, b in zip(clock.marks, clock.marks[1:])], "base_rss_mb": base,
            "ref_cache_s": None}


def worker(job: dict) -> None:
    """Run one method at one grid point in this (fresh) process; print its figures as a ``RESULT`` JSON line."""
    import torch
    shutil.rmtree(job["out"], ignore_errors=True)        # no resumed run, no reference cache from an earlier one
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    result = (run_trl if job["method"] == "trl" else run_ours)(job)
    timed = result["step_s"][job["warmup"]:]
    median = statistics.median(timed)
    peak = peak_rss_mb()
    print("RESULT " + json.dumps({**{k: job[k] for k in ("method", "image_tokens", "answer_tokens")},
                                  "steps": len(timed), "median_s": median, "min_s": min(timed),
                                  "pairs_per_s": job["batch_size"] / median, "peak_rss_mb": peak,
                                  "train_rss_mb": peak - result["base_rss_mb"], "ref_cache_s": result["ref_cache_s"],
                                  "threads": torch.get_num_threads()}))


def spawn(job: dict, script: str = __file__) -> dict:
    """``script --worker job`` in a fresh process -> its ``RESULT`` line."""
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TOKENIZERS_PARALLELISM": "false"}
    proc = subprocess.run([sys.executable, script, "--worker", json.dumps(job)], capture_output=True, text=True,
                          env=env, cwd=ROOT, check=False)
    lines = [x for x in proc.stdout.splitlines() if x.startswith("RESULT ")]
    if proc.returncode or not lines:
        raise SystemExit(f"worker {job['method']} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(lines[-1][len("RESULT "):])


# ---- report ---------------------------------------------------------------------------------------------------

def limit(P: int, R: int) -> float:
    return 2 * (P + R) / (P + 2 * R)


def table(points: list[dict], methods: list[str]) -> str:
    head = ["image tok", "P", "R"] + [f"{m} pairs/s" for m in methods]
    ratios = [(a, b) for a, b in (("packed", "trl"), ("packed", "concat"), ("packed_cached", "trl"),
                                  ("concat", "trl")) if a in methods and b in methods]
    head += [f"{a}/{b}" for a, b in ratios] + ["limit 2(P+R)/(P+2R)"]
    head += ["peak RSS MB " + " / ".join(methods), "train RSS MB " + " / ".join(methods)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pt in points:
        r = pt["results"]
        cells = [pt["image_tokens"], pt["P"], pt["R"]] + [f"{r[m]['pairs_per_s']:.2f}" for m in methods]
        cells += [f"{r[a]['pairs_per_s'] / r[b]['pairs_per_s']:.2f}" for a, b in ratios]
        cells += [f"{limit(pt['P'], pt['R']):.2f}", " / ".join(f"{r[m]['peak_rss_mb']:.0f}" for m in methods),
                  " / ".join(f"{r[m]['train_rss_mb']:.0f}" for m in methods)]
        lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def plot(points: list[dict], methods: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    labels = [f"{p['image_tokens']} img\nR={p['R']}" for p in points]
    fig, (left, right) = plt.subplots(1, 2, figsize=(max(8, 1.6 * len(points) + 4), 4))
    width = 0.8 / len(methods)
    for k, m in enumerate(methods):
        left.bar([i + k * width for i in range(len(points))], [p["results"][m]["pairs_per_s"] for p in points],
                 width, label=m)
    left.set_xticks([i + 0.4 - width / 2 for i in range(len(points))], labels, fontsize=7)
    left.set_ylabel("pairs / s")
    left.legend(fontsize=7)
    x = range(len(points))
    right.plot(x, [limit(p["P"], p["R"]) for p in points], "kD--", label="token limit 2(P+R)/(P+2R)")
    for a, b in (("packed", "trl"), ("packed", "concat")):
        if a in methods and b in methods:
            right.plot(x, [p["results"][a]["pairs_per_s"] / p["results"][b]["pairs_per_s"] for p in points], "o-",
                       label=f"{a} / {b}")
    right.set_xticks(list(x), labels, fontsize=7)
    right.set_ylabel("speed-up")
    right.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_doc(doc: Path, points: list[dict], methods: list[str], args, info: dict) -> None:
    import torch
    import transformers
    import trl
    doc.parent.mkdir(parents=True, exist_ok=True)
    png = doc.with_suffix(".png")
    plot(points, methods, png)
    cached = [f"{p['image_tokens']}/{p['R']}: {p['results']['packed_cached']['ref_cache_s']:.1f} s"
              for p in points if "packed_cached" in methods]
    threads = points[0]["results"][methods[0]]["threads"]
    _, mark, rl = doc.read_text().partition(RL_SECTION) if doc.exists() else ("", "", "")
    doc.write_text(f"""# Preference training speed: prefix-shared packing against TRL

Written by `python benchmarks/preference_speed.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}.

* Machine: {platform.machine()}, {os.cpu_count()} CPUs; torch {torch.__version__} ({threads} threads per worker),
  transformers {transformers.__version__}, trl {trl.__version__}; float32.
* Model: random-weight LLaVA (CLIP + Llama), {info['params_m']:.1f}M parameters; batch {args.batch_size} pairs; median
  of {args.steps} steps after {args.warmup} warm-up, each method in a process of its own, one at a time.
* What each method is and how it is timed: the docstring of `benchmarks/preference_speed.py`.

{table(points, methods)}

![pairs per second and speed-ups]({png.name})

* **limit** `2(P+R)/(P+2R)`: decoder tokens per pair without and with a shared prefix (P prompt tokens, image tokens
  included; R answer tokens). The vision tower also runs once per pair instead of twice, which it does not count.
* **peak RSS** includes the imports (~0.5 GB, more in the TRL process, which imports trl); **train RSS** is the
  peak minus the resident size before the first step. Compare the concatenated and packed columns with each other.
* **packed_cached**: reference log-probs from the disk cache; computing it once took {', '.join(cached) or 'n/a'}
  (image tokens/R), reused by later epochs and runs.
{mark + rl}""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="one small grid point with the unit-test model (< 1 min)")
    ap.add_argument("--image-tokens", default="64,256,576")
    ap.add_argument("--answer-tokens", default="16,32,64", help="R: labelled tokens per answer (end-of-turn included)")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--batch-size", type=int, default=4)
    ap.add_argument("--steps", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in each worker; 0: torch's default")
    ap.add_argument("--out", default="runs/preference_speed")
    ap.add_argument("--doc", default=None, help="default: docs/performance.md (--quick: OUT/performance.md)")
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.quick:
        args.image_tokens, args.answer_tokens, args.steps, args.warmup = "16", "16", 2, 1
        args.threads = args.threads or 1      # tiny model: one thread avoids OpenMP spinning on a busy machine
    out = Path(args.out) / ("quick" if args.quick else "grid")
    doc = Path(args.doc or (out / "performance.md" if args.quick else ROOT / "docs" / "performance.md"))
    methods = args.methods.split(",")
    n = args.batch_size * (args.steps + args.warmup)
    points = []
    for img in map(int, args.image_tokens.split(",")):
        for R in map(int, args.answer_tokens.split(",")):
            info = prepare(out / "setup", img, R, n, QUICK_MODEL if args.quick else FULL_MODEL)
            point = {"image_tokens": img, "P": info["P"], "R": info["R"], "results": {}}
            for m in methods:
                job = {"method": m, "image_tokens": img, "answer_tokens": R, "model": info["model"],
                       "data": info["data"], "batch_size": args.batch_size, "steps": args.steps,
                       "warmup": args.warmup, "threads": args.threads, "out": str(out / f"{m}-{img}-{R}")}
                res = point["results"][m] = spawn(job)
                print(f"{m:>14} img={img:<4} P={info['P']:<4} R={info['R']:<3} {res['pairs_per_s']:7.2f} pairs/s "
                      f"median {res['median_s']:.3f}s  peak RSS {res['peak_rss_mb']:.0f} MB", flush=True)
            points.append(point)
    (out / "results.json").write_text(json.dumps(points, indent=1))
    print(table(points, methods))
    write_doc(doc, points, methods, args, info)
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()

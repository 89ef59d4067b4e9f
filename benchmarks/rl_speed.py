"""RL update speed: a GRPO group's rows one by one (``rollout.packed=false``) against the group behind one copy of
its prompt (``rollout.packed=true``).

    python benchmarks/rl_speed.py --threads 1                 # the grid: 64/256/576 image tokens x 16/64, G = 8
    python benchmarks/rl_speed.py --quick                     # one small point, to check the script (< 1 min)

All runs use the same random-weight LLaVA as ``preference_speed.py`` (CLIP + Llama, ~8M parameters, saved once per
image size and loaded with ``load_model``, float32, sdpa), the same rollout of ``--prompts`` prompts x G
completions (every completion exactly R tokens, the last its end-of-turn, so the plain rows have no padding: their
best case) and the trainer's own pieces:

* **update**: one optimiser step on one micro-batch of G rows through ``rl.trainer.RLStep`` (GRPO's loss with its
  per-token log-probs and entropies), ``backward``, gradient clipping and AdamW, as the loop runs it. Layouts:
  ``group``, the micro-batch is one whole group (G rows sharing a prompt); ``shuffled``, the micro-batches
  ``rl.trainer.micro_batches`` draws (rows shuffled over the rollout, ``train.batch_size = G``), so a micro-batch
  holds parts of several groups and shares less.
* **score**: ``rollout.score_rows`` over the whole rollout without gradient (the old log-probs; the reference's
  cost the same), ``rollout.batch_size`` rows per forward, so whole groups.

Timing: per (grid point, layout) one fresh process runs the plain and the packed update alternately on the same
micro-batches (then the scoring, alternately too), so a busy shared CPU slows both alike; rows per second is rows
over the median time after the warm-up. Memory: per method a fresh process of its own runs two updates; peak RSS
(``ru_maxrss``) includes ~0.5 GB of imports, "train RSS" is the peak minus the resident size before the first one.

The token-count limit ``G(P+R)/(P+G*R)`` (P prompt tokens with the image tokens, R completion tokens) is what sharing
the prefix saves in decoder tokens for a whole group; for the shuffled layout it is ``n(P+R)/(kP+nR)`` with k the
mean number of prompts among a micro-batch's n = G rows. The vision tower also runs once per prompt instead of once
per row, which the limits do not count.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

from preference_speed import FULL_MODEL, PATCH, PROMPT, QUICK_MODEL, RL_SECTION, WORDS, peak_rss_mb, rss_mb, spawn

ROOT = Path(__file__).resolve().parents[1]
METHODS = ("plain", "packed")
LAYOUTS = ("group", "shuffled")


# ---- setup ----------------------------------------------------------------------------------------------------

def prepare(folder: Path, image_tokens: int, dims: dict) -> tuple[str, int]:
    """Save the model for one image size (once); return its folder and P, the prompt's tokens."""
    from mmalign.models.inputs import prompt_text
    from mmalign.models.tiny import build_llava
    side = round(image_tokens ** 0.5) * PATCH
    model_dir = folder / f"model-{image_tokens}"
    model, processor = build_llava(vision=dims["vision"], text=dims["text"], image_size=side, patch_size=PATCH)
    if not model_dir.exists():
        model.save_pretrained(model_dir)
        processor.save_pretrained(model_dir)
    example = prompt_examples(1, side, 0)[0]
    prompt = processor(images=[example["images"]], text=[prompt_text(processor, example)], return_tensors="pt")
    return str(model_dir), int(prompt["attention_mask"].sum())


def prompt_examples(n: int, side: int, seed: int) -> list[dict]:
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(seed)
    return [{"id": f"p{i}", "prompt": PROMPT,
             "images": [Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8))]} for i in range(n)]


def rollout(processor, examples: list[dict], group: int, length: int, seed: int):
    """``group`` completions of each example, each ``length`` tokens: random lab words, then the end-of-turn."""
    import numpy as np
    import torch

    from mmalign.rl.rollout import Rollout
    rng = np.random.default_rng(seed)
    tok = processor.tokenizer
    words = [tok.convert_tokens_to_ids(w) for w in WORDS]
    ids = torch.tensor([list(rng.choice(words, length - 1)) + [tok.eos_token_id]
                        for _ in range(len(examples) * group)])
    rows = [ex for ex in examples for _ in range(group)]
    return Rollout(rows, [tok.decode(r) for r in ids], ids, torch.ones(ids.shape, dtype=torch.bool),
                   torch.ones(len(rows), dtype=torch.bool), torch.zeros(ids.shape), group)


# ---- workers (one subprocess each) ----------------------------------------------------------------------------

def setup(job: dict):
    """The model, the rollout's ``Experience`` with its old log-probs, the micro-batches of the layout and
    ``RLStep`` for each method."""
    import itertools

    import torch

    from mmalign.config import load_config
    from mmalign.models.load import ModelConfig, load_model
    from mmalign.rl.config import RLConfig
    from mmalign.rl.rollout import score_rows
    from mmalign.rl.trainer import Experience, MicroBatch, RLStep, micro_batches
    if job["threads"]:
        torch.set_num_threads(job["threads"])
    g, n = job["group"], job["warmup"] + job["steps"]
    cfgs = {m: load_config(RLConfig, None, [f"rollout.packed={m == 'packed'}", f"rollout.group_size={g}",
                                            f"rollout.prompts={job['prompts']}", f"train.batch_size={g}",
                                            f"rollout.max_new_tokens={job['R']}", f"model.path={job['model']}"])
            for m in METHODS}
    model, processor = load_model(ModelConfig(path=job["model"]))
    side = round(job["image_tokens"] ** 0.5) * PATCH
    ro = rollout(processor, prompt_examples(job["prompts"], side, seed=1), g, job["R"], seed=2)
    ro.old_logps = score_rows(model, processor, ro, batch_size=64)
    adv = torch.randn(len(ro.examples), 1, generator=torch.Generator().manual_seed(3)).expand_as(ro.mask)
    exp = Experience(0, ro, adv.contiguous(), torch.zeros(ro.mask.shape), None, None, {})
    if job["layout"] == "group":
        micros = [MicroBatch(exp, list(range(k % job["prompts"] * g, (k % job["prompts"] + 1) * g)), 1.0)
                  for k in range(n)]
    else:
        micros = list(itertools.islice(micro_batches(cfgs["plain"], lambda step: exp, 0), n))
    return model, processor, ro, micros, {m: RLStep(c, processor) for m, c in cfgs.items()}


def update(model, step, micro, opt) -> float:
    """One timed optimiser step, as the loop takes it."""
    import torch
    t0 = time.perf_counter()
    loss, _ = step(model, micro)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], 1.0)
    opt.step()
    opt.zero_grad(set_to_none=True)
    return time.perf_counter() - t0


def time_worker(job: dict) -> dict:
    """Both methods, alternately, on the same micro-batches (and the scoring, alternately)."""
    import torch

    from mmalign.rl.rollout import score_rows
    model, processor, ro, micros, steps = setup(job)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    model.train()
    times = {m: [] for m in METHODS}
    for micro in micros:
        for m in METHODS:
            times[m].append(update(model, steps[m], micro, opt))
    score = {m: [] for m in METHODS}
    for _ in range(job["score_reps"]):
        for m in METHODS:
            t0 = time.perf_counter()
            score_rows(model, processor, ro, batch_size=64, packed=m == "packed")
            score[m].append(time.perf_counter() - t0)
    g, timed = job["group"], slice(job["warmup"], None)
    return {"rows_per_s": {m: g / statistics.median(t[timed]) for m, t in times.items()},
            "score_rows_per_s": {m: len(ro.examples) / statistics.median(t) for m, t in score.items() if t},
            "prompts_per_micro": statistics.mean(len({id(ro.examples[i]) for i in x.rows}) for x in micros[timed]),
            "threads": torch.get_num_threads()}


def memory_worker(job: dict) -> dict:
    """One method's peak RSS over two updates."""
    import torch
    model, _, _, micros, steps = setup(job)
    opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-6)
    model.train()
    base = rss_mb()
    for micro in micros[:2]:
        update(model, steps[job["method"]], micro, opt)
    peak = peak_rss_mb()
    return {"peak_rss_mb": peak, "train_rss_mb": peak - base}


def worker(job: dict) -> None:
    """Run one job in this (fresh) process; print its figures as a ``RESULT`` JSON line."""
    print("RESULT " + json.dumps(time_worker(job) if job["method"] == "both" else memory_worker(job)))


# ---- report ---------------------------------------------------------------------------------------------------

def limit(P: int, R: int, rows: float, prompts: float) -> float:
    """Decoder tokens of ``rows`` completions alone over the same completions behind one prompt per ``prompts``."""
    return rows * (P + R) / (prompts * P + rows * R)


def table(points: list[dict], group: int) -> str:
    head = ["image tok", "P", "R", "layout", "plain rows/s", "packed rows/s", "packed/plain", "limit",
            "prompts per micro-batch", "peak RSS MB plain / packed", "train RSS MB plain / packed"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for pt in points:
        for layout, r in pt["results"].items():
            speed, mem = r["time"]["rows_per_s"], r["memory"]
            k = r["time"]["prompts_per_micro"]
            cells = [pt["image_tokens"], pt["P"], pt["R"], layout, f"{speed['plain']:.2f}", f"{speed['packed']:.2f}",
                     f"**{speed['packed'] / speed['plain']:.2f}**", f"{limit(pt['P'], pt['R'], group, k):.2f}",
                     f"{k:.2f}", " / ".join(f"{mem[m]['peak_rss_mb']:.0f}" for m in METHODS),
                     " / ".join(f"{mem[m]['train_rss_mb']:.0f}" for m in METHODS)]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
    return "\n".join(lines)


def score_table(points: list[dict], group: int) -> str:
    lines = ["| image tok | P | R | plain rows/s | packed rows/s | packed/plain | limit |", "|" + "---|" * 7]
    for pt in points:
        speed = pt["results"]["group"]["time"]["score_rows_per_s"]
        lines.append(f"| {pt['image_tokens']} | {pt['P']} | {pt['R']} | {speed['plain']:.2f} | "
                     f"{speed['packed']:.2f} | **{speed['packed'] / speed['plain']:.2f}** | "
                     f"{limit(pt['P'], pt['R'], group, 1):.2f} |")
    return "\n".join(lines)


def write_section(doc: Path, points: list[dict], args) -> None:
    """Replace this script's section of ``doc`` (from ``RL_SECTION`` to the end), keeping what comes before it."""
    import torch
    import transformers
    head = doc.read_text().partition(RL_SECTION)[0].rstrip("\n") + "\n" if doc.exists() else ""
    threads = points[0]["results"]["group"]["time"]["threads"]
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(head + f"""{RL_SECTION}: a GRPO group behind one copy of its prompt

Written by `python benchmarks/rl_speed.py {' '.join(sys.argv[1:])}` on {time.strftime('%Y-%m-%d')}.

* Machine: {platform.machine()}, {os.cpu_count()} CPUs, shared with other work while it ran; torch {torch.__version__}
  ({threads} thread(s) per worker), transformers {transformers.__version__}; float32. The same model as above; a
  rollout of {args.prompts} prompts x G = {args.group} completions of exactly R tokens; median of {args.steps} updates
  after {args.warmup} warm-up, plain and packed alternating in one process; memory from a process per method.
  What is timed and how: the docstring of `benchmarks/rl_speed.py`. Repeated runs of a point on this shared 2-core
  machine moved its ratios by up to about 30%.
* Switch: `rollout.packed` (`mmalign/rl/config.py`), for scoring (old and reference log-probs, PPO's old values) and
  updates alike; equality with the plain rows: `tests/rl/test_packed_groups.py`.

Update (`RLStep` + backward + AdamW on a micro-batch of G rows):

{table(points, args.group)}

Scoring without gradient (`score_rows` over the rollout, whole groups per forward):

{score_table(points, args.group)}

* **limit**: decoder tokens without and with the shared prefix, `G(P+R)/(P+G·R)` for a whole group, and for the
  shuffled micro-batches `n(P+R)/(kP+nR)` with k the mean prompts per micro-batch of n = G rows. The vision tower
  also runs once per prompt instead of once per row, which the limit does not count.
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    ap.add_argument("--quick", action="store_true", help="one small grid point with the unit-test model (< 1 min)")
    ap.add_argument("--image-tokens", default="64,256,576")
    ap.add_argument("--answer-tokens", default="16,64", help="R: tokens per completion (end-of-turn included)")
    ap.add_argument("--layouts", default=",".join(LAYOUTS))
    ap.add_argument("--group", type=int, default=8, help="G: completions per prompt")
    ap.add_argument("--prompts", type=int, default=4, help="prompts in the rollout")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--score-reps", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="torch threads in each worker; 0: torch's default")
    ap.add_argument("--out", default="runs/rl_speed")
    ap.add_argument("--doc", default=None, help="default: docs/performance.md (--quick: OUT/performance.md)")
    args = ap.parse_args()
    if args.worker:
        return worker(json.loads(args.worker))
    if args.quick:
        args.image_tokens, args.answer_tokens, args.steps, args.warmup, args.score_reps = "16", "8", 2, 1, 1
        args.threads = args.threads or 1
    out = Path(args.out) / ("quick" if args.quick else "grid")
    doc = Path(args.doc or (out / "performance.md" if args.quick else ROOT / "docs" / "performance.md"))
    points = []
    for img in map(int, args.image_tokens.split(",")):
        model, P = prepare(out / "setup", img, QUICK_MODEL if args.quick else FULL_MODEL)
        for R in map(int, args.answer_tokens.split(",")):
            point = {"image_tokens": img, "P": P, "R": R, "results": {}}
            for layout in args.layouts.split(","):
                job = {"layout": layout, "image_tokens": img, "R": R, "model": model, "group": args.group,
                       "prompts": args.prompts, "steps": args.steps, "warmup": args.warmup, "threads": args.threads,
                       "score_reps": args.score_reps if layout == "group" else 0}
                res = point["results"][layout] = {
                    "time": spawn(job | {"method": "both"}, __file__),
                    "memory": {m: spawn(job | {"method": m}, __file__) for m in METHODS}}
                speed = res["time"]["rows_per_s"]
                print(f"{layout:>8} img={img:<4} P={P:<4} R={R:<3} plain {speed['plain']:6.2f} packed "
                      f"{speed['packed']:6.2f} rows/s  peak RSS "
                      + " / ".join(f"{res['memory'][m]['peak_rss_mb']:.0f}" for m in METHODS) + " MB", flush=True)
            points.append(point)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(points, indent=1))
    print(table(points, args.group))
    print(score_table(points, args.group))
    write_section(doc, points, args)
    print(f"wrote {doc}")


if __name__ == "__main__":
    main()

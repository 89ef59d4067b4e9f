"""Online RL on the lab from the shipped base model: each demonstration's config, several seeds.

    python benchmarks/lab_rl.py --demos arithmetic,ground,rm_caption,rm_swap_caption --seeds 0,1,2 --out runs/lab_rl

Demonstrations (``DEMOS``): GRPO with verifiable rewards on counting (figures split by the true count,
``count_split``), visual arithmetic and grounding, and GRPO on captions against a trained reward model (``mmalign
reward``, trained once here): the lab's reward model (``configs/reward/lab.yaml``) and one trained with swap pairs
as well (``configs/reward/lab_swap.yaml``), or against the lab judge's rating (``judge_caption``). Each reward
model's held-out pairwise accuracy, on the lab's test pairs and on test swap pairs, is reported beside it.
``--model`` starts every run (and the reward models) from another base: the counting figures in docs/rl_count.md
start from ``configs/base/few_counts.yaml``'s.

A seed changes the sampling seeds and the minibatch order (``train.seed``); the prompts are the same stream. Each run
evaluates greedy answers on held-out val prompts before, every ``train.eval_every`` RL steps, and after
(``eval.json``, ``metrics.jsonl``). The reward-model demonstration also records the proxy (the reward model's mean
score on the held-out captions) against the ground truth (CHAIR-i, recall) at each evaluation, so reward hacking
would show as the proxy rising while the ground truth falls, and splits the final hallucinated mentions into the
prior's partners and other absent objects (``hallucination_split``). Prints and writes (``--doc``, default docs/rl.md) a
table (mean ± std over seeds) and a plot of the curves.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmalign.config import load_config
from mmalign.eval.lab import generate
from mmalign.models.load import ModelConfig, load_model
from mmalign.reward.score import load_reward_model
from mmalign.reward.train import RewardConfig, train_reward_model
from mmalign.rl.config import RLConfig
from mmalign.rl.trainer import eval_examples, run_rl
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig
from mmalign.world.scoring import mentioned_objects, score_example

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_alignment import write_doc  # keeps the written reading across reruns

ROOT = Path(__file__).resolve().parents[1]
CAPTION_FIGURES = [
    ("reward-model score (proxy)", "eval/reward", False), ("CHAIR-i", "eval/caption/chair_i", True),
    ("CHAIR-s", "eval/caption/chair_s", True), ("caption recall", "eval/caption/recall", False),
    ("partner mentions / mentions", "split/partner", True), ("other absent mentions / mentions", "split/other", True)]
COUNT_FIGURES = [("counting accuracy", "eval/count/accuracy", False)] + [
    (f"… on scenes of {k} object{'s' * (k > 1)}", f"by_count/{k}", False) for k in range(1, 5)]
# name -> (RL config, reward-model config or None, [(label, eval key, lower is better)])
DEMOS = {
    "count": ("configs/rl/grpo_count.yaml", None, COUNT_FIGURES),
    **{name: (f"configs/rl/{name}.yaml", None, COUNT_FIGURES) for name in ("dapo_count", "rloo_count",
                                                                          "reinforce_pp_count")},
    "count_mix": ("configs/rl/grpo_count_mix.yaml", None, [
        ("counting accuracy", "eval/count/accuracy", False), ("colour accuracy", "eval/colour/accuracy", False),
        ("existence accuracy (POPE random)", "eval/exist/random/accuracy", False),
        ("arithmetic accuracy", "eval/arithmetic/accuracy", False)]),
    "arithmetic": ("configs/rl/grpo_arithmetic.yaml", None, [
        ("arithmetic accuracy", "eval/arithmetic/accuracy", False)]),
    "ground": ("configs/rl/grpo_ground.yaml", None, [
        ("grounding mIoU", "eval/ground/miou", False), ("grounding acc@0.5", "eval/ground/acc@0.5", False)]),
    "judge_caption": ("configs/rl/grpo_judge_caption.yaml", None, [
        ("lab judge rating (the reward)", "eval/reward", False), ("CHAIR-i", "eval/caption/chair_i", True),
        ("CHAIR-s", "eval/caption/chair_s", True), ("caption recall", "eval/caption/recall", False)]),
    "rm_caption": ("configs/rl/grpo_rm_caption.yaml", "configs/reward/lab.yaml", CAPTION_FIGURES),
    "rm_swap_caption": ("configs/rl/grpo_rm_caption.yaml", "configs/reward/lab_swap.yaml", CAPTION_FIGURES),
    "ppo_rm_swap_caption": ("configs/rl/ppo_rm_caption.yaml", "configs/reward/lab_swap.yaml", CAPTION_FIGURES),
}


def reward_folder(out: Path, demo: str) -> Path:
    """Where ``demo``'s reward model is trained: ``out/reward`` for configs/reward/lab.yaml, ``out/reward_<rest>``
    for configs/reward/lab_<rest>.yaml."""
    stem = Path(DEMOS[demo][1]).stem
    return out / ("reward" if stem == "lab" else f"reward_{stem.removeprefix('lab_')}")


def hallucination_split(folder: str, cache: Path) -> dict:
    """CHAIR-i's numerator split: hallucinated mentions of an absent co-occurring partner of a present object (what
    the caption noise taught) and of any other absent category, each per mention, on the run's held-out captions."""
    if not cache.exists():
        cfg = load_config(RLConfig, ROOT / DEMOS["rm_caption"][0])
        examples = eval_examples(cfg)
        model, processor = load_model(ModelConfig(path=folder))
        partner = other = mentions = 0
        for ex, caption in zip(examples, generate(model, processor, examples, desc=None)):
            present = set(ex["meta"]["objects"])
            for c in mentioned_objects(caption):
                mentions += 1
                if c not in present:
                    partner += cfg.world.partner(c) in present
                    other += cfg.world.partner(c) not in present
        cache.write_text(json.dumps({"partner": partner / mentions, "other": other / mentions, "mentions": mentions}))
    return json.loads(cache.read_text())


def count_split(folder: str, cache: Path) -> dict:
    """Greedy counting accuracy on the run's held-out count prompts split by the true count: which scenes RL
    taught the policy to count (``by_count/<k>``)."""
    if not cache.exists():
        examples = eval_examples(load_config(RLConfig, ROOT / DEMOS["count"][0]))
        model, processor = load_model(ModelConfig(path=folder))
        hits: dict[str, list[bool]] = {}
        for ex, answer in zip(examples, generate(model, processor, examples, desc=None)):
            hits.setdefault(ex["answer"], []).append(score_example(ex, answer)["correct"])
        cache.write_text(json.dumps({f"by_count/{k}": sum(v) / len(v) for k, v in sorted(hits.items())}))
    return json.loads(cache.read_text())


def reward_model(out: Path, demo: str, model: str = "") -> dict:
    """``demo``'s reward model, trained once (``reward_folder``) from ``model`` (default: the config's, the shipped
    base): its folder, its held-out pairwise accuracy on the lab's test pairs and on test swap pairs
    (``lab.swap``: a real object swapped for an unrelated absent one)."""
    folder = reward_folder(out, demo)
    if not (folder / "test_accuracy.json").exists():
        cfg = load_config(RewardConfig, ROOT / DEMOS[demo][1], [f"train.output_dir={folder}", "train.threads=1",
                                                                *([f"model.path={model}"] if model else [])])
        train_reward_model(cfg)
    if not (folder / "swap_accuracy.json").exists():
        swaps = lab_pairs(WorldConfig(), LabPairsConfig(n=300, split="test", tasks={"caption": 1.0}, balance=0.0,
                                                        swap=1.0), for_eval=True)
        acc = load_reward_model(folder / "model").pairwise_accuracy(swaps)
        (folder / "swap_accuracy.json").write_text(json.dumps(acc, indent=2) + "\n")
    return {"folder": str(folder / "model"), "test": json.loads((folder / "test_accuracy.json").read_text()),
            "swap": json.loads((folder / "swap_accuracy.json").read_text())}


def run(demo: str, seed: int, out: Path, model: str = "") -> dict:
    """``{"before", "after", "curve"}`` of one run; ``curve`` is ``[(rl_step, eval metrics)]`` from step 0.
    ``model``: the policy to start from instead of the config's (the shipped base)."""
    folder = out / f"{demo}-seed{seed}"
    config = DEMOS[demo][0]
    policy = [f"model.path={model}"] if model else []
    if not (folder / "eval.json").exists():
        overrides = [f"train.seed={seed}", f"train.output_dir={folder}", "train.threads=1", *policy]
        if DEMOS[demo][1]:
            overrides.append(f"reward_model={reward_model(out, demo, model)['folder']}")
        run_rl(load_config(RLConfig, ROOT / config, overrides))
    ev = json.loads((folder / "eval.json").read_text())
    cfg = load_config(RLConfig, ROOT / config, policy)
    per_step = None
    curve = [(0, ev["before"])]
    for line in (folder / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        if "rl_step" in rec:
            per_step = rec["step"] / rec["rl_step"]
        elif any(k.startswith("eval/") for k in rec) and per_step:
            curve.append((round(rec["step"] / per_step), rec))
    if curve[-1][0] != cfg.train.max_steps:
        curve.append((cfg.train.max_steps, ev["after"]))
    if DEMOS[demo][1]:   # the base's split is the "before" of every run
        ev["before"] |= {f"split/{k}": v for k, v in hallucination_split(cfg.model.path, out / "base-split.json").items()}
        ev["after"] |= {f"split/{k}": v for k, v in hallucination_split(str(folder / "model"),
                                                                      folder / "split.json").items()}
    if DEMOS[demo][2] is COUNT_FIGURES:
        ev["before"] |= count_split(cfg.model.path, out / "base-count.json")
        ev["after"] |= count_split(str(folder / "model"), folder / "count.json")
    return {"before": ev["before"], "after": ev["after"], "curve": curve}


def table(results: dict[str, list[dict]]) -> str:
    lines = ["| demonstration | seeds | figure | base | after RL (mean ± std) | change |", "|---|---|---|---|---|---|"]
    for demo, runs in results.items():
        for label, key, _ in DEMOS[demo][2]:
            base = runs[0]["before"][key]
            vals = [r["after"][key] for r in runs]
            mean = statistics.mean(vals)
            after = f"{mean:.3f} ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else f"{mean:.3f}"
            lines.append(f"| {demo} | {len(vals)} | {label} | {base:.3f} | {after} | {mean - base:+.3f} |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path) -> None:
    panels = [(demo, f) for demo in results for f in DEMOS[demo][2] if f[1].startswith("eval/")]  # the curves
    cols = min(3, len(panels))
    rows = -(-len(panels) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.8 * rows), squeeze=False)
    for ax in axes.flat[len(panels):]:
        ax.axis("off")
    for ax, (demo, (label, key, _)) in zip(axes.flat, panels):
        for i, r in enumerate(results[demo]):
            steps, vals = zip(*[(s, m[key]) for s, m in r["curve"] if key in m])
            ax.plot(steps, vals, marker="o", ms=3, label=f"seed {i}")
        ax.set_title(f"{demo}: {label}", fontsize=8)
        ax.set_xlabel("RL step", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    axes.flat[0].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--demos", default=",".join(DEMOS))
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--demo-seeds", default="", help="per-demonstration seeds over --seeds, e.g. 'arithmetic=0;ground=0,1'")
    ap.add_argument("--out", default="runs/lab_rl")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "rl.md"))
    ap.add_argument("--model", default="", help="the policy to start from (default: each config's, the shipped base)")
    args = ap.parse_args()
    out = Path(args.out)
    demos = args.demos.split(",")
    seeds = {d: [int(s) for s in args.seeds.split(",")] for d in demos}
    for part in filter(None, args.demo_seeds.split(";")):
        demo, _, given = part.partition("=")
        seeds[demo] = [int(s) for s in given.split(",")]
    results = {d: [run(d, s, out, args.model) for s in seeds[d]] for d in demos}
    text = table(results)
    for d in (d for d in demos if DEMOS[d][1]):
        rm = reward_model(out, d, args.model)
        by = ", ".join(f"{k} {v['accuracy']:.3f}" for k, v in rm["test"].get("by_kind", {}).items())
        text += (f"\n\nReward model of {d} (`{DEMOS[d][1]}`): pairwise accuracy {rm['test']['accuracy']:.3f} on "
                 f"{rm['test']['n']} held-out test pairs ({by}); {rm['swap']['accuracy']:.3f} on "
                 f"{rm['swap']['n']} held-out swap pairs.")
    print(text)
    doc = Path(args.doc)
    plot(results, doc.with_suffix(".png"))
    configs = ", ".join(dict.fromkeys(f"`{DEMOS[d][0]}`" for d in demos))
    write_doc(doc,
        "# Online RL on the lab\n\n"
        f"From {f'`{args.model}`' if args.model else 'the shipped base model'}, each demonstration with its config ({configs}), seeds "
        f"{', '.join(f'{d} {seeds[d]}' for d in demos)}; greedy "
        "answers on 200 held-out val prompts per task, before RL, during it and after. The curves show every "
        "evaluation of every seed.\n\n"
        f"Command: `python benchmarks/lab_rl.py --demos {args.demos} --seeds {args.seeds}"
        + (f" --model {args.model} --out {args.out} --doc {args.doc}" if args.model else "")
        + (f" --demo-seeds '{args.demo_seeds}'" if args.demo_seeds else "") + "`\n\n"
        f"{text}\n\n![curves]({doc.with_suffix('.png').name})\n")


if __name__ == "__main__":
    main()

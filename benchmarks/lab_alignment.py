"""Preference methods compared on the lab: each method's shipped config, several seeds, from the base model.

    python benchmarks/lab_alignment.py --methods dpo,mdpo --seeds 0,1,2 --out runs/lab_alignment

A seed changes the pairs' draw (``data.lab.seed``) and the training order (``train.seed``). Prints and writes
(``--doc``, default docs/alignment.md) the held-out figures as mean ± std over seeds next to the base model,
with the relative change, and a plot.
"""
from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmalign.config import load_config
from mmalign.eval.runner import evaluate_folder
from mmalign.train.preference import PreferenceConfig, run_preference

ROOT = Path(__file__).resolve().parents[1]
TASKS = ["caption", "exist"]
FIGURES = [  # (label, getter, lower is better)
    ("partner rate, noisy pairs (mean)", lambda m: statistics.mean(
        m["caption"]["partner_rate"][p]["rate"] for p in ("circle/star", "square/triangle")), True),
    ("partner rate circle/star", lambda m: m["caption"]["partner_rate"]["circle/star"]["rate"], True),
    ("partner rate square/triangle", lambda m: m["caption"]["partner_rate"]["square/triangle"]["rate"], True),
    ("CHAIR-i", lambda m: m["caption"]["chair_i"], True),
    ("CHAIR-s", lambda m: m["caption"]["chair_s"], True),
    ("caption recall", lambda m: m["caption"]["recall"], False),
    ("POPE adversarial acc", lambda m: m["exist/adversarial"]["accuracy"], False),
    ("POPE popular acc", lambda m: m["exist/popular"]["accuracy"], False),
    ("POPE random acc", lambda m: m["exist/random"]["accuracy"], False),
]


def run(method: str, seed: int, out: Path, n_scenes: int) -> dict:
    folder = out / f"{method}-seed{seed}"
    if not (folder / "eval.json").exists():
        cfg = load_config(PreferenceConfig, ROOT / "configs" / f"{method}.yaml",
                          [f"train.seed={seed}", f"data.lab.seed={seed}", f"train.output_dir={folder}", "eval_scenes=0"])
        run_preference(cfg)
        m = evaluate_folder(str(folder / "model"), cfg.world, folder / "eval", tasks=TASKS, n_scenes=n_scenes)
        (folder / "eval.json").write_text(json.dumps(m))
    return json.loads((folder / "eval.json").read_text())


def table(base: dict, results: dict[str, list[dict]]) -> str:
    lines = ["| figure | base | " + " | ".join(f"{m} (mean ± std)" for m in results) + " |",
             "|---|---|" + "---|" * len(results)]
    for label, get, _ in FIGURES:
        b = get(base)
        cells = []
        for runs in results.values():
            vals = [get(r) for r in runs]
            mean, sd = statistics.mean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0
            rel = f" ({100 * (mean - b) / b:+.0f}%)" if b else ""
            cells.append(f"{mean:.3f} ± {sd:.3f}{rel}")
        lines.append(f"| {label} | {b:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(base: dict, results: dict[str, list[dict]], path: Path) -> None:
    labels = [f[0] for f in FIGURES]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    names = ["base"] + list(results)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        runs = [base] if name == "base" else results[name]
        vals = [[get(r) for r in runs] for _, get, _ in FIGURES]
        ax.bar([i + j * width for i in range(len(labels))], [statistics.mean(v) for v in vals], width,
               yerr=[statistics.stdev(v) if len(v) > 1 else 0 for v in vals], label=name, capsize=2)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=35, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def base_figures(out: Path, n_scenes: int) -> dict:
    """The shipped base model's held-out figures, evaluated once into ``out/base-eval.json``."""
    path = out / "base-eval.json"
    if not path.exists():
        cfg = load_config(PreferenceConfig)
        out.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(evaluate_folder(cfg.model.path, cfg.world, out / "base-eval", tasks=TASKS,
                                                   n_scenes=n_scenes)))
    return json.loads(path.read_text())


def write_doc(doc: Path, text: str) -> None:
    """Write ``text``, keeping the written "## Reading" of the results across reruns (re-check it against the
    new table)."""
    reading = doc.read_text().partition("\n## Reading")[2] if doc.exists() else ""
    doc.write_text(text + (f"\n## Reading{reading}" if reading else ""))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--methods", default="dpo,mdpo")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--out", default="runs/lab_alignment")
    ap.add_argument("--n-scenes", type=int, default=600)
    ap.add_argument("--doc", default=str(ROOT / "docs" / "alignment.md"))
    args = ap.parse_args()
    out = Path(args.out)
    methods, seeds = args.methods.split(","), [int(s) for s in args.seeds.split(",")]
    base = base_figures(out, args.n_scenes)
    results = {m: [run(m, s, out, args.n_scenes) for s in seeds] for m in methods}
    text = table(base, results)
    print(text)
    doc = Path(args.doc)
    plot(base, results, doc.with_suffix(".png"))
    write_doc(doc,
        "# Preference methods on the lab\n\n"
        f"From the shipped base model, each method with its config (`configs/<method>.yaml`; every method with the "
        "trainer's defaults otherwise: NLL term on the chosen answer, vision tower trained, 600 steps of 16 pairs unless the config says otherwise (mDPO: 1000), "
        f"lr 5e-5), seeds {seeds}; "
        f"held-out clean test scenes ({args.n_scenes} for captions and POPE). Relative change against the base in "
        "brackets. The partner rate is how often a caption names the absent co-occurring partner of a present "
        "object (the prior-driven hallucination the caption noise taught).\n\n"
        f"Command: `python benchmarks/lab_alignment.py --methods {args.methods} --seeds {args.seeds}`\n\n"
        f"{text}\n\n![figures]({doc.with_suffix('.png').name})\n")


if __name__ == "__main__":
    main()

"""Every named data recipe on the lab: build its pairs from the shipped base model, train with the recipe's loss,
evaluate the hallucination figures against the base model.

    python benchmarks/lab_recipes.py --seeds 0,1,2 --out runs/lab_recipes

A seed changes the recipe's draws (``seed``) and the training order. Prints and writes (``--doc``, default
docs/recipes.md) a table of pairs, build time and the held-out figures (mean ± std over seeds) and a plot.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmalign.config import load_config
from mmalign.construct.recipes import RECIPES, RecipeConfig, build_recipe
from mmalign.eval.runner import evaluate_folder
from mmalign.train.preference import PreferenceConfig, run_preference

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_alignment import FIGURES, TASKS, base_figures, write_doc  # the same figures as the method comparison

ROOT = Path(__file__).resolve().parents[1]
SHOWN = [f for f in FIGURES if f[0] in ("partner rate, noisy pairs (mean)", "CHAIR-i", "caption recall",
                                         "POPE adversarial acc")]


def run(recipe: str, seed: int, out: Path, n: int, steps: int, n_scenes: int) -> dict:
    folder = out / f"{recipe}-seed{seed}"
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    built = build_recipe(RecipeConfig(recipe=recipe, n=n, seed=seed, out=str(folder / "data")))
    cfg = load_config(PreferenceConfig, ROOT / "configs" / f"{RECIPES[recipe].loss}.yaml",
                      [f"data.source={built['file']}", f"data.val_size={min(128, built['pairs'] // 8)}", f"train.seed={seed}",
                       f"train.max_steps={steps}", f"train.output_dir={folder / 'train'}", "eval_scenes=0"])
    start = time.perf_counter()
    run_preference(cfg)
    train_s = time.perf_counter() - start
    metrics = evaluate_folder(str(folder / "train" / "model"), cfg.world, folder / "eval", tasks=TASKS,
                              n_scenes=n_scenes)
    result = {"pairs": built["pairs"], "build_s": built["seconds"], "train_s": round(train_s, 1),
              "loss": RECIPES[recipe].loss, "metrics": metrics}
    done.write_text(json.dumps(result))
    return result


def table(base: dict, results: dict[str, list[dict]]) -> str:
    head = "| recipe | loss | pairs | build s | " + " | ".join(label for label, _, _ in SHOWN) + " |"
    lines = [head, "|---" * (4 + len(SHOWN)) + "|",
             "| base model | – | – | – | " + " | ".join(f"{get(base):.3f}" for _, get, _ in SHOWN) + " |"]
    for recipe, runs in results.items():
        cells = []
        for _, get, _ in SHOWN:
            vals = [get(r["metrics"]) for r in runs]
            sd = f" ± {statistics.stdev(vals):.3f}" if len(vals) > 1 else ""
            b = get(base)
            cells.append(f"{statistics.mean(vals):.3f}{sd} ({100 * (statistics.mean(vals) - b) / b:+.0f}%)")
        pairs = statistics.mean(r["pairs"] for r in runs)
        build = statistics.mean(r["build_s"] for r in runs)
        lines.append(f"| {recipe} | {runs[0]['loss']} | {pairs:.0f} | {build:.0f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def plot(base: dict, results: dict[str, list[dict]], path: Path) -> None:
    fig, axes = plt.subplots(1, len(SHOWN), figsize=(4 * len(SHOWN), 4.5))
    names = ["base"] + list(results)
    for ax, (label, get, _) in zip(axes, SHOWN):
        means = [get(base)] + [statistics.mean(get(r["metrics"]) for r in results[n]) for n in results]
        ax.barh(names, means, color=["grey"] + ["C0"] * len(results))
        ax.axvline(get(base), color="grey", lw=0.8, ls="--")
        ax.set_title(label, fontsize=9)
        ax.invert_yaxis()
        ax.tick_params(labelsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--recipes", default=",".join(RECIPES))
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--n", type=int, default=1500, help="prompts per recipe")
    ap.add_argument("--steps", type=int, default=400)
    ap.add_argument("--n-scenes", type=int, default=600)
    ap.add_argument("--out", default="runs/lab_recipes")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "recipes.md"))
    args = ap.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    recipes, seeds = args.recipes.split(","), [int(s) for s in args.seeds.split(",")]
    base = base_figures(out, args.n_scenes)
    results = {r: [run(r, s, out, args.n, args.steps, args.n_scenes) for s in seeds] for r in recipes}
    text = table(base, results)
    print(text)
    doc = Path(args.doc)
    plot(base, results, doc.with_suffix(".png"))
    write_doc(doc,
        "# Data recipes on the lab\n\n"
        f"Each recipe (`mmalign data build --recipe NAME`, `mmalign/construct/recipes.py`) builds pairs from "
        f"{args.n} train scenes with the shipped base model as the policy, which then trains on them with the "
        f"recipe's loss (its config under `configs/`, {args.steps} steps of 16 pairs), seeds {seeds}. Held-out "
        f"clean test scenes ({args.n_scenes} for captions and POPE); relative change against the base model in "
        "brackets. Build time on this machine's 2 CPU cores.\n\n"
        f"Command: `python benchmarks/lab_recipes.py --recipes {args.recipes} --seeds {args.seeds} --n {args.n} "
        f"--steps {args.steps}`\n\n{text}\n\n![recipes]({doc.with_suffix('.png').name})\n")


if __name__ == "__main__":
    main()

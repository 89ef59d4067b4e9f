"""Iterative, offline and online DPO on the lab, from the shipped base model, labelled by the lab oracle.

    python benchmarks/lab_iterate.py --runs lab,offline,online --seeds 0,1,2 --out runs/lab_iterate

A run named ``NAME:0/1`` runs only seeds 0 and 1 (the table says how many seeds each row has).

Each run is ``mmalign iterate --config configs/iterate/<run>.yaml seed=<seed>`` (resumable: a rerun skips what is
done). A seed moves every round's samples and training order. Prints and writes (``--doc``, default
docs/iterative.md) the held-out figures after every round as mean ± std over seeds, with the labelling budget
(samples the oracle scored) and the training steps spent so far, and a plot of the figures round by round.

``--symdpo N`` also builds N SymDPO pairs (``mmalign data build --recipe symdpo``), trains DPO on them from the
base model and reports how often the base and the trained model answer held-out (val split) symbol prompts with
the matching demonstration's symbol, the majority symbol or the plain answer, beside the hallucination figures.

The ``reward_model`` run labels with a Bradley–Terry reward model (trained first with ``configs/reward/lab.yaml``
into ``<out>/reward`` when missing), the ``reward_model_swap`` run with one trained with swap pairs as well
(``configs/reward/lab_swap.yaml``, into ``<out>/reward_swap``; docs/rl.md); both use
``configs/iterate/reward_model.yaml`` and get a table of the proxy reward against the oracle round by round.
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
from mmalign.construct.recipes import RecipeConfig, build_recipe
from mmalign.construct.symdpo import QUESTION_TASKS, REJECTED, symdpo_pair
from mmalign.data.preference import read_preference_file, write_preference_file
from mmalign.eval.lab import generate
from mmalign.eval.runner import evaluate_folder
from mmalign.iterate.config import IterateConfig
from mmalign.iterate.rounds import run_iterate
from mmalign.models.load import ModelConfig, load_model
from mmalign.reward.train import RewardConfig, train_reward_model
from mmalign.train.preference import SHIPPED_BASE, PreferenceConfig, run_preference
from mmalign.world.preference import lab_pairs
from mmalign.world.scenes import WorldConfig

sys.path.insert(0, str(Path(__file__).resolve().parent))
from lab_alignment import FIGURES, write_doc  # the same figures as the method comparison

ROOT = Path(__file__).resolve().parents[1]
RUNS = {"lab": "iterative DPO", "fixed": "iterative DPO, reference fixed",
        "no_coverage": "iterative DPO, coverage-only caption pairs dropped",
        "late_coverage": "iterative DPO, coverage-only caption pairs dropped from round 2",
        "weighted": "iterative DPO, absent mention weighted x2",
        "offline": "offline DPO, one round, same budget",
        "offline_weighted": "offline DPO, absent mention weighted x2", "online": "online DPO (half of each batch online)",
        "reward_model": "iterative DPO, reward-model labels",
        "reward_model_swap": "iterative DPO, swap-pair reward-model labels"}
REWARD_MODELS = {"reward_model": "lab", "reward_model_swap": "lab_swap"}   # run -> configs/reward/<name>.yaml
ONE_ROUND = ("offline", "offline_weighted", "online")
SHOWN = [f for f in FIGURES if f[0] in ("partner rate, noisy pairs (mean)", "CHAIR-i", "CHAIR-s", "caption recall",
                                         "POPE adversarial acc", "POPE random acc")]
PLOTTED = [f for f in SHOWN if f[0] in ("partner rate, noisy pairs (mean)", "CHAIR-i", "caption recall",
                                        "POPE adversarial acc")]


def run(name: str, seed: int, out: Path, n_scenes: int) -> dict:
    extra = [f"scorer.reward_model={reward_model(out, REWARD_MODELS[name])}"] if name in REWARD_MODELS else []
    config = "reward_model" if name in REWARD_MODELS else name
    cfg = load_config(IterateConfig, ROOT / "configs" / "iterate" / f"{config}.yaml",
                      [f"seed={seed}", f"out={out / f'{name}-seed{seed}'}", "preference.train.threads=1",
                       f"eval.n_scenes={n_scenes}", *extra])
    run_iterate(cfg)
    return json.loads((Path(cfg.out) / "summary.json").read_text())


def reward_model(out: Path, config: str) -> Path:
    """A reward run's labeller, trained once with ``configs/reward/<config>.yaml`` into ``out/reward`` (``lab``)
    or ``out/reward_<rest>`` (``lab_<rest>``)."""
    folder = out / ("reward" if config == "lab" else f"reward_{config.removeprefix('lab_')}")
    if not (folder / "model").exists():
        train_reward_model(load_config(RewardConfig, ROOT / "configs" / "reward" / f"{config}.yaml",
                                       [f"train.output_dir={folder}", "train.threads=1"]))
    return folder / "model"


def proxy_table(summaries: list[dict], seeds: list[int]) -> str:
    """Round by round: the scorer's and the oracle's mean score of held-out greedy answers, per seed."""
    lines = ["| seed | round | proxy (reward model) | oracle | parting | stopped after |", "|---|---|---|---|---|---|"]
    for seed, s in zip(seeds, summaries):
        for r in s["rounds"]:
            lines.append(f"| {seed} | {r['round']} | {r['proxy']:.3f} | {r['gold']:.3f} | "
                         f"{'yes' if r['round'] in s['parted'] else ''} | "
                         f"{s['rounds_run'] if s['stopped'] and r['round'] == s['rounds_run'] else ''} |")
    return "\n".join(lines)


def budget(summary: dict, k: int) -> tuple[float, float]:
    """Samples the labeller scored and optimiser steps taken up to round ``k``."""
    rounds = summary["rounds"][1:k + 1]
    labels = sum(r["scored_samples"] + r["online"]["scored_samples"] for r in rounds)
    return labels, sum(r["train"]["step"] for r in rounds)


def cell(values: list[float], base: float) -> str:
    mean = statistics.mean(values)
    sd = f" ± {statistics.stdev(values):.3f}" if len(values) > 1 else ""
    return f"{mean:.3f}{sd} ({100 * (mean - base) / base:+.0f}%)"


def table(results: dict[str, list[dict]]) -> str:
    base = next(iter(results.values()))[0]["rounds"][0]
    most = max(len(v) for v in results.values())
    head = ("| run | round | samples labelled | steps | " + " | ".join(label for label, _, _ in SHOWN)
            + " | oracle score, held-out |")
    lines = [head, "|---" * (5 + len(SHOWN)) + "|",
             "| base model | 0 | – | – | " + " | ".join(f"{get(base['lab']):.3f}" for _, get, _ in SHOWN)
             + f" | {base['gold']:.3f} |"]
    for name, summaries in results.items():
        for k in range(1, min(s["rounds_run"] for s in summaries) + 1):
            labels, steps = (statistics.mean(v) for v in zip(*(budget(s, k) for s in summaries)))
            cells = [cell([get(s["rounds"][k]["lab"]) for s in summaries], get(base["lab"])) for _, get, _ in SHOWN]
            # against the run's own round 0: the reward-model runs score more held-out prompts than the others
            gold = cell([s["rounds"][k]["gold"] for s in summaries], summaries[0]["rounds"][0]["gold"])
            few = f" ({len(summaries)} seed{'s' if len(summaries) > 1 else ''})" if len(summaries) < most else ""
            lines.append(f"| {RUNS[name]}{few} | {k} | {labels / 1000:.1f}k | {steps:.0f} | " + " | ".join(cells)
                         + f" | {gold} |")
    return "\n".join(lines)


def plot(results: dict[str, list[dict]], path: Path) -> None:
    rows = -(-len(results) // 3)                       # the legend's rows, under the panels
    fig, axes = plt.subplots(1, len(PLOTTED), figsize=(4 * len(PLOTTED), 3.4 + 0.18 * rows))
    for ax, (label, get, _) in zip(axes, PLOTTED):
        for j, (name, summaries) in enumerate(results.items()):
            n = min(s["rounds_run"] for s in summaries)
            xs = [0, 3] if name in ONE_ROUND else list(range(n + 1))   # one-round runs at the rounds' budget
            vals = [[get(s["rounds"][k]["lab"]) for s in summaries] for k in range(n + 1)]
            ys = [statistics.mean(v) for v in vals]
            err = [statistics.stdev(v) if len(v) > 1 else 0.0 for v in vals]
            ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, color=f"C{j}", label=RUNS[name],
                        ls=":" if name in ONE_ROUND else "-")
        ax.set_title(label, fontsize=9)
        ax.set_xticks([0, 1, 2, 3])
        ax.set_xlabel("round (one-round runs at the 3-round budget)", fontsize=7)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=8)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=3, fontsize=7, frameon=False)
    fig.tight_layout(rect=(0, 0.05 * rows, 1, 1))
    fig.savefig(path, dpi=110)
    plt.close(fig)


def symbol_answers(model_dir: str, records: list) -> dict:
    """The shares of greedy answers that are the matching demonstration's symbol, the majority symbol, the plain
    answer in words, or anything else."""
    model, processor = load_model(ModelConfig(path=model_dir))
    answers = generate(model, processor, [{"images": r.images, "prompt": r.prompt, "task": r.task} for r in records],
                       desc=None)
    kinds = {"matching symbol": 0, "majority symbol": 0, "plain answer": 0, "other": 0}
    for r, a in zip(records, answers):
        majority = next(sym for ans, sym in r.meta["symbols"].items() if ans != r.meta["query_answer"])
        kind = {r.chosen: "matching symbol", majority: "majority symbol", r.meta["query_answer"]: "plain answer"}
        kinds[kind.get(a, "other")] += 1
    return {k: v / len(records) for k, v in kinds.items()}


SYMDPO_VARIANTS = {  # name -> (pairs trained on, steps)
    "SymDPO pairs alone": ("symdpo", 400),
    "DPO, lab pairs": ("lab", 600),
    "DPO, lab pairs + SymDPO pairs": ("lab+symdpo", 600),
}


def symdpo(n: int, out: Path, n_scenes: int) -> dict:
    """The base model and DPO on SymDPO pairs alone, on the lab's ground-truth pairs, and on both, on held-out
    symbol prompts and the hallucination figures (``--symdpo``); each variant cached in its folder."""
    folder = out / "symdpo"
    built = build_recipe(RecipeConfig(recipe="symdpo", n=n, out=str(folder / "data"))) \
        if not (folder / "data" / "pairs.jsonl").exists() else {"file": str(folder / "data" / "pairs.jsonl")}
    held_out = [r for i in range(300) for r in [symdpo_pair(WorldConfig(), QUESTION_TASKS[i % 3], i, split="val",
                                                           rejected=REJECTED[i // 3 % 2])] if r]
    result = {"held_out": len(held_out), "pairs": n, "base": symbol_answers(SHIPPED_BASE, held_out)}
    for name, (data, steps) in SYMDPO_VARIANTS.items():
        result[name] = symdpo_variant(folder / data.replace("+", "_"), data, built["file"], steps, held_out, n_scenes)
    return result


def symdpo_variant(folder: Path, data: str, symdpo_file: str, steps: int, held_out: list, n_scenes: int) -> dict:
    done = folder / "result.json"
    if done.exists():
        return json.loads(done.read_text())
    source = {"symdpo": symdpo_file, "lab": "lab"}.get(data)
    if source is None:                     # the lab's ground-truth pairs and the SymDPO pairs in one file
        cfg = load_config(PreferenceConfig)
        source = str(write_preference_file(lab_pairs(cfg.world, cfg.data.lab) + read_preference_file(symdpo_file),
                                           folder / "data" / "pairs.jsonl"))
    cfg = load_config(PreferenceConfig, ROOT / "configs" / "dpo.yaml",
                      [f"data.source={source}", f"train.max_steps={steps}", f"train.output_dir={folder / 'train'}",
                       "eval_scenes=0", "train.threads=1"] + (["data.val_size=128"] if data != "lab" else []))
    run_preference(cfg)
    trained = str(folder / "train" / "model")
    result = {"steps": steps, "answers": symbol_answers(trained, held_out),
              "figures": evaluate_folder(trained, WorldConfig(), folder / "eval", tasks=["caption", "exist"],
                                         n_scenes=n_scenes)}
    done.write_text(json.dumps(result))
    return result


def symdpo_table(result: dict, base_lab: dict) -> str:
    kinds = list(result["base"])
    lines = ["| model | steps | " + " | ".join(kinds) + " | " + " | ".join(label for label, _, _ in PLOTTED) + " |",
             "|---" * (2 + len(kinds) + len(PLOTTED)) + "|",
             "| base model | – | " + " | ".join(f"{result['base'][k]:.3f}" for k in kinds) + " | "
             + " | ".join(f"{get(base_lab):.3f}" for _, get, _ in PLOTTED) + " |"]
    for name in SYMDPO_VARIANTS:
        r = result[name]
        lines.append(f"| {name} | {r['steps']} | " + " | ".join(f"{r['answers'][k]:.3f}" for k in kinds) + " | "
                     + " | ".join(f"{get(r['figures']):.3f}" for _, get, _ in PLOTTED) + " |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", default="lab,offline,online")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--n-scenes", type=int, default=600)
    ap.add_argument("--out", default="runs/lab_iterate")
    ap.add_argument("--doc", default=str(ROOT / "docs" / "iterative.md"))
    ap.add_argument("--symdpo", type=int, default=0, help="SymDPO pairs to build and train on (0: skip)")
    args = ap.parse_args()
    out, seeds = Path(args.out), [int(s) for s in args.seeds.split(",")]
    runs = {name: [int(x) for x in own.split("/")] if own else seeds
            for name, _, own in (r.partition(":") for r in args.runs.split(","))}
    results = {name: [run(name, s, out, args.n_scenes) for s in own] for name, own in runs.items()}
    text, extra = table(results), ""
    if args.symdpo:
        base_lab = next(iter(results.values()))[0]["rounds"][0]["lab"]
        extra = (f"\n## SymDPO\n\nThe share of greedy answers to 300 held-out (val split) symbol prompts that are "
                 "the matching demonstration's symbol (right), the majority symbol or the plain answer (the two "
                 "guesses that skip the images), before and after DPO (lr 5e-5, NLL term, seed 0) on "
                 f"{args.symdpo} pairs of the `symdpo` recipe alone, on the lab's 4000 ground-truth pairs "
                 "(`configs/dpo.yaml`), and on both in one set, beside the hallucination figures.\n\n"
                 + symdpo_table(symdpo(args.symdpo, out, args.n_scenes), base_lab) + "\n")
    labelled = [name for name in REWARD_MODELS if name in results]
    if labelled:
        rm_cfg = load_config(IterateConfig, ROOT / "configs" / "iterate" / "reward_model.yaml")
        extra += ("\n## Proxy reward against the oracle\n\nThe reward-model runs label their pairs with a reward "
                  "model instead of the oracle: `reward_model` with `configs/reward/lab.yaml` (trained on the lab's "
                  "ground-truth pairs), `reward_model_swap` with `configs/reward/lab_swap.yaml` (swap pairs as well, "
                  "docs/rl.md). After each round the reward model's mean score of the greedy answers to "
                  f"{rm_cfg.eval.proxy_prompts} held-out val prompts (the proxy) is set against the oracle's score "
                  "of the same answers. A round where the proxy rises while the oracle falls below its best earlier "
                  f"round by more than {rm_cfg.overopt.z:g} paired standard errors is *parting* (`mmalign.iterate.overopt`); "
                  f"`overopt.patience: {rm_cfg.overopt.patience}` stops the rounds at the first.\n\n"
                  + "\n\n".join(f"`{name}`:\n\n" + proxy_table(results[name], runs[name]) for name in labelled)
                  + "\n")
    print(text + extra)
    doc = Path(args.doc)
    plot(results, doc.with_suffix(".png"))
    lab, offline, online = (load_config(IterateConfig, ROOT / "configs" / "iterate" / f"{n}.yaml")
                            for n in ("lab", "offline", "online"))
    write_doc(doc,
        "# Iterative and online DPO on the lab\n\n"
        "From the shipped base model, every run labelled by the lab oracle but the reward-model runs (below) "
        "(`configs/iterate/<run>.yaml`). "
        f"Iterative DPO: each round samples {lab.sampling.n} answers (temperature {lab.sampling.temperature:g}) to "
        f"{lab.prompts} fresh prompts (captions and yes/no questions) from the current policy, pairs every two "
        f"answers whose oracle scores differ, de-duplicates and length-balances the pairs and trains {lab.epochs:g} "
        "epochs of DPO on them (+ NLL on the chosen answer, lr 5e-5, 16 pairs a step), the reference refreshed to "
        f"each round's starting policy. Offline DPO: one round on the {lab.rounds} rounds' budget "
        f"({offline.prompts} prompts of the same scenes sampled from the base model, {offline.epochs:g} epochs). "
        f"Online DPO: one round of {online.preference.train.max_steps} steps, "
        f"{online.preference.online.fraction:.0%} of each batch sampled from the current policy and labelled on "
        f"the fly (best against worst), the rest from {online.prompts} base-model prompts. Seeds {seeds}; held-out "
        f"clean test scenes ({args.n_scenes} for captions and POPE); relative change against the base model in "
        "brackets; the partner rate is the mean of the two noisy pairs'. *Samples labelled* counts the distinct "
        "finished answers the oracle scored (online: those sampled in training too); *oracle score* is the "
        f"oracle's mean score of greedy answers to {lab.eval.proxy_prompts} held-out val prompts (captions: covered "
        "− hallucinated objects; questions: accuracy; the reward-model runs score 1000, and their change is "
        "against their own round 0).\n\n"
        f"Command: `python benchmarks/lab_iterate.py --runs {args.runs} --seeds {args.seeds}"
        f"{f' --symdpo {args.symdpo}' if args.symdpo else ''}`\n\n"
        f"{text}\n\n![rounds]({doc.with_suffix('.png').name})\n{extra}")


if __name__ == "__main__":
    main()

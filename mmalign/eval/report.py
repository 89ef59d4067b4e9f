"""Reports people can read: a Markdown table of the headline lab figures per model and a PNG bar chart."""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

# (label, path into the metrics dict, higher is better)
HEADLINE = [
    ("caption recall", ("caption", "recall"), True),
    ("CHAIR-i", ("caption", "chair_i"), False),
    ("CHAIR-s", ("caption", "chair_s"), False),
    ("POPE random acc", ("exist/random", "accuracy"), True),
    ("POPE popular acc", ("exist/popular", "accuracy"), True),
    ("POPE adversarial acc", ("exist/adversarial", "accuracy"), True),
    ("POPE adversarial yes-ratio", ("exist/adversarial", "yes_ratio"), None),
    ("counting acc", ("count", "accuracy"), True),
    ("colour acc", ("colour", "accuracy"), True),
    ("spatial acc", ("spatial", "accuracy"), True),
    ("grounding mIoU", ("ground", "miou"), True),
    ("arithmetic acc", ("arithmetic", "accuracy"), True),
    ("multi-image acc", ("multi_image", "accuracy"), True),
    ("video acc", ("video", "accuracy"), True),
    ("unsafe refusal rate", ("safety", "refusal_rate"), True),
    ("benign over-refusal", ("safety", "over_refusal_rate"), False),
]


def headline(metrics: dict) -> dict[str, float]:
    out = {}
    for label, (task, key), _ in HEADLINE:
        if task in metrics and key in metrics[task]:
            out[label] = metrics[task][key]
    for pair, v in metrics.get("caption", {}).get("partner_rate", {}).items():
        out[f"partner rate {pair}"] = v["rate"]
    return out


def table(models: dict[str, dict]) -> str:
    heads = {name: headline(m) for name, m in models.items()}
    rows = list(dict.fromkeys(k for h in heads.values() for k in h))
    lines = ["| figure | " + " | ".join(models) + " |", "|---|" + "---|" * len(models)]
    for r in rows:
        lines.append(f"| {r} | " + " | ".join(f"{heads[n][r]:.3f}" if r in heads[n] else "–" for n in models) + " |")
    return "\n".join(lines)


def plot(models: dict[str, dict], path: Path) -> Path:
    heads = {name: headline(m) for name, m in models.items()}
    labels = list(dict.fromkeys(k for h in heads.values() for k in h))
    fig, ax = plt.subplots(figsize=(max(8, 0.6 * len(labels)), 4.5))
    width = 0.8 / len(models)
    for j, name in enumerate(models):
        xs = [i + j * width for i in range(len(labels))]
        ax.bar(xs, [heads[name].get(lab, 0.0) for lab in labels], width=width, label=name)
    ax.set_xticks([i + 0.4 - width / 2 for i in range(len(labels))])
    ax.set_xticklabels(labels, rotation=55, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("score")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def eval_report(models: dict[str, dict], out: Path, title: str = "Lab evaluation", notes: str = "") -> Path:
    out.mkdir(parents=True, exist_ok=True)
    plot(models, out / "figures.png")
    text = f"# {title}\n\n{notes}\n\n{table(models)}\n\n![figures](figures.png)\n"
    (out / "report.md").write_text(text)
    return out / "report.md"


def base_report(summary: dict, out: Path) -> Path:
    t = summary["timings"]
    v = summary["vision"]
    notes = (f"Vision tower: held-out recall {v['recall_normal']:.3f} normal / {v['recall_faint']:.3f} faint, "
             f"false positives {v['false_positive_rate']:.3f}. Wall time of the stages run this time: "
             + (", ".join(f"{k[:-2]} {s:.0f} s" for k, s in t.items()) or "none (all reused)")
             + ". Held-out clean scenes; `control` is trained on clean captions.")
    return eval_report(summary["results"], out, "Lab base model", notes)

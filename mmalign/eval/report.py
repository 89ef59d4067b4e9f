"""Reports people can read: Markdown and HTML tables of the six dimensions and the headline lab figures per
model, a bar chart of the figures and a radar of the dimensions (PNG); ``compare`` lays saved runs side by side."""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from mmalign.errors import MMAlignError
from mmalign.eval.dimensions import DIMENSIONS, dimension_scores

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
    ("conversation relative score / 100", ("conversation", "relative_fraction"), True),
    ("reward-model pairwise acc", ("reward", "accuracy"), True),
    ("win rate vs annotator", ("preference", "win_rate"), True),
]


def headline(metrics: dict) -> dict[str, float]:
    out = {}
    for label, (task, key), _ in HEADLINE:
        if task in metrics and key in metrics[task]:
            out[label] = metrics[task][key]
    for pair, v in metrics.get("caption", {}).get("partner_rate", {}).items():
        out[f"partner rate {pair}"] = v["rate"]
    return out


def _rows(models: dict[str, dict], by: str) -> tuple[list[str], dict[str, dict[str, float]]]:
    values = {name: (dimension_scores(m) if by == "dimension" else headline(m)) for name, m in models.items()}
    return list(dict.fromkeys(k for v in values.values() for k in v)), values


def table(models: dict[str, dict], by: str = "figure", diff: bool = False) -> str:
    """Markdown: one row per headline figure (or per dimension), one column per model; ``diff`` adds each
    model's difference from the first."""
    rows, values = _rows(models, by)
    names, first = list(models), next(iter(models))

    def cell(n, r):
        if r not in values[n]:
            return "–"
        d = f" ({values[n][r] - values[first][r]:+.3f})" if diff and n != first and r in values[first] else ""
        return f"{values[n][r]:.3f}{d}"

    lines = [f"| {by} | " + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
    lines += [f"| {r} | " + " | ".join(cell(n, r) for n in names) + " |" for r in rows]
    return "\n".join(lines)


def html_table(models: dict[str, dict], by: str = "figure") -> str:
    rows, values = _rows(models, by)
    head = "".join(f"<th>{html.escape(n)}</th>" for n in models)
    body = "".join(f"<tr><td>{html.escape(r)}</td>" + "".join(
        f"<td>{values[n][r]:.3f}</td>" if r in values[n] else "<td>–</td>" for n in models) + "</tr>" for r in rows)
    return f"<table><tr><th>{by}</th>{head}</tr>{body}</table>"


def radar(models: dict[str, dict], path: Path) -> Path:
    """The six dimensions of each model on one polar plot (a missing dimension is drawn at 0)."""
    dims = list(DIMENSIONS)
    angles = [2 * math.pi * i / len(dims) for i in range(len(dims))] + [0.0]
    fig, ax = plt.subplots(figsize=(6.5, 5), subplot_kw={"polar": True})
    for name, m in models.items():
        scores = dimension_scores(m)
        vals = [scores.get(d, 0.0) for d in dims]
        ax.plot(angles, vals + vals[:1], label=name)
        ax.fill(angles, vals + vals[:1], alpha=0.1)
    ax.set_xticks(angles[:-1])
    ax.set_xticklabels(dims, fontsize=8)
    ax.set_ylim(0, 1)
    ax.legend(loc="upper left", bbox_to_anchor=(1.1, 1.1), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


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


def eval_report(models: dict[str, dict], out: Path, title: str = "Lab evaluation", notes: str = "",
                diff: bool = False) -> Path:
    """``report.md`` and ``report.html`` (the same tables and plots, the plots inline) in ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    plot(models, out / "figures.png")
    radar(models, out / "radar.png")
    text = (f"# {title}\n\n{notes}\n\n## Dimensions\n\n{table(models, 'dimension', diff)}\n\n"
            f"![dimensions](radar.png)\n\n## Figures\n\n{table(models, 'figure', diff)}\n\n![figures](figures.png)\n")
    (out / "report.md").write_text(text)
    img = {n: base64.b64encode((out / n).read_bytes()).decode() for n in ("radar.png", "figures.png")}
    (out / "report.html").write_text(
        f"<!doctype html><meta charset='utf-8'><title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 8px}"
        "table{border-collapse:collapse;margin:1em 0}</style>"
        f"<h1>{html.escape(title)}</h1><p>{html.escape(notes)}</p><h2>Dimensions</h2>{html_table(models, 'dimension')}"
        f"<img src='data:image/png;base64,{img['radar.png']}'><h2>Figures</h2>{html_table(models)}"
        f"<img src='data:image/png;base64,{img['figures.png']}'>")
    return out / "report.md"


def compare(runs: list[str], out: str | Path) -> Path:
    """``mmalign compare``: the ``results.json`` of several eval runs side by side, with differences from the
    first run."""
    models = {}
    for run in runs:
        path = Path(run) / "results.json" if Path(run).is_dir() else Path(run)
        if not path.exists():
            raise MMAlignError(f"compare: {path} does not exist (give eval output folders or results.json files)")
        try:
            models[path.parent.name if path.name == "results.json" else path.stem] = json.loads(path.read_text())
        except json.JSONDecodeError as e:
            raise MMAlignError(f"compare: {path} is not JSON ({e})") from None
    if len(models) < len(runs):
        raise MMAlignError(f"compare: runs with the same folder name: {runs}")
    return eval_report(models, Path(out), "Comparison", f"Differences in brackets are against `{runs[0]}`.", diff=True)


def base_report(summary: dict, out: Path) -> Path:
    t = summary["timings"]
    v = summary["vision"]
    notes = (f"Vision tower: held-out recall {v['recall_normal']:.3f} normal / {v['recall_faint']:.3f} faint, "
             f"false positives {v['false_positive_rate']:.3f}. Wall time of the stages run this time: "
             + (", ".join(f"{k[:-2]} {s:.0f} s" for k, s in t.items()) or "none (all reused)")
             + ". Held-out clean scenes; `control` is trained on clean captions.")
    return eval_report(summary["results"], out, "Lab base model", notes)

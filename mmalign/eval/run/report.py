"""The report of one official-benchmark run: ``report.md`` and ``report.html`` with the run's settings, every
metric (nested metrics as ``a/b`` paths), the judge and its parse failures, and the first items with their
prompt, response and score. Prompts and model text are HTML-escaped in both files (Markdown viewers render
raw HTML)."""
from __future__ import annotations

import html
import json
from pathlib import Path

N_SHOWN = 20
MAX_CELL = 300


def flatten(metrics: dict, prefix: str = "") -> dict[str, object]:
    """Scalar leaves of nested metrics keyed by their path (``random/f1``); lists are left out."""
    out = {}
    for key, value in metrics.items():
        path = f"{prefix}{key}"
        if isinstance(value, dict):
            out |= flatten(value, path + "/")
        elif not isinstance(value, list):
            out[path] = value
    return out


def _fmt(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def _cell(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    return html.escape(text if len(text) <= MAX_CELL else text[:MAX_CELL] + " ...")


def _settings(result: dict) -> list[tuple[str, str]]:
    rows = [("benchmark", f"{result['benchmark']} (version {result['version']})"),
            ("model", f"{result['model']['path']} (fingerprint {result['model']['fingerprint']})"),
            ("data", result["data"]), ("images", str(result["images"])), ("items", str(result["n_items"]))]
    if "generation" in result:
        rows.append(("generation", ", ".join(f"{k} {v}" for k, v in result["generation"].items())))
    if "reward" in result:
        rows.append(("reward", result["reward"]))
    if "judge" in result:
        j = result["judge"]
        rows += [("judge", f"{j['id']} {json.dumps(j['settings'], sort_keys=True)}"),
                 ("judge parse failures", f"{j['n_parse_failures']} of {j['n_judged']} judged")]
    return rows


def _shown(records: list[dict]) -> list[tuple[str, str, str, str]]:
    return [(_cell(r["id"]), _cell(r["prompt"]), _cell(r["response"]),
             _cell({k: v for k, v in r["score"].items() if k != "id"})) for r in records[:N_SHOWN]]


def markdown(result: dict, records: list[dict]) -> str:
    def md(text: str) -> str:
        return text.replace("|", "\\|").replace("\n", "<br>")
    lines = [f"# {html.escape(result['benchmark'])}", ""]
    lines += [f"- {k}: {md(html.escape(v))}" for k, v in _settings(result)]
    lines += ["", "## Metrics", "", "| metric | value |", "|---|---|"]
    lines += [f"| {md(html.escape(k))} | {_fmt(v)} |" for k, v in flatten(result["metrics"]).items()]
    lines += ["", f"## First {min(N_SHOWN, len(records))} items", "", "| id | prompt | response | score |",
              "|---|---|---|---|"]
    lines += ["| " + " | ".join(md(c) for c in row) + " |" for row in _shown(records)]
    return "\n".join(lines) + "\n"


def html_page(result: dict, records: list[dict]) -> str:
    def table(head: tuple, rows: list) -> str:
        th = "".join(f"<th>{h}</th>" for h in head)
        return f"<table><tr>{th}</tr>" + "".join(
            "<tr>" + "".join(f"<td>{c}</td>" for c in row) + "</tr>" for row in rows) + "</table>"
    title = html.escape(result["benchmark"])
    settings = [(html.escape(k), html.escape(v)) for k, v in _settings(result)]
    metrics = [(html.escape(k), _fmt(v)) for k, v in flatten(result["metrics"]).items()]
    return (f"<!doctype html><meta charset='utf-8'><title>{title}</title>"
            "<style>body{font-family:sans-serif;margin:2em}td,th{border:1px solid #ccc;padding:3px 8px;"
            "vertical-align:top;white-space:pre-wrap}table{border-collapse:collapse;margin:1em 0}</style>"
            f"<h1>{title}</h1>{table(('setting', 'value'), settings)}<h2>Metrics</h2>"
            f"{table(('metric', 'value'), metrics)}<h2>First items</h2>"
            f"{table(('id', 'prompt', 'response', 'score'), _shown(records))}")


def bench_report(result: dict, records: list[dict], out: Path) -> Path:
    """Writes ``report.md`` and ``report.html`` in ``out``; returns the Markdown path."""
    (out / "report.md").write_text(markdown(result, records), encoding="utf-8")
    (out / "report.html").write_text(html_page(result, records), encoding="utf-8")
    return out / "report.md"

"""Reports: Markdown + HTML with the dimensions and figures, escaped model text, and ``compare``."""
import json

import pytest

from mmalign.errors import MMAlignError
from mmalign.eval.report import compare, eval_report, table

A = {"caption": {"recall": 0.9, "chair_i": 0.2, "chair_s": 0.3}, "count": {"accuracy": 0.8},
     "reward": {"accuracy": 0.6}}
B = {"caption": {"recall": 0.85, "chair_i": 0.1, "chair_s": 0.2}, "count": {"accuracy": 0.9},
     "reward": {"accuracy": 0.7}}


def test_report_files_and_escaping(tmp_path):
    eval_report({"<script>alert(1)</script>": A}, tmp_path, "t <b>", "notes <script>x</script>")
    for name in ("report.md", "report.html", "figures.png", "radar.png"):
        assert (tmp_path / name).stat().st_size > 0
    page = (tmp_path / "report.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    md = (tmp_path / "report.md").read_text()
    assert "| hallucination | 0.800 |" in md        # 1 - CHAIR-i; the only hallucination figure given


def test_table_with_differences():
    text = table({"a": A, "b": B}, "figure", diff=True)
    assert "| CHAIR-i | 0.200 | 0.100 (-0.100) |" in text
    assert "| counting acc | 0.800 | 0.900 (+0.100) |" in text


def test_compare_runs(tmp_path):
    for name, m in (("base", A), ("dpo", B)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps(m))
    report = compare([str(tmp_path / "base"), str(tmp_path / "dpo")], tmp_path / "cmp")
    assert "| reward models | 0.600 | 0.700 (+0.100) |" in report.read_text()
    with pytest.raises(MMAlignError, match="missing"):
        compare([str(tmp_path / "base"), str(tmp_path / "missing")], tmp_path / "cmp2")

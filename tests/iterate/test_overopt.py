"""The over-optimisation signal: rounds where the proxy rises while the oracle falls, the stop after ``patience`` of
them, and the driver stopping on a scripted divergence (stages replaced by fakes that write what the summary reads)."""
from __future__ import annotations

import json

import pytest

from mmalign.iterate import rounds
from mmalign.iterate.overopt import OverOptConfig, best_round, overoptimised, paired_se, parted
from mmalign.iterate.rounds import run_iterate
from mmalign.iterate.store import write_json

from .conftest import small


def history(proxy: list[float], gold: list[float]) -> list[dict]:
    return [{"proxy": p, "gold": g} for p, g in zip(proxy, gold, strict=True)]


def test_parting_rounds():
    h = history([0, 1, 2, 3, 2], [0, 1, 0.5, 0.2, 0.1])
    assert parted(h, OverOptConfig()) == [2, 3]                    # round 4: both fell, so not parting
    assert parted(h, OverOptConfig(tolerance=0.4)) == [2, 3]       # against the peak (round 1): 0.5 and 0.8 below
    assert parted(h, OverOptConfig(tolerance=0.6)) == [3]          # round 2 is only 0.5 below the peak
    assert best_round(h) == 1
    assert best_round(history([0, 1, 1], [0, 2, 2])) == 1          # the earliest of ties


def test_a_slow_fall_parts_against_the_peak():
    # the truth falls 0.3 a round while the proxy climbs: no step falls by 0.5, but round 2 is 0.6 below the peak
    h = history([0, 1, 2, 3], [1.0, 0.7, 0.4, 0.1])
    assert parted(h, OverOptConfig(tolerance=0.5)) == [2, 3]
    # a dip and a recovery above the old peak: the new peak is what later rounds are held to
    h = history([0, 1, 2, 3, 4], [1.0, 0.9, 1.2, 1.1, 0.9])
    assert parted(h, OverOptConfig(tolerance=0.15)) == [4]         # 0.3 below round 2; round 3 only 0.1


def test_stop_after_patience_parting_rounds():
    h = history([0, 1, 2, 3], [0, 1, 0.5, 0.2])
    assert overoptimised(h[:2], OverOptConfig()) is None           # both rose
    reason = overoptimised(h[:3], OverOptConfig())
    assert reason and "round 2" in reason and "1.000 -> 2.000" in reason
    assert overoptimised(h[:3], OverOptConfig(patience=2)) is None
    assert "rounds 2, 3" in overoptimised(h, OverOptConfig(patience=2))
    assert overoptimised(history([0, 1, 2], [0, 1, 2]), OverOptConfig()) is None   # one curve: nothing parts


def test_paired_standard_error_by_hand():
    # differences 1, -1, 2, 0: mean 0.5, sample variance (0.25 + 2.25 + 2.25 + 0.25) / 3 = 5/3, SE = sqrt(5/3 / 4)
    assert paired_se([0, 1, 0, 2], [1, 0, 2, 2]) == pytest.approx((5 / 12) ** 0.5)
    assert paired_se([1.0], [0.0]) == 0.0                          # one pair: no spread to estimate
    assert paired_se([0, float("nan"), 1], [1, 5, 0]) == pytest.approx(1.0)   # NaNs (unparsed judge replies) left out
    with pytest.raises(ValueError):
        paired_se([0, 1], [0])


def with_values(proxy: list[float], gold_values: list[list[float]]) -> list[dict]:
    return [{"proxy": p, "gold": sum(g) / len(g), "gold_values": g} for p, g in zip(proxy, gold_values, strict=True)]


def test_a_fall_within_noise_does_not_part():
    # round 1: mean gold 1.0 -> 0.75, but the per-prompt differences d = (-1, 1, -1, 0) spread far more: mean
    # -0.25, variance (0.5625 + 1.5625 + 0.5625 + 0.0625) / 3 = 0.9167, SE = 0.4787, and 2 SE = 0.957 > 0.25
    noisy = with_values([0.0, 1.0], [[1, 0, 2, 1], [0, 1, 1, 1]])
    assert parted(noisy, OverOptConfig()) == []
    assert parted(noisy, OverOptConfig(z=0.5)) == [1]              # 0.5 SE = 0.239 < 0.25
    assert parted(noisy, OverOptConfig(z=0)) == [1]                # z = 0: any fall parts, as without the values
    # the same fall on every prompt has no spread: it parts at any z
    steady = with_values([0.0, 1.0], [[1, 2, 3, 4], [0.75, 1.75, 2.75, 3.75]])
    assert parted(steady, OverOptConfig(z=10)) == [1]
    # rows without per-prompt values (older runs) fall back to the tolerance alone
    assert parted([{"proxy": 0, "gold": 1.0}, {"proxy": 1, "gold": 0.75}], OverOptConfig(z=10)) == [1]


def scripted(monkeypatch, proxy: list[float], gold: list[float]) -> list[tuple[str, int]]:
    """Every stage a fake; round k's evaluation reports ``proxy[k]``, ``gold[k]``."""
    calls = []

    def stage(name):
        def fake(run, k, tmp):
            calls.append((name, k))
            if name == "pairs":
                write_json(tmp / "report.json", {"scored_samples": 48})
            if name == "filtered":
                write_json(tmp / "report.json", {"pairs": 10})
            if name == "train":
                (tmp / "metrics.jsonl").write_text(json.dumps({"step": 1, "loss": 0.5}) + "\n")
            if name == "eval":
                write_json(tmp / "scores.json", {"model": f"model-{k}", "lab": {}, "proxy": proxy[k], "gold": gold[k]})
        return fake
    for name in rounds.ROUND_STAGES:
        monkeypatch.setitem(rounds.ROUND_STAGES, name, stage(name))
    return calls


@pytest.mark.parametrize("stop", [True, False])
def test_the_rounds_stop_when_proxy_and_truth_part(tmp_path, monkeypatch, stop):
    # the proxy keeps climbing; the truth peaks at round 2 and falls in round 3
    calls = scripted(monkeypatch, proxy=[0.0, 1.0, 2.0, 3.0, 4.0], gold=[0.0, 1.0, 1.5, 1.0, 0.5])
    result = run_iterate(small(tmp_path, "rounds=4", f"overopt.stop={str(stop).lower()}"))
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["parted"] == ([3] if stop else [3, 4])
    assert result["best_round"] == 2 and result["best_model"] == "model-2"
    if stop:
        assert result["rounds_run"] == 3 and "round 3" in result["stopped"]
        assert not (tmp_path / "round_4").exists() and ("samples", 4) not in calls
    else:
        assert result["rounds_run"] == 4 and result["stopped"] is None and summary["overoptimised"]
    assert [r["gold"] for r in summary["rounds"]] == [0.0, 1.0, 1.5, 1.0, 0.5][: result["rounds_run"] + 1]

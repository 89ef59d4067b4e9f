"""``mmalign iterate`` on the shipped base model at tiny sizes: the round layout, resuming after an interruption at
every stage (the finished stages skipped, the interrupted one redone, the result the same as a run never
interrupted), the reference fixed at round 1's policy or refreshed each round, a folder refusing other settings."""
from __future__ import annotations

import json

import pytest
import yaml
import torch
from safetensors.torch import load_file

from mmalign.data.preference import PreferenceRecord, read_preference_file, write_preference_file
from mmalign.errors import MMAlignError
from mmalign.iterate import rounds
from mmalign.iterate.rounds import Run, _check_same_run, round_preference, run_iterate
from mmalign.train import preference

from .conftest import small

INTERRUPTIONS = [("eval", 0), ("samples", 1), ("pairs", 1), ("filtered", 1), ("train", 1), ("eval", 1)]


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """A run never interrupted, to compare with."""
    out = tmp_path_factory.mktemp("straight")
    run_iterate(small(out, "preference.train.save_every=2"))
    return out


def count_stages(monkeypatch) -> list[tuple[str, int]]:
    calls = []
    for name, fn in list(rounds.ROUND_STAGES.items()):
        def counted(run, k, tmp, fn=fn, name=name):
            calls.append((name, k))
            return fn(run, k, tmp)
        monkeypatch.setitem(rounds.ROUND_STAGES, name, counted)
    return calls


def interrupt(monkeypatch, stage: str, at: int) -> None:
    """Kill the run inside ``stage`` of round ``at``: training after its step-2 checkpoint, any other stage once
    it has written its files, with the largest of them cut in half (a write the kill caught midway)."""
    if stage == "train":
        real = preference.Step.__call__
        steps = []

        def dies_at_step_3(self, model, records):
            steps.append(1)
            if len(steps) == 3:
                raise KeyboardInterrupt
            return real(self, model, records)
        monkeypatch.setattr(preference.Step, "__call__", dies_at_step_3)
        return
    fn = rounds.ROUND_STAGES[stage]

    def dies(run, k, tmp):
        fn(run, k, tmp)
        if k == at:
            biggest = max((p for p in tmp.rglob("*") if p.is_file()), key=lambda p: p.stat().st_size)
            biggest.write_bytes(biggest.read_bytes()[: biggest.stat().st_size // 2])
            raise KeyboardInterrupt
    monkeypatch.setitem(rounds.ROUND_STAGES, stage, dies)


def figures(out, k: int) -> dict:
    scores = json.loads((out / f"round_{k}" / "eval" / "scores.json").read_text())
    return {key: scores[key] for key in ("lab", "proxy", "gold", "by_task")}


def test_layout(straight):
    for name in rounds.STAGES:
        assert (straight / "round_1" / name).is_dir()
    assert not list(straight.rglob("*.tmp"))
    summary = json.loads((straight / "summary.json").read_text())
    assert [r["round"] for r in summary["rounds"]] == [0, 1] and summary["rounds_run"] == 1
    assert summary["rounds"][1]["pairs"] == json.loads((straight / "round_1/filtered/report.json").read_text())["pairs"]
    assert summary["rounds"][1]["scored_samples"] > 0
    samples = [json.loads(line) for line in (straight / "round_1/samples/samples.jsonl").read_text().splitlines()]
    assert len(samples) == 16 and all(len(s["texts"]) <= 3 for s in samples)


@pytest.mark.parametrize("stage,at", INTERRUPTIONS, ids=[f"{s}{k}" for s, k in INTERRUPTIONS])
def test_resume_after_an_interruption(tmp_path, monkeypatch, straight, stage, at):
    cfg = small(tmp_path, "preference.train.save_every=2")
    with monkeypatch.context() as m:
        interrupt(m, stage, at)
        with pytest.raises(KeyboardInterrupt):
            run_iterate(cfg)
    assert not (tmp_path / f"round_{at}" / stage).exists() and (tmp_path / f"round_{at}" / f"{stage}.tmp").exists()
    calls = count_stages(monkeypatch)
    steps = []
    real_step = preference.Step.__call__
    monkeypatch.setattr(preference.Step, "__call__", lambda self, *a: (steps.append(1), real_step(self, *a))[1])
    run_iterate(small(tmp_path, "preference.train.save_every=2"))
    assert len(steps) == (2 if stage == "train" else 0 if (stage, at) == ("eval", 1) else 4)   # train resumed at 2
    order = [("eval", 0)] + [(name, 1) for name in rounds.STAGES]
    assert calls == order[order.index((stage, at)):]              # finished stages skipped, the rest run once
    assert not list(tmp_path.rglob("*.tmp"))
    assert figures(tmp_path, 1) == figures(straight, 1) and figures(tmp_path, 0) == figures(straight, 0)
    for name in ("pairs", "filtered"):
        assert (tmp_path / "round_1" / name / "pairs.jsonl").read_text() == \
            (straight / "round_1" / name / "pairs.jsonl").read_text()
    ours = load_file(tmp_path / "round_1/train/model/model.safetensors")
    theirs = load_file(straight / "round_1/train/model/model.safetensors")
    assert all(torch.equal(ours[key], theirs[key]) for key in theirs)
    if stage == "train":                                          # each step logged once
        steps = [json.loads(line)["step"] for line in (tmp_path / "round_1/train/metrics.jsonl").read_text().splitlines()]
        assert steps == [1, 2, 3, 4]


@pytest.mark.parametrize("reference", ["fixed", "refreshed"])
def test_reference_fixed_or_refreshed(tmp_path, reference):
    cfg = small(tmp_path, "rounds=2", f"reference={reference}", "preference.train.lr=3e-4", "length_balance=false")
    run_iterate(cfg)
    run = Run(cfg)
    assert round_preference(run, 1, tmp_path).reference_model == ""        # round 1 starts from the reference
    assert round_preference(run, 2, tmp_path).reference_model == (cfg.model if reference == "fixed" else "")
    first = json.loads((tmp_path / "round_2/train/metrics.jsonl").read_text().splitlines()[0])
    assert first["step"] == 1
    # round 2 starts from round 1's model: against itself the chosen log-ratio is 0, against round 1's start not
    if reference == "refreshed":
        assert abs(first["delta/chosen"]) < 1e-4
    else:
        assert abs(first["delta/chosen"]) > 1e-3


def test_a_folder_refuses_other_settings(straight):
    _check_same_run(straight, small(straight, "preference.train.save_every=2", "rounds=3", "overopt.patience=2"))
    with pytest.raises(MMAlignError, match="prompts"):
        _check_same_run(straight, small(straight, "preference.train.save_every=2", "prompts=17"))


def test_a_setting_added_later_resumes_at_its_default(straight, tmp_path):
    """A run saved before a setting existed holds that setting's default, at the top or inside a section: it
    resumes, and refuses another value."""
    saved = yaml.safe_load((straight / "config.yaml").read_text())
    del saved["drop_coverage_from"]
    del saved["scorer"]["hallucination_weight"]
    del saved["preference"]["online"]["scorer"]["hallucination_weight"]
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    _check_same_run(tmp_path, small(straight, "preference.train.save_every=2"))
    with pytest.raises(MMAlignError, match="drop_coverage_from"):
        _check_same_run(tmp_path, small(straight, "preference.train.save_every=2", "drop_coverage_from=2"))
    with pytest.raises(MMAlignError, match="scorer"):
        _check_same_run(tmp_path, small(straight, "preference.train.save_every=2", "scorer.hallucination_weight=2"))
    saved["tasks"] = {"caption": 1.0}     # a dict setting's entries are data: the default's are not merged in
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    _check_same_run(tmp_path, small(straight, "preference.train.save_every=2", "tasks={caption: 1.0}"))


@pytest.mark.parametrize("drop_from, dropped_in", [(None, []), (1, [1, 2]), (2, [2])])
def test_coverage_only_pairs_are_dropped_from_the_set_round_on(tmp_path, drop_from, dropped_in):
    """Round k's filter drops the caption pairs that differ only in coverage when k >= drop_coverage_from."""
    def pair(id, chosen_absent, rejected_absent):
        return PreferenceRecord(id=id, prompt="describe .", images=[], chosen=f"a red circle {id} .",
                                rejected=f"a red star {id} .",
                                meta={"chosen_details": {"n_hallucinated_mentions": chosen_absent},
                                      "rejected_details": {"n_hallucinated_mentions": rejected_absent}})
    records = [pair("fewer-absent", 0, 1), pair("coverage", 1, 1), pair("more-absent", 0, 2)]
    run = Run(small(tmp_path, f"drop_coverage_from={'null' if drop_from is None else drop_from}",
                    "length_balance=false"))
    for k in (1, 2):
        (run.dir(k) / "pairs").mkdir(parents=True)
        write_preference_file(records, run.dir(k) / "pairs" / "pairs.jsonl")
        (run.dir(k) / "filtered").mkdir()
        rounds.filter_pairs(run, k, run.dir(k) / "filtered")
        kept = [r.id for r in read_preference_file(run.dir(k) / "filtered" / "pairs.jsonl")]
        assert kept == (["fewer-absent", "more-absent"] if k in dropped_in else [r.id for r in records])


def test_epochs_set_each_rounds_steps(straight, tmp_path):
    n = json.loads((straight / "round_1/filtered/report.json").read_text())["pairs"]
    p = round_preference(Run(small(straight, "preference.train.save_every=2", "epochs=2")), 1, tmp_path)
    assert p.data.val_size == max(1, min(2, n // 8)) and p.train.max_steps == -(-2 * (n - p.data.val_size) // 2)
    assert round_preference(Run(small(straight, "preference.train.save_every=2")), 1, tmp_path).train.max_steps == 4

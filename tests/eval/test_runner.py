"""``mmalign eval``'s runner: a model folder on the lab covers the six dimensions, the three pair-based figures
included, and writes them with the rest."""
import json
from pathlib import Path

import mmalign
from mmalign.eval.dimensions import DIMENSIONS, dimension_scores, reward_accuracy
from mmalign.eval.runner import evaluate_folder
from mmalign.models.load import ModelConfig, load_model
from mmalign.world.scenes import WorldConfig

LAB_BASE = str(Path(mmalign.__file__).parent / "assets" / "lab" / "base")


def test_a_lab_run_covers_the_six_dimensions(tmp_path):
    metrics = evaluate_folder(LAB_BASE, WorldConfig(), tmp_path, n_scenes=4, n_per_task=4, batch_size=16)
    assert set(dimension_scores(metrics)) == set(DIMENSIONS)
    assert json.loads((tmp_path / "results.json").read_text())["preference"] == metrics["preference"]
    assert metrics["conversation"]["judge"] == metrics["preference"]["judge"] == "lab ground truth"
    model, processor = load_model(ModelConfig(path=LAB_BASE))
    assert metrics["reward"] == reward_accuracy(model, processor, WorldConfig(), 4)


def test_a_run_restricted_to_some_tasks_reports_only_what_they_measure(tmp_path):
    metrics = evaluate_folder(LAB_BASE, WorldConfig(), tmp_path, tasks=["exist"], n_scenes=2, n_per_task=2)
    assert "conversation" not in metrics and "preference" not in metrics     # no caption or short-answer tasks
    assert set(dimension_scores(metrics)) == {"hallucination", "reward models"}


def test_a_reward_model_folder_scores_the_reward_dimension(tmp_path):
    from mmalign.reward.model import RewardModel
    from mmalign.reward.score import load_reward_model
    from mmalign.world.preference import LabPairsConfig, lab_pairs
    rm, processor = RewardModel.build(ModelConfig(path=LAB_BASE), seed=3)
    rm.save_pretrained(tmp_path / "rm", processor)
    metrics = evaluate_folder(LAB_BASE, WorldConfig(), tmp_path / "eval", tasks=["count"], n_scenes=2, n_per_task=6,
                              reward_model=str(tmp_path / "rm"))
    pairs = lab_pairs(WorldConfig(), LabPairsConfig(n=6, split="test"), for_eval=True)
    expect = load_reward_model(tmp_path / "rm").pairwise_accuracy(pairs)
    assert metrics["reward"]["accuracy"] == expect["accuracy"] and metrics["reward"]["reward"] == str(tmp_path / "rm")


def test_an_interrupted_lab_evaluation_resumes(tmp_path, monkeypatch):
    """Generations are appended chunk by chunk: a run stopped after the first chunk generates only the rest, and
    the generations of another run are replaced, not mixed."""
    import pytest

    from mmalign.eval import lab
    full = evaluate_folder(LAB_BASE, WorldConfig(), tmp_path / "full", tasks=["count", "colour"], n_per_task=6)
    monkeypatch.setattr(lab, "CHUNK", 4)
    real, calls = lab.generate, []

    def stop_after_one(model, processor, examples, *args, **kw):
        if calls:
            raise KeyboardInterrupt
        calls.append(len(examples))
        return real(model, processor, examples, *args, **kw)

    monkeypatch.setattr(lab, "generate", stop_after_one)
    with pytest.raises(KeyboardInterrupt):
        evaluate_folder(LAB_BASE, WorldConfig(), tmp_path / "part", tasks=["count", "colour"], n_per_task=6)
    def counted(model, processor, examples, *args, **kw):
        calls.append(len(examples))
        return real(model, processor, examples, *args, **kw)

    monkeypatch.setattr(lab, "generate", counted)
    resumed = evaluate_folder(LAB_BASE, WorldConfig(), tmp_path / "part", tasks=["count", "colour"], n_per_task=6)
    assert calls == [4, 4, 4]                       # 12 examples: one chunk before the stop, two after
    assert resumed["count"] == full["count"] and resumed["colour"] == full["colour"]
    calls.clear()
    other = evaluate_folder(LAB_BASE, WorldConfig(), tmp_path / "part", tasks=["count"], n_per_task=6)
    assert calls == [4, 2] and other["count"] == full["count"]     # all 6 generated again, nothing reused


def test_eval_takes_the_benchmark_names_of_the_lab_tasks(tmp_path):
    from mmalign.eval.lab import LabEvalConfig
    from mmalign.eval.runner import run_eval
    run_eval(LabEvalConfig(model=LAB_BASE, tasks=["pope", "chair", "exist"], n_scenes=2, n_per_task=2,
                           out=str(tmp_path)))
    metrics = json.loads((tmp_path / "results.json").read_text())
    assert {"caption", "exist/adversarial"} <= set(metrics) and metrics["exist/random"]["n"] == 4   # exist once

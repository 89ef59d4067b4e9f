"""lmms-eval integration: the exported lab task files parse and point at existing hooks and data, the hooks score
exactly as ``mmalign eval`` does, and the adapter says how to get lmms-eval when it is missing. Where lmms-eval
is installed (a ``pip install --no-deps lmms-eval`` venv is enough, see docs/evaluation.md) the adapter is
registered, lmms-eval runs the exported tasks to the numbers of ``mmalign eval``, and ``loglikelihood`` is the
summed log-prob of the assistant turn."""
import importlib
import importlib.util
import json
import tomllib
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml

import mmalign
from mmalign.cli import main
from mmalign.data.collate import collate_preference
from mmalign.data.preference import PreferenceRecord
from mmalign.eval.lab import MAX_NEW_TOKENS, LabEvalConfig, evaluate_lab, lab_examples
from mmalign.eval.lmms.hooks import LAB_METRICS, metric_name
from mmalign.eval.lmms.manifest import CLASS_PATH, manifests
from mmalign.eval.lmms.tasks import LmmsTasksConfig, export_tasks
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.logprobs import preference_logps
from mmalign.world.scoring import aggregate
from mmalign.world.tasks import TASKS

LAB_BASE = str(Path(mmalign.__file__).parent / "assets" / "lab" / "base")
LMMS = importlib.util.find_spec("lmms_eval") is not None
needs_lmms = pytest.mark.skipif(not LMMS, reason="lmms-eval is not installed (docs/evaluation.md)")
SIZES = {"n_scenes": 3, "n_per_task": 2}


class TaskLoader(yaml.SafeLoader):
    """lmms-eval's YAML dialect: ``!function utils.name`` becomes ``("function", "utils.name")``."""


TaskLoader.add_constructor("!function", lambda loader, node: ("function", loader.construct_scalar(node)))


@pytest.fixture(scope="module")
def exported(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("lmms_tasks")
    export_tasks(LmmsTasksConfig(out=str(out), **SIZES))
    return out


def utils_module(folder: Path):
    spec = importlib.util.spec_from_file_location("exported_utils", folder / "utils.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def docs(folder: Path, task: str) -> list[dict]:
    return [json.loads(line) for line in (folder / "data" / f"{task}.jsonl").read_text().splitlines()]


def functions(cfg) -> list[str]:
    if isinstance(cfg, tuple) and cfg[0] == "function":
        return [cfg[1]]
    values = cfg.values() if isinstance(cfg, dict) else cfg if isinstance(cfg, list) else []
    return [name for v in values for name in functions(v)]


def test_task_files_parse_and_point_at_existing_hooks_and_data(exported):
    utils = utils_module(exported)
    configs = {p.stem: yaml.load(p.read_text(), Loader=TaskLoader) for p in exported.glob("*.yaml")}
    assert set(configs) == {f"mmalign_lab_{t}" for t in TASKS}
    for name, cfg in configs.items():
        task = name.removeprefix("mmalign_lab_")
        assert cfg["task"] == name and cfg["tag"] == "mmalign_lab" and cfg["output_type"] == "generate_until"
        assert Path(cfg["dataset_kwargs"]["data_files"]["test"]) == exported / "data" / f"{task}.jsonl"
        assert cfg["generation_kwargs"]["max_new_tokens"] == MAX_NEW_TOKENS.get(task, 4)
        assert cfg["generation_kwargs"]["do_sample"] is False
        for ref in functions(cfg):
            assert ref.startswith("utils.") and callable(getattr(utils, ref.removeprefix("utils."))), ref
        listed = [m["metric"] for m in cfg["metric_list"]]
        assert listed == [metric_name(g, k) for g, k, _ in LAB_METRICS[task]]
        assert set(utils.process_results(docs(exported, task)[0], ["no"])) == set(listed)


def test_hooks_score_exactly_like_mmalign_eval(exported):
    utils = utils_module(exported)
    lab = lab_examples(LabEvalConfig(**SIZES))
    for task, specs in LAB_METRICS.items():
        rows, examples = docs(exported, task), [e for e in lab if e["task"] == task]
        assert [d["id"] for d in rows] == [e["id"] for e in examples]
        responses = [str(d["answer"]) if k % 2 else "no" for k, d in enumerate(rows)]
        results = [utils.process_results(d, [r]) for d, r in zip(rows, responses)]
        expected = aggregate(examples, responses)
        for g, k, _ in specs:
            got = getattr(utils, f"{task}_{metric_name(g, k)}")([res[metric_name(g, k)] for res in results])
            assert got == expected[g][k], (task, g, k)
        for d, e in zip(rows, examples):      # the exported images are the lab's, pixel for pixel
            theirs = utils.doc_to_visual(d)
            assert len(theirs) == len(e["images"]) and all(map(np.array_equal, theirs, e["images"]))
            assert utils.doc_to_text(d, {}) == e["prompt"]


def test_the_lmms_tasks_command_writes_the_same_folder(exported, tmp_path, capsys):
    assert main(["lmms-tasks", "--out", str(tmp_path)] + [f"{k}={v}" for k, v in SIZES.items()]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"] == [f"mmalign_lab_{t}" for t in TASKS]
    for path in exported.rglob("*"):
        if path.is_file():
            copy = tmp_path / path.relative_to(exported)
            theirs = copy.read_bytes().replace(str(tmp_path).encode(), str(exported).encode())
            assert theirs == path.read_bytes(), path.name


@pytest.mark.skipif(LMMS, reason="lmms-eval is installed here")
def test_the_adapter_says_how_to_get_lmms_eval():
    with pytest.raises(ImportError, match="needs lmms-eval.*pip install lmms-eval"):
        importlib.import_module("mmalign.eval.lmms.model")


def test_the_entry_point_is_declared():
    project = tomllib.loads((Path(mmalign.__file__).parents[1] / "pyproject.toml").read_text())
    assert project["project"]["entry-points"]["lmms_eval.models"] == {"mmalign": "mmalign.eval.lmms.manifest:manifests"}
    module, cls = CLASS_PATH.rsplit(".", 1)
    assert f"class {cls}(lmms)" in Path(importlib.util.find_spec(module).origin).read_text()


@needs_lmms
def test_the_adapter_is_registered():
    from lmms_eval.api.registry import MODEL_REGISTRY
    from lmms_eval.models.registry_v2 import ModelRegistryV2

    from mmalign.eval.lmms.model import MMAlignLMM
    registry = ModelRegistryV2()
    for manifest in manifests():
        registry.register_manifest(manifest)
    assert registry.get_model_class("mmalign") is MMAlignLMM and MODEL_REGISTRY["mmalign"] is MMAlignLMM


@needs_lmms
def test_lmms_eval_gives_the_numbers_of_mmalign_eval(exported):
    from lmms_eval import evaluator
    from lmms_eval.tasks import TaskManager

    from mmalign.eval.lmms.model import MMAlignLMM
    lm = MMAlignLMM(pretrained=LAB_BASE, batch_size=8, device="cpu")
    out = evaluator.simple_evaluate(model=lm, tasks=["mmalign_lab"], task_manager=TaskManager(include_path=str(exported)))
    model, processor = load_model(ModelConfig(path=LAB_BASE))
    ours, _ = evaluate_lab(model, processor, LabEvalConfig(batch_size=8, **SIZES))
    for task, specs in LAB_METRICS.items():
        for g, k, _ in specs:
            assert out["results"][f"mmalign_lab_{task}"][f"{metric_name(g, k)},none"] == ours[g][k], (task, g, k)


@needs_lmms
def test_loglikelihood_is_the_summed_log_prob_of_the_assistant_turn(exported):
    from mmalign.eval.lmms.model import MMAlignLMM
    lm = MMAlignLMM(pretrained=LAB_BASE, batch_size=2, device="cpu")
    rows = docs(exported, "count")
    lm.task_dict = {"count": {"test": rows}}
    visual = utils_module(exported).doc_to_visual
    greedy = [lm.generate_until([SimpleNamespace(args=(d["prompt"], {"max_new_tokens": 4, "until": []}, visual, i,
                                                       "count", "test"))])[0] for i, d in enumerate(rows)]
    asks = [(d["prompt"], f" {greedy[i]}", visual, i, "count", "test") for i, d in enumerate(rows)]
    asks += [(d["prompt"], " seventeen purple", visual, i, "count", "test") for i, d in enumerate(rows)]
    got = lm.loglikelihood([SimpleNamespace(args=a) for a in asks])
    records = [PreferenceRecord(id=str(k), prompt=a[0], images=visual(rows[a[3]]), chosen=a[1].lstrip(),
                                rejected="x") for k, a in enumerate(asks)]
    sums = preference_logps(lm.model, collate_preference(lm.processor, records)).chosen.sum
    assert [lp for lp, _ in got] == pytest.approx(sums.tolist(), abs=1e-4)
    assert [g for _, g in got] == [True] * len(rows) + [False] * len(rows)

"""The registry: every benchmark loads its official-layout fixture, builds prompts, scores and aggregates."""
from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.eval.official import BENCHMARKS, evaluate, pope
from mmalign.eval.official.judge import Judge
from mmalign.world import scoring

FIXTURES = Path(__file__).parent / "fixtures"
PATHS = {
    "pope": "pope", "pope_lmms_eval": "pope", "pope_vlmevalkit": "pope", "chair": "coco", "amber": "amber",
    "object_halbench": "objhal", "mmhal_bench": "mmhal_template.json", "hallusion_bench": "hallusion.json",
    "mme": "mme", "mme_lmms_eval": "mme", "mmbench": "mmbench_dev.tsv", "vlguard": "vlguard_test.json",
    "vl_rewardbench": "vl_rewardbench.jsonl", "mm_rlhf_rewardbench": "mm_reward_bench.jsonl",
    "llava_wild": "llava_wild.jsonl", "mm_alignbench": "MMAlignBench.tsv",
}
REWARD = {"vl_rewardbench", "mm_rlhf_rewardbench"}
ANY_JUDGE = Judge(lambda messages: "correct. Rating: 3. 7 8 [[A=B]] ```json\n[\"dog\"]\n```", "any", {})


def test_every_benchmark_has_a_fixture():
    assert set(PATHS) == set(BENCHMARKS)


@pytest.mark.parametrize("name", list(BENCHMARKS))
def test_load_prompt_score_aggregate(name):
    bench = BENCHMARKS[name]
    items = bench.load(FIXTURES / PATHS[name])
    assert items and bench.version
    assert all(isinstance(bench.prompt(item), str) and bench.prompt(item) for item in items)
    responses = [(1.0, 0.0)] * len(items) if name in REWARD else ["Yes, there is a dog here."] * len(items)
    out = evaluate(name, items, responses, ANY_JUDGE if bench.needs_judge else None)
    assert out["benchmark"] == name and out["version"] == bench.version and len(out["rows"]) == len(items)
    assert out["metrics"]
    if bench.needs_judge:
        assert out["metrics"]["judge"]["id"] == "any"


def test_evaluate_checks_its_arguments():
    items = pope.load(FIXTURES / "pope")
    with pytest.raises(MMAlignError, match="unknown benchmark 'popee'"):
        evaluate("popee", items, [])
    with pytest.raises(MMAlignError, match="10 items but 2 responses"):
        evaluate("pope", items, ["yes", "no"])


def test_lab_scoring_uses_the_official_pope_functions():
    # one place for each fact: the lab's POPE parser and metrics are these
    assert scoring.parse_yes_no is pope.parse_yes_no and scoring.binary_metrics is pope.binary_metrics

"""Conversation and preference benchmarks with deterministic Python judges: LLaVA-Bench-in-the-Wild and
MM-AlignBench."""
from pathlib import Path

import pytest

from mmalign.eval.official import alignbench, evaluate, llava_wild

FIXTURES = Path(__file__).parent / "fixtures"


# ---- LLaVA-Bench-in-the-Wild -----------------------------------------------------------------------------------

def test_llava_wild_by_hand(scripted):
    items = llava_wild.load(FIXTURES / "llava_wild.jsonl")
    calls = []
    judge = scripted({"m0": "8 6\nAssistant 1 is better.", "m1": "9 9", "m2": "8, 7\nclose",
                      "m3": "10 5"}, {"temperature": 0.2, "max_tokens": 1024}, calls)
    out = evaluate("llava_wild", items, ["m0", "m1", "m2", "m3"], judge)
    m = out["metrics"]
    # "8, 7" -> "8  7" split on " " has 3 parts: (-1, -1), kept in the means as in the original scorer
    assert [(r["reference_score"], r["model_score"]) for r in out["rows"]] == [(8, 6), (9, 9), (-1, -1), (10, 5)]
    assert m["conv"]["relative"] == round(7.5 / 8.5 * 100, 1) == 88.2
    assert m["detail"]["relative"] == 100.0                      # -1 / -1
    assert m["complex"]["relative"] == 50.0
    assert m["all"]["relative"] == round(round(19 / 4, 3) / round(26 / 4, 3) * 100, 1) == 73.1
    assert m["judge"]["settings"] == {"temperature": 0.2, "max_tokens": 1024} and m["n_parse_failures"] == 1
    system, user = calls[0]
    assert system == {"role": "system", "content": llava_wild.SYSTEM}
    assert user["content"].startswith("[Context]\nThe Golden Gate Bridge at sunset.\n\n[Question]\n")
    assert "[Assistant 1]\nThis is the Golden Gate Bridge in San Francisco.\n\n[End of Assistant 1]" in user["content"]
    assert "[Assistant 2]\nm0\n\n[End of Assistant 2]\n\n[System]\nWe would like" in user["content"]


# ---- MM-AlignBench ---------------------------------------------------------------------------------------------

def test_mm_alignbench_by_hand(scripted):
    items = alignbench.load(FIXTURES / "MMAlignBench.tsv")
    calls = []
    judge = scripted({"b1": "B is more vivid. My final verdict is: [[B>A]]", "b2": "[[A>>B]]", "b3": "[[B>>A]]",
                      "b4": "Either [[A>B]] or [[B>A]].", "b5": "[[A=B]] ... [[A=B]]"}, calls=calls)
    out = evaluate("mm_alignbench", items, ["b1", "b2", "b3", "b4", "b5"], judge)
    # +1; -2; +2 negated for index "3_rev"; two different labels: no verdict (2 tries) -> 0; one distinct -> 0
    assert [r["verdict"] for r in out["rows"]] == [1, -2, -2, 0, 0]
    assert out["rows"][3]["parse_failed"] and out["rows"][3]["judge_calls"] == 2 and len(calls) == 6
    m = out["metrics"]
    assert m["win_rate"] == pytest.approx(1 / 5)
    assert m["reward"] == pytest.approx((50 * 1 - 100 * 2) / 5)          # -30
    assert m["types"]["writing"]["reward"] == pytest.approx((50 - 100) / 2)
    assert m["types"]["reasoning"]["reward"] == pytest.approx(-100 / 3)
    assert m["n_parse_failures"] == 1
    # row 2 has a ground truth: the GT system prompt and section; the image goes with the message
    assert "<|Ground Truth|>\nThe sky is blue." in calls[1][0]["content"]
    assert "Ground Truth" not in calls[0][0]["content"] and calls[0][0]["images"] == ["aW1n"]
    assert calls[0][0]["content"].endswith("<|The Start of Assistant A's Answer|>\nA calm lake at dusk.\n"
                                           "<|The End of Assistant A's Answer|>\n\n<|The Start of Assistant B's "
                                           "Answer|>\nb1\n<|The End of Assistant B's Answer|>\n")

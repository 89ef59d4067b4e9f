"""Reward functions on edge cases: answer tags, malformed formats, missing numbers, box parsing and rescaling, lab
ground truth (counts, POPE yes/no, CHAIR), Fact-RLHF's correctness bonus, and the batch wrappers (a scorer's NaN gets its group's mean)."""
from __future__ import annotations

import inspect

import pytest
import torch
from torch.testing import assert_close

from mmalign.construct.scorers import Scores, make_scorer
from mmalign.eval.lab_judge import rate
from mmalign.rl import rewards as R
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

# ---- extraction and parsing ------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, answer", [
    ("<think>two and one</think><answer> 3 </answer>", "3"),
    ("  3 \n", "3"),                                                      # a plain answer is the whole text
    ("<think>so 3</think> 3", ""),                                        # tags but no answer block
    ("<think>so 3</think><answer>3", ""),                                 # truncated before </answer>
    ("<answer>3</answer><answer>4</answer>", "3"),                        # the first block, as VLM-R1
])
def test_extract_answer(text, answer):
    assert R.extract_answer(text) == answer


def test_parse_numbers():
    assert R.parse_numbers("1,000 apples, -2 pears, 3.5 kg and 4,5") == [1000.0, -2.0, 3.5, 4.0, 5.0]
    assert R.parse_numbers("three") == []


@pytest.mark.parametrize("text, box", [
    ("[ 10 , 10 , 20 , 30 ]", (10, 10, 20, 30)),                          # the lab's spacing
    ('{"bbox_2d": [1.5,2,3,4], "label": "star"}', (1.5, 2, 3, 4)),        # VLM-R1's JSON
    ("box (10, 10, 20, 30)", None),                                       # no square brackets
    ("[10, 10, 20]", None),                                               # three numbers
])
def test_parse_box(text, box):
    assert R.parse_box(text) == box


# ---- format ------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, reward", [
    ("<think>a</think><answer>b</answer>", 1.0),
    ("  <think>a\nb</think>\n <answer>b</answer>\n", 1.0),               # whitespace around and between
    ("<think></think><answer>b</answer>", 1.0),                           # the regex allows an empty think
    ("<answer>b</answer>", 0.0),                                          # no think
    ("<think>a</think><answer>b</answer> extra", 0.0),                    # text after the answer
    ("so <think>a</think><answer>b</answer>", 0.0),                       # text before the think
    ("<think>a</think>x<answer>b</answer>", 0.0),                         # text between the blocks
    ("<think>a</think><think>b</think><answer>c</answer>", 0.0),          # regex matches, a tag repeats
    ("<answer>b</answer><think>a</think>", 0.0),                          # wrong order
    ("<think>a</think><answer>b", 0.0),                                   # truncated
])
def test_think_format(text, reward):
    assert R.think_format(text, {}) == reward


# ---- answer rewards ----------------------------------------------------------------------------------------------

def test_exact_match():
    ex = {"answer": "red"}
    assert R.exact_match("The Red.", ex) == 1.0                           # lab normalisation
    assert R.exact_match("<think>hmm</think><answer>red</answer>", ex) == 1.0
    assert R.exact_match("dark red", ex) == 0.0
    assert R.exact_match("<think>red</think>", ex) == 0.0                  # tagged, no answer block


def test_numeric_match():
    assert R.numeric_match("the total is 1,000", {"answer": "1000"}) == 1.0
    assert R.numeric_match("3 + 4 = 7", {"answer": "7"}) == 1.0            # the last number
    assert R.numeric_match("so the answer is 72", {"answer": "... so #### 72"}) == 1.0
    assert R.numeric_match("7.0000001", {"answer": "7"}) == 1.0
    assert R.numeric_match("7.1", {"answer": "7"}) == 0.0
    assert R.numeric_match("no idea", {"answer": "7"}) == 0.0
    assert R.numeric_match("7", {"answer": "seven"}) == 0.0
    assert R.numeric_match("7.05", {"answer": "7"}, tol=0.1) == 1.0


@pytest.mark.parametrize("text, reward", [
    ("3", 1.0), ("there are 3 shapes .", 1.0), ("<answer>3</answer>", 1.0),
    ("3 or 4", 0.0), ("three", 0.0), ("4", 0.0), ("", 0.0), ("<think>3</think>", 0.0)])
def test_count_accuracy(text, reward):
    assert R.count_accuracy(text, {"answer": "3"}) == reward


def test_lab_accuracy_uses_the_lab_scorer():
    assert R.lab_accuracy("3", {"task": "count", "answer": "3"}) == 1.0
    assert R.lab_accuracy("3 shapes", {"task": "count", "answer": "3"}) == 0.0     # the eval is exact
    assert R.lab_accuracy("No, there is not.", {"task": "exist", "answer": "no"}) == 1.0   # POPE's parser
    ground = {"task": "ground", "answer": "[ 0 , 0 , 10 , 10 ]", "meta": {"box": [0, 0, 10, 10]}}
    assert R.lab_accuracy("[ 0 , 0 , 10 , 6 ]", ground) == 1.0             # IoU 0.6 >= 0.5
    assert R.lab_accuracy("[ 0 , 0 , 10 , 4 ]", ground) == 0.0             # IoU 0.4


def test_lab_count_example_end_to_end():
    ex = make_example(WorldConfig(), "count", "val", 0)
    n = len(ex["scenes"][0]["objects"])
    assert R.count_accuracy(f"<think>i see them</think><answer>{n}</answer>", ex) == 1.0
    assert R.count_accuracy(str(n + 1), ex) == 0.0
    assert R.lab_accuracy(str(n), ex) == 1.0


# ---- grounding ---------------------------------------------------------------------------------------------------

GROUND = {"meta": {"box": [10, 10, 30, 30], "image_size": 64}}


def test_grounding_iou():
    assert R.grounding_iou("<answer>[10, 10, 30, 30]</answer>", GROUND) == 1.0
    # [10, 10, 20, 30] inside the 20 x 20 box: 10 * 20 / 400 = 0.5 (x2, y2 exclusive)
    assert R.grounding_iou("[ 10 , 10 , 20 , 30 ]", GROUND) == pytest.approx(0.5)
    # [20, 20, 40, 40]: overlap 10 x 10 = 100, union 400 + 400 - 100 = 700
    assert R.grounding_iou("[20, 20, 40, 40]", GROUND) == pytest.approx(100 / 700)
    assert R.grounding_iou("[40, 40, 50, 50]", GROUND) == 0.0
    assert R.grounding_iou("somewhere top left", GROUND) == 0.0
    assert R.grounding_iou("[30, 30, 10, 10]", GROUND) == 0.0             # inverted corners: empty box


@pytest.mark.parametrize("text, reward", [
    ("[ 10 , 10 , 20 , 30 ]", 1.0),                                       # the lab's own layout, anywhere in the image
    ("<answer>[0, 0, 64, 64]</answer>", 1.0),                             # the whole image is a usable box
    ("[10, 10, 20, 30] .", 0.0),                                          # anything after the box
    ("the box is [10, 10, 20, 30]", 0.0),                                 # or before it
    ("[20, 10, 10, 30]", 0.0), ("[10, 10, 10, 30]", 0.0),                 # inverted or empty
    ("[10, 10, 20, 65]", 0.0), ("[-1, 10, 20, 30]", 0.0),                 # outside the 64 x 64 image
    ("[10, 10, 20]", 0.0), ("", 0.0),
])
def test_box_format(text, reward):
    assert R.box_format(text, GROUND) == reward


def test_box_format_reads_the_model_input_size():
    ex = {"meta": {"box": [10, 10, 30, 30], "image_size": 64, "input_size": (128, 32)}}
    assert R.box_format("[0, 0, 100, 30]", ex) == 1.0 and R.box_format("[0, 0, 100, 40]", ex) == 0.0
    assert R.box_format("[0, 0, 50, 25]", {"meta": {"box": [0, 0, 1, 1], "image_size": (50, 25)}}) == 1.0


def test_grounding_rescales_from_the_model_input():
    # the model saw the 64 x 64 image at 128 x 32 (width x height): x * 64 / 128, y * 64 / 32
    ex = {"meta": {"box": [10, 10, 30, 30], "image_size": 64, "input_size": (128, 32)}}
    assert R.grounding_iou("[20, 5, 60, 15]", ex) == 1.0
    # unscaled it would be a perfect box; scaled it is [5, 20, 15, 60]: overlap 5 x 10 = 50, union 400 + 400 - 50
    assert R.grounding_iou("[10, 10, 30, 30]", ex) == pytest.approx(50 / 750)
    rect = {"meta": {"box": [0, 0, 50, 25], "image_size": (100, 50), "input_size": (200, 100)}}
    assert R.grounding_iou("[0, 0, 100, 50]", rect) == 1.0


def test_grounding_agrees_with_vlm_r1_iou_beyond_one_pixel():
    # VLM-R1 qwen_module.iou_reward's iou: inclusive corners for the intersection, exclusive areas for the union
    def vlm_r1(b1, b2):
        x1, y1 = max(b1[0], b2[0]), max(b1[1], b2[1])
        x2, y2 = min(b1[2] - 1, b2[2] - 1), min(b1[3] - 1, b2[3] - 1)
        inter = (x2 - x1 + 1) * (y2 - y1 + 1) if x1 < x2 and y1 < y2 else 0
        return inter / ((b1[2] - b1[0]) * (b1[3] - b1[1]) + (b2[2] - b2[0]) * (b2[3] - b2[1]) - inter)

    for box in ([20, 20, 40, 40], [5, 12, 28, 33], [10, 10, 30, 30], [0, 0, 12, 12]):
        assert R.grounding_iou(str(box), GROUND) == pytest.approx(vlm_r1(box, GROUND["meta"]["box"]))
    # a one-pixel-wide overlap: 1 x 20 = 20 for us, nothing for VLM-R1
    assert R.grounding_iou("[29, 10, 49, 30]", GROUND) == pytest.approx(20 / 780)
    assert vlm_r1([29, 10, 49, 30], GROUND["meta"]["box"]) == 0


# ---- lab hallucination, length, Fact-RLHF ------------------------------------------------------------------------

CAPTION = {"meta": {"objects": ["circle", "square"]}}


def test_chair_hallucination_and_recall():
    # star twice (every mention counts, as CHAIR-i's numerator); circle present; square not mentioned
    text = "a red circle and a blue star and a star ."
    assert R.chair_hallucination(text, CAPTION) == -2.0
    assert R.object_recall(text, CAPTION) == 0.5
    assert R.chair_hallucination("a red circle and a green square .", CAPTION) == 0.0
    assert R.object_recall("a red circle and a green square .", CAPTION) == 1.0
    assert R.chair_hallucination("", CAPTION) == 0.0 and R.object_recall("", CAPTION) == 0.0


def test_length_penalty():
    assert R.length_penalty("a b c d", {}, max_words=8) == -0.5
    assert R.length_penalty(" ".join(["w"] * 100), {}, max_words=8, coef=2.0) == -2.0   # capped at -coef
    assert R.length_penalty("", {}) == 0.0


@pytest.mark.parametrize("answer, text, bonus", [
    ("B", "B. a cat on a mat", 1.0), ("B", "I think the correct option is B.", 1.0), ("B", "A. a dog", 0.0),
    ("B", "B a cat", 0.0),                                                # the letter needs its full stop
    ("no", "No, there is none.", 0.5), ("no", "yes it is", -0.5), ("no", "Not sure", 0.0), ("no", "", 0.0),
    ("yes", "yes", 0.0), ("yes", "no", 0.0), ("red", "red", 0.0)])
def test_fact_rlhf_correctness(answer, text, bonus):
    assert R.fact_rlhf_correctness(text, {"answer": answer}) == bonus


# ---- registry and batch wrappers -------------------------------------------------------------------------------

@pytest.mark.parametrize("name", list(R.REWARDS))
def test_registry_signatures(name):
    params = list(inspect.signature(R.REWARDS[name]).parameters.values())
    assert [p.name for p in params[:2]] == ["completion", "example"]
    assert all(p.kind is p.KEYWORD_ONLY and p.default is not p.empty for p in params[2:])


def test_batched_and_score_batch():
    completions, examples = ["3", "4", "<think>x</think><answer>3</answer>"], [{"answer": "3"}] * 3
    count, fmt = R.batched(R.count_accuracy), R.batched(R.think_format)
    assert count(completions, examples) == [1.0, 0.0, 1.0]
    total, per = R.score_batch({"count": count, "format": fmt}, completions, examples,
                               weights={"count": 1.0, "format": 0.5})
    assert_close(total, torch.tensor([1.0, 0.0, 1.5]))
    assert_close(per["format"], torch.tensor([0.0, 0.0, 1.0]))
    total, _ = R.score_batch({"count": count, "format": fmt}, completions, examples)
    assert_close(total, torch.tensor([1.0, 0.0, 2.0]))
    with pytest.raises(ValueError, match="weights"):
        R.score_batch({"count": count}, completions, examples, weights={"cnt": 1.0})
    assert R.batched(R.length_penalty, max_words=2)(["a b c"], [{}]) == [-1.0]


def test_reward_model_reward():
    seen = []

    def scorer(completions, examples):
        seen.append((list(completions), list(examples)))
        return torch.tensor([0.5, -1.25])

    reward = R.reward_model_reward(scorer)
    assert reward(["a", "b"], [{"x": 1}, {"x": 2}]) == [0.5, -1.25]
    assert seen == [(["a", "b"], [{"x": 1}, {"x": 2}])]
    with pytest.raises(ValueError, match="1 scores for 2"):
        R.reward_model_reward(lambda c, e: [1.0])(["a", "b"], [{}, {}])


def test_judge_reward():
    verdicts = ["Rating: 7/10", "[[8]]", 12, "no idea", -3, 5.5]
    reward = R.judge_reward(lambda c, e: verdicts)
    assert reward(["."] * 6, [{}] * 6) == pytest.approx([0.7, 0.8, 1.0, 0.0, 0.0, 0.55])
    assert R.judge_reward(lambda c, e: ["4"], max_score=5)(["."], [{}]) == [0.8]
    with pytest.raises(ValueError, match="2 verdicts for 1"):
        R.judge_reward(lambda c, e: [1, 2])(["."], [{}])


def test_scorer_reward_scores_a_group_at_once_and_gives_the_unscored_its_group_mean(caplog):
    a, b, c = {"x": 1}, {"x": 2}, {"x": 2}
    calls = []

    def scorer(example, responses):
        calls.append((example["x"], responses))
        return Scores([1.0, float("nan"), 4.0]) if example is a else [float("nan")] * len(responses)

    reward = R.scorer_reward(scorer)
    assert reward(["p", "q", "r", "s", "t", "u"], [a, a, a, b, b, c]) == [1.0, 2.5, 4.0, 0.0, 0.0, 0.0]
    assert calls == [(1, ["p", "q", "r"]), (2, ["s", "t"]), (2, ["u"])]   # c equals b but is another prompt
    assert "4 of 6 completions could not be scored" in caplog.text
    with pytest.raises(ValueError, match="1 scores for 2"):
        R.scorer_reward(lambda e, r: [1.0])(["p", "q"], [a, a])


def test_scorer_reward_of_the_lab_judge_is_its_rating():
    ex = make_example(WorldConfig(), "caption", "val", 0)
    captions = [ex["response"], "a red circle and a blue star .", "nothing"]
    assert R.scorer_reward(make_scorer("lab_judge"))(captions, [ex] * 3) == [rate(ex, t) for t in captions]
    assert rate(ex, ex["response"]) == 10.0 and rate(ex, "nothing") == 1.0

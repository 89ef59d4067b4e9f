"""General knowledge: MME acc / acc+ and MMBench CircularEval, worked out by hand on official-layout fixtures."""
from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.eval.official import evaluate, mmbench, mme

FIXTURES = Path(__file__).parent / "fixtures"

# ---- MME -------------------------------------------------------------------------------------------------------

# text -> (official, lmms_eval)
MME_CASES = {
    "Yes": ("yes", "yes"), "no": ("no", "no"),
    "Not sure.": ("no", "no"),          # "not " contains "no"
    "None of them": ("no", "no"),
    "Snow covers it.": ("no", "no"),    # "snow" contains "no"
    "I don't know.": ("other", "other"),
    "Yes, but no": ("yes", "yes"),      # "yes" is tested first
    "No.": ("no", "no"),
    "N": ("other", "no"),               # lmms-eval reads a lone y / n
    " yes": ("yes", "yes"),
    "The answer is yes": ("other", "other"),
}


@pytest.mark.parametrize("text", list(MME_CASES))
def test_mme_parsers(text):
    assert (mme.parse_yes_no(text), mme.parse_yes_no(text, "lmms_eval")) == MME_CASES[text]


# existence (3 images) then code_reasoning (2 images), in file order
MME_RESPONSES = ["Yes, there is a train.", "Not sure.", "yes", "Snow covers it.", "I don't know.", "No",
                 "The code prints 3.", "No.", "Yes", "N"]


def test_mme_by_hand():
    items = mme.load(FIXTURES / "mme")
    assert [i["subtask"] for i in items] == ["existence"] * 6 + ["code_reasoning"] * 4
    m = evaluate("mme", items, MME_RESPONSES)["metrics"]
    # existence: right 1, 2, 3, 4, 6 of 6; images (1,2) ok, (3,4) ok, (5,6) not -> acc+ 2/3
    e = m["subtasks"]["existence"]
    assert (e["acc"], e["acc_plus"]) == pytest.approx((5 / 6, 2 / 3))
    assert e["score"] == pytest.approx(100 * 5 / 6 + 100 * 2 / 3)            # 150
    # code_reasoning: "The code..." other, "No." no (right), Yes (right), "N" other -> acc 2/4, no image complete
    c = m["subtasks"]["code_reasoning"]
    assert (c["acc"], c["acc_plus"], c["score"]) == pytest.approx((0.5, 0.0, 50.0))
    assert (m["perception"], m["cognition"]) == pytest.approx((150.0, 50.0))
    lenient = evaluate("mme_lmms_eval", items, MME_RESPONSES)["metrics"]["subtasks"]["code_reasoning"]
    # lmms-eval reads "N" as no: acc 3/4, image 0002 complete -> 75 + 50
    assert lenient["score"] == pytest.approx(100 * 3 / 4 + 100 * 1 / 2)


def test_mme_malformed(load_error):
    msg = load_error(mme.load, FIXTURES / "malformed" / "mme")
    assert "existence.txt:2: field 'gt_answer': 'Maybe' is not yes or no" in msg
    assert "existence.txt:4: expected image, question and answer separated by tabs" in msg
    assert "existence.txt: image 000000044279.jpg: 1 question(s), MME has exactly 2 per image" in msg


def test_mme_empty_folder(tmp_path):
    with pytest.raises(MMAlignError, match="no MME subtask files"):
        mme.load(tmp_path)


# ---- MMBench ---------------------------------------------------------------------------------------------------

CHOICES = {"A": "blue", "B": "red", "C": "green", "D": "yellow"}


@pytest.mark.parametrize("answer, expected", [
    ("A", "A"), ("(B) red", "B"), ("The answer is D.", "D"),
    ("A cat is sitting on the mat near the front door", None),   # "A" is a token, but not among the last 5
    ("red", "B"),                                                 # option text, unique
    ("red or green", None),                                       # two option texts
    ("Between A and B, I pick A", None),                          # two letters named
    ("Z", "Z"), ("Cannot determine the answer", "Z"),
    ("It is definitely the colour that we usually call red in English", None),   # longer than 2x the options
])
def test_mmbench_extraction(answer, expected):
    assert mmbench.extract_choice(answer, CHOICES) == expected


def test_mmbench_circular_by_hand():
    items = mmbench.load(FIXTURES / "mmbench_dev.tsv")
    assert [i["group"] for i in items] == [1, 1, 1, 1, 2, 2]
    assert mmbench.prompt(items[4]) == ("Hint: Look closely.\nQuestion: How many dogs are there?\nOptions:\n"
                                        "A. one\nB. two\nPlease select the correct answer from the options above. \n")
    assert mmbench.prompt(items[0]).startswith("Question: What color is the sky?\nOptions:\nA. blue\n")
    responses = ["A", "The answer is D.", "blue", "B. blue",     # question 1: every rotation right
                 "B", "I think it is B, not A"]                   # question 2: the second rotation fails
    m = evaluate("mmbench", items, responses)["metrics"]
    assert m["accuracy"] == pytest.approx(1 / 2) and (m["n_questions"], m["n_rows"]) == (2, 6)
    assert m["category"] == {"attribute_recognition": 1.0, "image_topic": 0.0}
    assert m["l2_category"] == {"finegrained_perception": 1.0, "coarse_perception": 0.0}


def test_mmbench_malformed(tmp_path, load_error):
    msg = load_error(mmbench.load, FIXTURES / "malformed" / "mmbench_dev.tsv")
    assert "mmbench_dev.tsv: row 0 (index 1): field 'answer': missing" in msg
    (tmp_path / "bad.tsv").write_text("index\tquestion\tanswer\tA\tB\nq7\tWhy?\tA\tx\ty\n")
    assert "bad.tsv: row 0: field 'index': 'q7' is not an integer" in load_error(mmbench.load, tmp_path / "bad.tsv")

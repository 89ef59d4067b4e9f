"""POPE: the three parsers on the EVALUATION.md edge cases and the metrics on a hand-worked fixture."""
from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.eval.official import evaluate, pope

FIXTURES = Path(__file__).parent / "fixtures"

# text -> (official pope, lmms_eval, vlmevalkit)
CASES = {
    "No.": ("no", None, "no"),                        # pope: "No" before the "."; lmms-eval needs exactly "no"
    "NO": ("yes", "no", "no"),                        # pope is case-sensitive: "NO" is not a no-token
    "not sure": ("no", None, None),                   # pope: the token "not"; vlmevalkit: neither yes nor no
    "No\nthere is": ("yes", None, "no"),              # pope splits on " " only: the token is "No\nthere"
    "Nope": ("yes", None, None),
    "I don't think so.": ("yes", None, None),         # "don't" is not "not"
    "Yes, there is no dog.": ("no", None, None),      # pope: "," deleted, token "no" -> no; vlmevalkit: both words
    "Yes. No wait": ("yes", None, None),              # pope reads only the text before the first "."
    "There is a dog, no doubt.": ("no", None, "no"),
    "no,thanks, yes": ("yes", None, "yes"),           # both delete "," here: "nothanks yes" has no "no" token
    "no,thanks": ("yes", None, "no"),                 # vlmevalkit: a "," touching no space becomes a space
    "answer:no": ("yes", None, None),                 # vlmevalkit keeps ":" (not in its punctuation list)
    " yes ": ("yes", "yes", "yes"),
    "": ("yes", None, None),                          # pope: anything without a no-token is yes
}


@pytest.mark.parametrize("text", list(CASES))
def test_parsers_on_edge_cases(text):
    assert tuple(pope.parse_yes_no(text, p) for p in pope.YES_NO_PARSERS) == CASES[text]


def test_unknown_parser():
    with pytest.raises(ValueError, match="unknown yes/no parser"):
        pope.parse_yes_no("yes", "gpt")


# item order of load(): coco_pope_adversarial.json (ids 11-14), then coco_pope_random.json (ids 1-6)
RESPONSES = [
    "Yes",                           # 11 label yes
    "not sure",                      # 12 label no
    "I don't think so.",             # 13 label yes
    "Yes. No wait",                  # 14 label no
    "Yes, there is a snowboard.",    # 1 label yes
    "No.",                           # 2 label no
    "NO",                            # 3 label yes
    "There is not a giraffe.",       # 4 label no
    "No\nthere is a car",            # 5 label yes
    "Yes",                           # 6 label no
]


def test_load_reads_settings_from_file_names():
    items = pope.load(FIXTURES / "pope")
    assert [i["category"] for i in items] == ["adversarial"] * 4 + ["random"] * 6
    assert items[0]["id"] == "adversarial/11"
    assert pope.prompt(items[0]) == "Is there a bench in the image?\nAnswer the question using a single word or phrase."
    assert len(pope.load(FIXTURES / "pope" / "coco_pope_random.json")) == 6


def test_official_metrics_by_hand():
    m = evaluate("pope", pope.load(FIXTURES / "pope"), RESPONSES)["metrics"]
    # random, official parser: yes, no, yes("NO"), no, yes("No\nthere"), yes -> TP 1,3,5; TN 2,4; FP 6; FN none
    r = m["random"]
    assert r["accuracy"] == pytest.approx(5 / 6)
    assert r["precision"] == pytest.approx(3 / 4)
    assert r["recall"] == pytest.approx(1.0)
    assert r["f1"] == pytest.approx(2 * 0.75 * 1 / 1.75)          # 6/7
    assert r["yes_ratio"] == pytest.approx(4 / 6)
    # adversarial: yes(TP), no(TN), yes(TP), yes(FP) -> acc 3/4, P 2/3, R 1, F1 0.8, yes ratio 3/4
    a = m["adversarial"]
    assert (a["accuracy"], a["precision"], a["recall"]) == pytest.approx((3 / 4, 2 / 3, 1.0))
    assert a["f1"] == pytest.approx(0.8) and a["yes_ratio"] == pytest.approx(3 / 4)
    assert m["average"]["accuracy"] == pytest.approx((3 / 4 + 5 / 6) / 2)     # 19/24
    assert m["average"]["f1"] == pytest.approx((0.8 + 6 / 7) / 2)            # 29/35


def test_variants_change_only_the_parser():
    items = pope.load(FIXTURES / "pope")
    lmms = evaluate("pope_lmms_eval", items, RESPONSES)["metrics"]["random"]
    # lmms-eval reads only "no" (item 3, label yes: FN) and "yes" (item 6, label no: FP); 4 unparsed, all wrong
    assert (lmms["accuracy"], lmms["precision"], lmms["recall"], lmms["f1"]) == (0.0, 0.0, 0.0, 0.0)
    assert lmms["yes_ratio"] == pytest.approx(1 / 6) and lmms["n_unparsed"] == 4
    vlm = evaluate("pope_vlmevalkit", items, RESPONSES)["metrics"]["random"]
    # vlmevalkit: yes(TP), no(TN), no(FN), None, no(FN), yes(FP) -> acc 2/6, P 1/2, R 1/3, F1 2/5
    assert (vlm["accuracy"], vlm["precision"], vlm["recall"]) == pytest.approx((1 / 3, 1 / 2, 1 / 3))
    assert vlm["f1"] == pytest.approx(2 / 5) and vlm["n_unparsed"] == 1


def test_zero_denominators_give_zero():
    m = pope.binary_metrics(["no", "no"], ["yes", "no"])     # nothing predicted yes: precision 0/0
    assert (m["precision"], m["recall"], m["f1"], m["accuracy"]) == (0.0, 0.0, 0.0, 0.5)


def test_malformed_label_file_names_file_line_and_field(load_error):
    msg = load_error(pope.load, FIXTURES / "malformed" / "coco_pope_random.json")
    assert "3 problem(s)" in msg
    assert "coco_pope_random.json:2: field 'label': 'maybe' is not one of ['no', 'yes']" in msg
    assert "coco_pope_random.json:3: field 'text': missing" in msg
    assert "coco_pope_random.json:4: invalid JSON" in msg


def test_missing_file_and_empty_folder(tmp_path):
    with pytest.raises(MMAlignError, match="benchmark file not found: .*coco_pope_popular.json"):
        pope.load(tmp_path / "coco_pope_popular.json")
    with pytest.raises(MMAlignError, match="no POPE label files"):
        pope.load(tmp_path)

"""AMBER: generative CHAIR/Cover/Hal/Cog and discriminative P/R/F1, worked out by hand on a small data folder."""
from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.eval.official import amber, evaluate

FIXTURES = Path(__file__).parent / "fixtures"
# relation.json: dog->[puppy], grass->[lawn], cat->[kitten], car->[vehicle], frisbee->[], lamp->[light]
# item 1: truth [dog, grass], hallu [cat, car];  item 2: truth [car], hallu [dog]
RESPONSES = [
    "A puppy runs on the lawn with a cat and a frisbee near a light.",
    "Two Dogs and a vehicle.",
    "No",     # 3  existence, truth no
    "Yes",    # 4  existence, truth yes
    "no",     # 5  existence, truth no: lower-case is not an answer
    "No",     # 6  state, truth yes
    "No",     # 7  number, truth no
    "Yes.",   # 8  action, truth no: the period makes it no answer
    "Yes",    # 9  discriminative-relation, truth yes
    "No",     # 10 relation, truth no
]


@pytest.fixture(scope="module")
def items():
    return amber.load(FIXTURES / "amber")


def test_generative_rows_by_hand(items):
    # item 1, kept nouns in order: puppy, lawn, cat, frisbee, light
    #   puppy in S -> dog covered; lawn in S -> grass covered; cat in H -> cat hit, not in S -> hallucinated;
    #   frisbee in neither -> hallucinated; light is a global safe word -> ignored but counted
    r1 = amber.score(items[0], RESPONSES[0])
    assert (r1["n_nouns"], r1["n_hallucinated"], r1["n_covered"], r1["n_hit"]) == (5, 2, 2, 1)
    # item 2: "Dogs" is capitalised (AMBER does not lower-case) so it is not a vocabulary word; vehicle covers car
    r2 = amber.score(items[1], RESPONSES[1])
    assert (r2["n_nouns"], r2["n_hallucinated"], r2["n_covered"], r2["n_hit"]) == (1, 0, 1, 0)


def test_similarity_steps(items):
    # with vectors saying cat~dog and frisbee~car: cat hits cat (exact) and is covered through dog (step e);
    # frisbee hits car through H (step d) but is still hallucinated
    sim = {frozenset(("cat", "dog")): 0.9, frozenset(("frisbee", "car")): 0.9}
    r = amber.score(items[0], RESPONSES[0], similarity=lambda a, b: 1.0 if a == b else sim.get(frozenset((a, b)), 0))
    assert (r["n_hallucinated"], r["n_covered"], r["n_hit"]) == (1, 2, 2)


def test_metrics_by_hand(items):
    m = evaluate("amber", items, RESPONSES)["metrics"]
    # every denominator starts at 0.001; numbers are x100 rounded to one decimal
    g = m["generative"]
    assert g["chair"] == round(2 / (0.001 + 6) * 100, 1) == 33.3          # 2 hallucinated of 5 + 1 nouns
    assert g["cover"] == round(3 / (0.001 + 3) * 100, 1) == 100.0         # 2 + 1 covered of 2 + 1 truth
    assert g["hal"] == round(100 - 1 / (0.001 + 2) * 100, 1) == 50.0      # one response of two is clean
    assert g["cog"] == round(1 / (0.001 + 3) * 100, 1) == 33.3            # 1 hit of 2 + 1 hallu objects
    d = m["discriminative"]
    # right: 3, 4, 7, 9, 10 of 8; answered No: 3, 6, 7, 10, of which truth no: 3, 7, 10; truth no: 3, 5, 7, 8, 10
    assert d["accuracy"] == round(5 / 8.001 * 100, 1) == 62.5
    assert d["precision"] == round(3 / 4.001 * 100, 1) == 75.0
    assert d["recall"] == round(3 / 5.001 * 100, 1) == 60.0
    assert d["f1"] == round(2 * 0.75 * 0.6 / (0.75 + 0.6 + 1e-4) * 100, 1) == 66.7
    e = m["existence"]                                                    # items 3, 4, 5; eps 1e-3
    assert (e["accuracy"], e["precision"], e["recall"]) == (66.6, 99.9, 50.0)   # 2/3.001, 1/1.001, 1/2.001
    assert e["f1"] == round(2 * 0.999 * 0.5 / (0.999 + 0.5 + 1e-3) * 100, 1) == 66.6
    a = m["attribute"]                                                    # items 6, 7, 8 pooled
    assert (a["accuracy"], a["precision"], a["recall"]) == (33.3, 50.0, 50.0)   # 1/3.001, 1/2.001, 1/2.001
    assert a["f1"] == round(2 * 0.5 * 0.5 / (1.0 + 1e-4) * 100, 1) == 50.0
    assert (m["state"]["accuracy"], m["state"]["f1"]) == (0.0, 0.0)             # 0/1.001, no true "no"
    assert m["number"]["f1"] == round(2 * 0.999 * 0.999 / (1.998 + 1e-4) * 100, 1) == 99.9
    assert m["relation"]["accuracy"] == round(2 / 2.001 * 100, 1) == 100.0      # both relation types pooled
    assert m["relation"]["n"] == 2


def test_malformed_annotations(tmp_path, load_error):
    msg = load_error(amber.load, FIXTURES / "malformed" / "amber")
    assert "annotations.json: id 1: field 'truth': 'horse' is not a key of relation.json" in msg
    assert "annotations.json: id 3: field 'truth': 'No' is not one of ['no', 'yes']" in msg
    assert "query_all.json: id 10: no record with this id in annotations.json" in msg
    with pytest.raises(MMAlignError, match="relation.json"):
        amber.load(tmp_path)

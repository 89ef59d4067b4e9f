"""Filters over preference pairs, with every count worked out by hand."""
from collections import Counter

from PIL import Image

from mmalign.construct.filters import (
    dedupe,
    drop_coverage_only,
    length_balance,
    margin_threshold,
    normalise,
    score_threshold,
)
from mmalign.data.preference import PreferenceRecord

RED, BLUE = Image.new("RGB", (8, 8), (255, 0, 0)), Image.new("RGB", (8, 8), (0, 0, 255))


def rec(id: str, chosen: str = "a red circle .", rejected: str = "a red star .", *, prompt="describe .",
        images=(), scores=None, margin=None) -> PreferenceRecord:
    return PreferenceRecord(id=id, prompt=prompt, images=list(images), chosen=chosen, rejected=rejected,
                            scores=scores, reward_margin=margin)


def ids(records) -> list[str]:
    return [r.id for r in records]


def test_score_threshold_counts_each_reason_and_keeps_the_bounds():
    records = [rec("ok", scores={"chosen": 0.9, "rejected": 0.1}), rec("none"),
               rec("low", scores={"chosen": 0.4, "rejected": 0.1}),
               rec("high", scores={"chosen": 0.6, "rejected": 0.5}),
               rec("both", scores={"chosen": 0.4, "rejected": 0.9}),   # the first reason that applies counts
               rec("edge", scores={"chosen": 0.5, "rejected": 0.3}), rec("half", scores={"chosen": 1.0})]
    kept, report = score_threshold(records, min_chosen=0.5, max_rejected=0.3)
    assert ids(kept) == ["ok", "edge"]
    assert report == {"kept": 2, "no_scores": 2, "chosen_below": 2, "rejected_above": 1}
    kept, report = score_threshold(records)
    assert len(kept) == 5 and report == {"kept": 5, "no_scores": 2, "chosen_below": 0, "rejected_above": 0}


def test_margin_threshold_prefers_reward_margin_over_scores():
    records = [rec("two", margin=2.0), rec("scores", scores={"chosen": 0.9, "rejected": 0.1}), rec("none"),
               rec("edge", margin=1.0), rec("own", margin=0.5, scores={"chosen": 3.0, "rejected": 0.0})]
    kept, report = margin_threshold(records, min_margin=1.0)
    assert ids(kept) == ["two", "edge"] and report == {"kept": 2, "no_margin": 1, "below_margin": 2}


def words(n: int) -> str:
    return " ".join(["w"] * n)


# d = words(chosen) - words(rejected) for each record
D = [1, 1, 1, -1, 0, 2, -2, -2, -3, 5]
LENGTHS = [rec(f"r{i}", words(4 + max(d, 0)), words(4 + max(-d, 0))) for i, d in enumerate(D)]


def test_length_balance_leaves_a_symmetric_length_difference():
    kept, report = length_balance(LENGTHS, max_diff=4, seed=0)
    # |d| > 4: r9. |d| = 1: three longer chosen, one longer rejected -> drop 2; |d| = 2: one vs two -> drop 1;
    # |d| = 3: none vs one -> drop 1; d = 0 stays
    assert report == {"kept": 5, "length_mismatch": 1, "length_surplus": 4}
    d = [len(r.chosen.split()) - len(r.rejected.split()) for r in kept]
    assert Counter(d) == Counter(-x for x in d) and "r4" in ids(kept) and "r3" in ids(kept) and "r5" in ids(kept)
    assert ids(kept) == ids(length_balance(LENGTHS, max_diff=4, seed=0)[0])
    picks = {tuple(ids(length_balance(LENGTHS, max_diff=4, seed=s)[0])) for s in range(20)}
    assert len(picks) > 1   # which surplus pairs go is drawn from the seed


def test_length_balance_bins_magnitudes():
    # bin_width 2: |d| in {1, 2} is bin 1 (four chosen-longer vs three rejected-longer: drop 1), |d| = 3 is bin 2
    # (one rejected-longer: drop it), |d| = 5 is bin 3 (one chosen-longer: drop it)
    kept, report = length_balance(LENGTHS, bin_width=2)
    assert report == {"kept": 7, "length_mismatch": 0, "length_surplus": 3}
    assert {"r8", "r9"}.isdisjoint(ids(kept))


def test_dedupe_exact_then_normalised_text_with_the_same_images():
    records = [rec("first", "A red circle.", images=[RED]), rec("copy", "A red circle.", images=[RED.copy()]),
               rec("loose", "a  red circle", images=[RED]), rec("other image", "A red circle.", images=[BLUE]),
               rec("swapped", "a red star .", "A red circle.", images=[RED]),
               rec("copy of loose", "a  red circle", images=[RED])]
    kept, report = dedupe(records)
    assert ids(kept) == ["first", "other image", "swapped"]
    assert report == {"kept": 3, "exact_duplicate": 2, "near_duplicate": 1}
    messages = [{"role": "user", "content": [{"type": "text", "text": "describe ."}]}]
    kept, report = dedupe([rec("m", prompt=messages), rec("m2", prompt=[dict(m) for m in messages]), rec("s")])
    assert ids(kept) == ["m", "s"] and report["exact_duplicate"] == 1


def test_normalise():
    assert normalise("  A red,  CIRCLE.\n") == "a red circle"


def test_drop_coverage_only_reads_the_oracle_details():
    def labelled(id, chosen_absent, rejected_absent):
        r = rec(id)
        r.meta = {"chosen_details": {"n_hallucinated_mentions": chosen_absent},
                  "rejected_details": {"n_hallucinated_mentions": rejected_absent}}
        return r
    exist = rec("exist", "yes", "no")
    exist.meta = {"chosen_details": {"correct": True}, "rejected_details": {"correct": False}}
    records = [labelled("fewer-absent", 0, 1), labelled("coverage", 1, 1), labelled("coverage0", 0, 0), exist,
               rec("no-details")]
    kept, report = drop_coverage_only(records)
    assert ids(kept) == ["fewer-absent", "exist", "no-details"]
    assert report == {"kept": 3, "coverage_only": 2}

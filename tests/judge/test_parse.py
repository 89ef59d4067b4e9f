"""Label parsers read one clear verdict or return None, and the tally counts and keeps every failure."""
import threading

import pytest
from PIL import Image

from mmalign.judge import (
    ParseTally,
    decode_data_url,
    image_data_url,
    parse_preference,
    parse_rating,
    parse_yes_no,
)


@pytest.mark.parametrize("text, rating", [
    ("Rating: 7", 7), ("**Score**: 8/10 - two small errors", 8), ("score of 6 out of 10", 6), ("[[9]]", 9),
    ("I give it 8.", 8), ("7.5", 7.5), ("The answer has 3 errors. Rating: 4", 4),
    ("between 6 and 7", None), ("11", None), ("Rating: 0", None), ("no number here", None), ("", None),
])
def test_rating(text, rating):
    assert parse_rating(text) == rating


def test_rating_range_is_the_callers():
    assert parse_rating("Score: 4", low=1, high=5) == 4 and parse_rating("Score: 6", low=1, high=5) is None


@pytest.mark.parametrize("text, verdict", [
    ("A", "A"), ("(B)", "B"), ("[[A]]", "A"), ("[[C]]", "tie"), ("Response A is better.", "A"),
    ("I prefer B because it names the star.", "B"), ("The better response is A", "A"), ("Final answer: B", "B"),
    ("It's a tie.", "tie"), ("Both are equally good", "tie"),
    ("A cat sits on a mat.", None), ("A and B", None), ("Response A is better. Final answer: B", None),
    ("Response A is better, but overall it is a tie", None), ("", None),
])
def test_preference(text, verdict):
    assert parse_preference(text) == verdict


@pytest.mark.parametrize("text, answer", [
    ("Yes.", True), ("no", False), ("No, there is no star.", False), ("I think yes", True),
    ("Not sure", None), ("it could be yes or no", None), ("", None),
])
def test_yes_no(text, answer):
    assert parse_yes_no(text) == answer


def test_tally_counts_and_keeps_failures_across_threads():
    tally = ParseTally(keep=3)
    texts = ["yes", "maybe", "no", "unclear"] * 25

    def work(chunk):
        for t in chunk:
            tally.parse(parse_yes_no, t)
    threads = [threading.Thread(target=work, args=(texts[i::4],)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert (tally.ok, tally.failed) == (50, 50)
    assert len(tally.failures) == 3 and set(tally.failures) <= {"maybe", "unclear"}
    assert tally.parse(parse_rating, "Score: 4", high=5) == 4 and tally.to_dict()["ok"] == 51


def test_image_data_url_round_trip(tmp_path):
    image = Image.new("RGB", (5, 3), (10, 200, 30))
    assert decode_data_url(image_data_url(image)).tobytes() == image.tobytes()
    image.save(tmp_path / "x.png")
    assert image_data_url(tmp_path / "x.png") == image_data_url(image)
    for bad in ("http://x/y.png", "data:image/png;base64,!!!", "data:image/png;base64,aGVsbG8="):
        with pytest.raises(ValueError):
            decode_data_url(bad)

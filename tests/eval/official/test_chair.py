"""CHAIR: pattern's singularize, the tokenizer, COCO word extraction and the metrics on a hand-made COCO folder."""
import json
import shutil
from pathlib import Path

import pytest

from mmalign.errors import MMAlignError
from mmalign.eval.official import chair, evaluate
from mmalign.eval.official.coco import caption_to_words, chair_vocab
from mmalign.eval.official.singular import singularize
from mmalign.eval.official.text import word_tokenize

FIXTURES = Path(__file__).parent / "fixtures"

# pattern.en.singularize outputs that decide whether a caption word is a COCO object
SINGULAR = {
    "dogs": "dog", "buses": "bus", "bus": "bu",            # a singular "bus" loses its "s" (rule "s$")
    "glasses": "glass", "glass": "glas",                   # why the official table has "wine glas"
    "ties": "ty",                                          # "^tie" is an anchor that endswith() never matches
    "skis": "ski", "sheep": "sheep", "scissors": "scissors", "children": "child", "people": "person",
    "women": "woman", "knives": "knife", "mice": "mouse", "puppies": "puppy", "benches": "bench",
    "boxes": "box", "tomatoes": "tomato", "leaves": "leaf", "doggies": "doggies",   # "-ie" words stay plural
    "ice": "ice", "ears": "ears",                           # suffixes of "rice" and "shears" stay as they are
    "octopi": "octopus", "is": "is", "mothers-in-law": "mother-in-law",
}


@pytest.mark.parametrize("word", list(SINGULAR))
def test_singularize_matches_pattern(word):
    assert singularize(word) == SINGULAR[word]


def test_word_tokenize_splits_like_nltk_on_object_words():
    assert word_tokenize("A man's dog. Two t-shirts, (red) 3.5 cats/dogs!") == [
        "A", "man", "'s", "dog", ".", "Two", "t-shirts", ",", "(", "red", ")", "3.5", "cats/dogs", "!"]


VOCAB = chair_vocab()


def words(caption):
    return caption_to_words(caption, VOCAB, singularize)


def test_caption_to_words_rules():
    # duplicates kept; synonyms map to their class
    assert words("Two dogs and a puppy near a man.") == [("dog", "dog"), ("puppy", "dog"), ("man", "person")]
    # "baby"/"adult" + animal and "passenger" + vehicle do not fire "person"
    assert words("A baby elephant and a passenger train.") == [("elephant", "elephant"), ("train", "train")]
    assert words("A baby.") == [("baby", "person")]
    # two-word objects are merged first; "bow tie" is a tie; "wine glass" passes through "wine glas"
    assert words("A hot dog, a bow tie and wine glasses.") == [("hot dog", "hot dog"), ("tie", "tie"),
                                                                ("wine glass", "wine glass")]
    assert words("A wine glass.") == [("wine glass", "wine glass")]
    # a toilet seat is a toilet, and with a toilet around no "seat" is a chair
    assert words("A toilet seat and a seat.") == [("toilet", "toilet")]
    assert words("A seat.") == [("seat", "chair")]
    # synonyms.txt quirk: the entry is " motor bike" (double space in the file), so "motor bike" never counts
    assert words("A motor bike and a motorbike.") == [("motorbike", "motorcycle")]
    # singularize quirks: a singular "bus" and plural "ties" are not COCO words
    assert words("A bus, two buses and ties.") == [("bus", "bus")]


# image 1 GT: person, dog (instances);    caption adds nothing new
# image 2 GT: bus (instances) + car (reference caption; its "bus" singularizes to "bu")
# image 3 GT: toilet (instances) + sink (reference caption)
def test_load_builds_ground_truth_from_instances_and_captions():
    items = chair.load(FIXTURES / "coco")
    assert [(i["image_id"], i["gt_objects"]) for i in items] == [
        (1, ["dog", "person"]), (2, ["bus", "car"]), (3, ["sink", "toilet"])]
    assert items[0]["image"] == "COCO_val2014_000000000001.jpg"


def test_chair_by_hand():
    items = chair.load(FIXTURES / "coco")
    captions = chair.read_captions(FIXTURES / "coco" / "captions.jsonl")
    rows = [chair.score(item, captions[item["image_id"]]) for item in items]
    # 1: woman(person) puppies(dog) table(dining table) wine glass; "motor bike" dropped -> 4 mentions, 2 hallucinated
    assert rows[0]["mentioned"] == ["person", "dog", "dining table", "wine glass"]
    assert [n for _, n in rows[0]["hallucinated"]] == ["dining table", "wine glass"]
    # 2: "bus" -> "bu" dropped, buses(bus), scooter(motorcycle) -> 2 mentions, 1 hallucinated
    assert rows[1]["mentioned"] == ["bus", "motorcycle"] and rows[1]["hallucinated"] == [("scooter", "motorcycle")]
    # 3: toilet seat(toilet), the other seat dropped, sink; "ties" -> "ty" dropped -> 2 mentions, none hallucinated
    assert rows[2]["mentioned"] == ["toilet", "sink"] and rows[2]["hallucinated"] == []
    m = chair.aggregate(rows)
    assert m["chair_i"] == pytest.approx(3 / 8)              # (2 + 1 + 0) / (4 + 2 + 2)
    assert m["chair_s"] == pytest.approx(2 / 3)              # captions 1 and 2
    assert m["recall"] == pytest.approx(5 / 6)               # recalled 2 + 1 + 2 of ground truth 2 + 2 + 2
    assert m["n"] == 3


def test_caption_file_layouts_agree_and_evaluate():
    as_json = chair.read_captions(FIXTURES / "coco" / "captions_imgToEval.json")
    assert as_json == chair.read_captions(FIXTURES / "coco" / "captions.jsonl")
    m = chair.evaluate_caption_file(FIXTURES / "coco", FIXTURES / "coco" / "captions_imgToEval.json")
    assert (m["chair_s"], m["chair_i"]) == pytest.approx((2 / 3, 3 / 8))
    items = chair.load(FIXTURES / "coco")
    assert evaluate("chair", items, [as_json[i["image_id"]] for i in items])["metrics"] == chair.aggregate(
        [chair.score(i, as_json[i["image_id"]]) for i in items])


def test_empty_set_and_caption_without_objects():
    assert chair.aggregate([])["chair_s"] == 0.0
    row = chair.score({"id": 1, "gt_objects": ["dog"]}, "Nothing to see.")
    assert chair.aggregate([row])["chair_i"] == 0.0


def test_missing_captions_file_is_named():
    with pytest.raises(MMAlignError, match="captions_val2014.json"):
        chair.load(FIXTURES / "malformed" / "coco")


def test_unknown_category_and_caption_file_image(tmp_path):
    shutil.copy(FIXTURES / "coco" / "captions_val2014.json", tmp_path)
    inst = json.loads((FIXTURES / "coco" / "instances_val2014.json").read_text())
    inst["categories"].append({"id": 99, "name": "unicorn"})
    (tmp_path / "instances_val2014.json").write_text(json.dumps(inst))
    with pytest.raises(MMAlignError, match="categories: 'unicorn' is not a COCO class"):
        chair.load(tmp_path)
    (tmp_path / "caps.jsonl").write_text('{"image_id": 7, "caption": "A dog."}\n{"image_id": "1"}\n')
    with pytest.raises(MMAlignError) as e:
        chair.read_captions(tmp_path / "caps.jsonl")
    assert "caps.jsonl:2: field 'image_id': expected int, got str" in str(e.value)
    assert "caps.jsonl:2: field 'caption': missing" in str(e.value)

"""Preference records: both file layouts, parquet and in-memory datasets, the round trip, every validation
message, ranked lists and DDPO token weights."""
import base64
import io
import json

import datasets
import numpy as np
import pytest
from PIL import Image

from mmalign.data.preference import (
    PreferenceRecord,
    from_hf_dataset,
    ranked_to_pairs,
    read_preference_file,
    spans_to_token_weights,
    write_preference_file,
)
from mmalign.errors import MMAlignError
from mmalign.world.tokenizer import build_tokenizer


def image(seed: int, size: int = 8) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def same_pixels(a: Image.Image, b: Image.Image) -> bool:
    return np.array_equal(np.asarray(a), np.asarray(b))


def data_uri(img: Image.Image) -> str:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def write_lines(path, rows) -> None:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))


def messages(text: str, n_images: int = 1) -> list[dict]:
    return [{"role": "user", "content": [{"type": "image"}] * n_images + [{"type": "text", "text": text}]}]


def answer(text: str) -> list[dict]:
    return [{"role": "assistant", "content": [{"type": "text", "text": text}]}]


# ---- mmalign's own layout ----------------------------------------------------------------------------------------

def test_reads_own_layout_with_relative_absolute_and_base64_images(tmp_path):
    (tmp_path / "img").mkdir()
    image(0).save(tmp_path / "img" / "a.png")
    image(1).save(tmp_path / "b.png")
    write_lines(tmp_path / "pairs.jsonl", [
        {"id": "p0", "prompt": "describe the image .", "images": ["img/a.png"], "chosen": "a red circle .",
         "rejected": "a red circle and a blue star .", "rejected_spans": [[13, 29]], "reward_margin": 1.5,
         "corrupt_images": [data_uri(image(2))], "task": "caption", "meta": {"source": "hand"}},
        {"id": "p1", "prompt": messages("is there a star in the image ?"), "images": [str(tmp_path / "b.png")],
         "chosen": "no", "rejected": "yes", "ref_logps": {"chosen": -1.25, "rejected": -0.5}},
        {"prompt": "which is larger ?", "images": [data_uri(image(3)), "img/a.png"], "chosen": "first",
         "rejected": "second", "scores": {"chosen": 7, "rejected": 2}},
    ])
    a, b, c = read_preference_file(tmp_path / "pairs.jsonl")
    assert (a.id, a.prompt, a.chosen, a.task, a.meta) == ("p0", "describe the image .", "a red circle .", "caption",
                                                         {"source": "hand"})
    assert same_pixels(a.images[0], image(0)) and same_pixels(a.corrupt_images[0], image(2))
    assert a.rejected_spans == [[13, 29]] and a.reward_margin == 1.5 and a.chosen_spans is None
    assert b.prompt == messages("is there a star in the image ?") and same_pixels(b.images[0], image(1))
    assert b.ref_logps == {"chosen": -1.25, "rejected": -0.5} and b.corrupt_images is None
    assert c.id == "pairs-3" and len(c.images) == 2 and same_pixels(c.images[0], image(3))
    assert c.scores == {"chosen": 7, "rejected": 2} and c.images[0].mode == "RGB"


def test_write_then_read_loses_nothing(tmp_path):
    records = [
        PreferenceRecord(id="r0", prompt=messages("compare the images .", 2), images=[image(0), image(1, 12)],
                         chosen="the first has a star .", rejected="the second has a star .",
                         corrupt_images=[image(2), image(3, 12)], chosen_spans=[[4, 9]], rejected_spans=[[4, 10]],
                         reward_margin=0.3125, scores={"chosen": 4.0, "rejected": 1.0},
                         ref_logps={"chosen": -12.345678901234567, "rejected": -3.0}, task="multi_image",
                         meta={"kind": "hand", "objects": ["star"]}),
        PreferenceRecord(id="r1", prompt="say hi .", images=[], chosen="hi", rejected="bye"),
    ]
    path = write_preference_file(records, tmp_path / "out" / "train.jsonl")
    assert sorted(p.name for p in (tmp_path / "out" / "images").iterdir()) == [
        "train-000000-0.png", "train-000000-1.png", "train-000000-corrupt-0.png", "train-000000-corrupt-1.png"]
    back = read_preference_file(path)
    for r, s in zip(records, back):
        for name in ("id", "prompt", "chosen", "rejected", "chosen_spans", "rejected_spans", "reward_margin",
                     "scores", "ref_logps", "task", "meta"):
            assert getattr(s, name) == getattr(r, name), name
        assert len(s.images) == len(r.images) and all(map(same_pixels, s.images, r.images))
        assert (s.corrupt_images is None) == (r.corrupt_images is None)
        assert all(map(same_pixels, s.corrupt_images or [], r.corrupt_images or []))


# ---- TRL's conversational vision format --------------------------------------------------------------------------

def test_reads_trl_conversational_jsonl(tmp_path):
    image(0).save(tmp_path / "a.png")
    image(1).save(tmp_path / "b.png")
    write_lines(tmp_path / "trl.jsonl", [
        {"prompt": messages("describe the image ."), "chosen": answer("a red circle ."),
         "rejected": answer("a red circle and a blue star ."), "images": ["a.png"], "origin_dataset": "lab"},
        {"prompt": messages("is there a star ?"), "chosen": [{"role": "assistant", "content": "no"}],
         "rejected": answer("yes"), "image": "b.png", "id": "t1", "reward_margin": 2.0},
    ])
    a, b = read_preference_file(tmp_path / "trl.jsonl")
    assert a.prompt == messages("describe the image .") and a.chosen == "a red circle ."
    assert a.rejected == "a red circle and a blue star ." and a.meta == {"origin_dataset": "lab"}
    assert a.id == "trl-1" and same_pixels(a.images[0], image(0))
    assert (b.chosen, b.rejected) == ("no", "yes") and same_pixels(b.images[0], image(1))
    assert (b.id, b.reward_margin, b.meta) == ("t1", 2.0, {})


def trl_dataset(images, features=None) -> datasets.Dataset:
    return datasets.Dataset.from_dict({
        "prompt": [messages("describe the image ."), messages("compare .", 2)],
        "chosen": [answer("a red circle ."), answer("the first .")],
        "rejected": [answer("a blue star ."), answer("the second .")],
        "images": images,
    }, features=features)


TRL_FEATURES = {
    "prompt": [{"role": datasets.Value("string"),
                "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
    "chosen": [{"role": datasets.Value("string"),
                "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
    "rejected": [{"role": datasets.Value("string"),
                  "content": [{"type": datasets.Value("string"), "text": datasets.Value("string")}]}],
}


def test_reads_trl_parquet_written_by_datasets(tmp_path):
    features = datasets.Features({**TRL_FEATURES, "images": datasets.Sequence(datasets.Image())})
    trl_dataset([[image(0)], [image(1), image(2)]], features).to_parquet(str(tmp_path / "trl.parquet"))
    a, b = read_preference_file(tmp_path / "trl.parquet")
    assert a.chosen == "a red circle ." and a.rejected == "a blue star ." and a.id == "trl-1"
    assert b.prompt[0]["content"][0]["type"] == "image" and len(b.images) == 2
    assert all(map(same_pixels, a.images + b.images, [image(0), image(1), image(2)]))


@pytest.mark.parametrize("decode", [True, False])
def test_from_hf_dataset_with_pil_images_or_bytes_dicts(decode):
    features = datasets.Features({**TRL_FEATURES, "images": datasets.Sequence(datasets.Image(decode=decode))})
    ds = trl_dataset([[image(0)], [image(1), image(2)]], features)
    assert isinstance(ds[0]["images"][0], Image.Image if decode else dict)
    a, b = from_hf_dataset(ds)
    assert (a.id, b.id, b.chosen) == ("row-0", "row-1", "the first .")
    assert all(map(same_pixels, a.images + b.images, [image(0), image(1), image(2)]))


def test_image_blocks_must_match_images_in_trl_data():
    ds = trl_dataset([[image(0), image(1)], [image(2)]])
    with pytest.raises(MMAlignError) as e:
        from_hf_dataset(ds)
    msg = str(e.value)
    assert "2 problem(s) in the dataset" in msg
    assert "dataset row 0: field 'prompt': 1 image block(s) for 2 image(s) in 'images'" in msg
    assert "dataset row 1: field 'prompt': 2 image block(s) for 1 image(s) in 'images'" in msg


# ---- validation: every problem, with file, line and field --------------------------------------------------------

def test_every_problem_is_reported_with_file_line_and_field(tmp_path):
    image(0).save(tmp_path / "ok.png")
    (tmp_path / "broken.png").write_bytes(b"not a png")
    ok = {"prompt": "describe the image .", "images": ["ok.png"], "chosen": "a red circle .", "rejected": "a star ."}
    write_lines(tmp_path / "bad.jsonl", [
        {k: v for k, v in ok.items() if k != "rejected"},
        ok | {"chosen": 3},
        ok | {"images": ["missing.png"]},
        ok | {"images": ["broken.png"]},
        ok | {"chosen_spans": [[0, 99]]},
        ok | {"corrupt_images": ["ok.png", "ok.png"]},
        ok | {"rejected": "a red circle ."},
        '{"prompt": "oops"',
        ok | {"prompt": messages("compare .", 2)},
        ok | {"rejected_span": [[0, 1]]},
        ok | {"id": "same"},
        ok | {"id": "same"},
        ok | {"images": ["data:image/png;base64,@@@"]},
        ok | {"ref_logps": {"chosen": -1.0}},
        ok | {"images": "ok.png"},
        ok,
    ])
    with pytest.raises(MMAlignError) as e:
        read_preference_file(tmp_path / "bad.jsonl")
    f = tmp_path / "bad.jsonl"
    expected = [
        f"{f}:1: field 'rejected': missing",
        f"{f}:2: field 'chosen': a int, expected a string or a list of assistant messages",
        f"{f}:3: field 'images': image 0: file not found: {tmp_path / 'missing.png'}",
        f"{f}:4: field 'images': image 0: not a decodable image",
        f"{f}:5: field 'chosen_spans': span [0, 99] out of range for a text of 14 characters",
        f"{f}:6: field 'corrupt_images': 2 image(s) for 1 in 'images'",
        f"{f}:7: field 'rejected': identical to 'chosen'",
        f"{f}:8: invalid JSON",
        f"{f}:9: field 'prompt': 2 image block(s) for 1 image(s) in 'images'",
        f"{f}:10: field 'rejected_span': unknown",
        f"{f}:12: field 'id': 'same' is already used at {f}:11",
        f"{f}:13: field 'images': image 0: not a decodable image",
        f"{f}:14: field 'ref_logps': a dict, expected an object {{\"chosen\": number, \"rejected\": number}}",
        f"{f}:15: field 'images': a str, expected a list of images",
    ]
    msg = str(e.value)
    assert msg.startswith(f"{len(expected)} problem(s) in {f}:")
    for line in expected:
        assert line in msg
    assert f"{f}:11:" not in msg and f"{f}:16:" not in msg


def test_missing_and_empty_files(tmp_path):
    with pytest.raises(MMAlignError, match="data file not found"):
        read_preference_file(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(MMAlignError, match="no records"):
        read_preference_file(tmp_path / "empty.jsonl")


# ---- ranked lists and DDPO weights -------------------------------------------------------------------------------

def test_ranked_to_pairs_keeps_margins_and_counts_ties():
    img = image(0)
    pairs = ranked_to_pairs("describe .", [img], ["a", "b", "c", "d"], [3.0, 1.0, 3.0, 0.5], id="q7")
    got = {(p.chosen, p.rejected): p.reward_margin for p in pairs}
    assert got == {("a", "b"): 2.0, ("a", "d"): 2.5, ("c", "b"): 2.0, ("c", "d"): 2.5, ("b", "d"): 0.5}
    assert all(p.meta["ties_skipped"] == 1 and p.images == [img] for p in pairs)
    assert pairs[0].id == "q7-0-1" and pairs[0].scores == {"chosen": 3.0, "rejected": 1.0}
    (best,) = ranked_to_pairs("describe .", [img], ["a", "b", "c"], [1.0, 4.0, -2.0], mode="best_worst")
    assert (best.chosen, best.rejected, best.reward_margin) == ("b", "c", 6.0)
    assert ranked_to_pairs("x", [], ["a", "b"], [1.0, 1.0], mode="best_worst") == []


def test_spans_to_token_weights_with_the_lab_tokenizer():
    text = "a red circle and a blue star ."
    start = text.index("blue star")
    offsets = build_tokenizer()(text, return_offsets_mapping=True, add_special_tokens=False)["offset_mapping"]
    weights = spans_to_token_weights(offsets, [[start, start + len("blue star")]], 5.0)
    assert weights == [1, 1, 1, 1, 1, 5, 5, 1]
    # a span cutting into a word weights the whole token; no spans means all ones
    assert spans_to_token_weights(offsets, [[3, 4]], 3.0) == [1, 3, 1, 1, 1, 1, 1, 1]
    assert spans_to_token_weights(offsets, None, 5.0) == [1.0] * 8

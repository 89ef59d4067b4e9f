"""Each reader over its hand-written fixture (the documented schema), and each writer's round trip: writing the
records then reading them back gives equal records, in every container the format is written to."""
import json
import shutil
from pathlib import Path

import datasets
import pytest

from mmalign.data.formats.registry import FORMATS, detect_format, read_records
from mmalign.data.formats.rlhfv import correction_spans

FIXTURES = Path(__file__).parent / "fixtures"
FIXTURE_FILES = {"mmalign": "mmalign.jsonl", "trl": "trl.jsonl", "llamafactory": "llamafactory.json",
                 "swift": "swift.jsonl", "verl": "verl_easyr1.jsonl", "rlaif_v": "rlaif_v.jsonl",
                 "vlfeedback": "vlfeedback.jsonl", "mmrlhf": "mmrlhf.jsonl", "llava_rlhf": "llava_rlhf.json",
                 "rlhfv": "rlhfv.jsonl", "povid": "povid.json"}


def user(*blocks) -> dict:
    return {"role": "user", "content": [b if isinstance(b, dict) else {"type": "text", "text": b} for b in blocks]}


IMAGE = {"type": "image"}


def read(name: str):
    return read_records(FIXTURES / FIXTURE_FILES[name], name)


def test_every_format_has_a_fixture_that_is_detected_as_itself():
    assert set(FIXTURE_FILES) == set(FORMATS)
    for name, file in FIXTURE_FILES.items():
        assert detect_format(FIXTURES / file) == name


def test_mmalign_layout(red, blue, same_image):
    a, b = read("mmalign")
    assert (a.prompt, a.reward_margin, a.scores, a.task, a.meta) == (
        "What color is the square?", 1.5, {"chosen": 4.0, "rejected": 2.5}, "color", {"source": "hand"})
    assert b.rejected_spans == [[13, 23]] and b.ref_logps == {"chosen": -3.5, "rejected": -7.25}
    assert same_image(b.images[0], blue) and same_image(b.corrupt_images[0], red)


def test_trl_explicit_and_implicit_prompt(red, blue, same_image):
    a, b = read("trl")
    assert a.prompt == [user(IMAGE, "What color is the square?")] and (a.chosen, a.rejected) == ("Red.", "Blue.")
    assert b.prompt == [user(IMAGE, "Is it blue?")] and (b.chosen, b.rejected) == ("Yes.", "No.")
    assert b.meta == {"origin": "implicit prompt"} and same_image(a.images[0], red) and same_image(b.images[0], blue)


def test_llamafactory_sharegpt_with_placeholders_and_system(red, blue, same_image):
    a, b = read("llamafactory")
    assert a.prompt == [{"role": "system", "content": [{"type": "text", "text": "Answer in one word."}]},
                        user(IMAGE, "What color is the square?")]
    assert b.prompt == [user("Compare ", IMAGE, " and ", IMAGE, "."),
                        {"role": "assistant", "content": [{"type": "text", "text": "They differ in color."}]},
                        user("Which one is red?")]
    assert (b.chosen, b.rejected, b.meta) == ("The first.", "The second.", {"videos": []})
    assert same_image(b.images[0], red) and same_image(b.images[1], blue)


def test_llamafactory_openai_tags(tmp_path):
    shutil.copytree(FIXTURES / "images", tmp_path / "images")
    (tmp_path / "lf.json").write_text(json.dumps([{
        "messages": [{"role": "user", "content": "<image>Which color?"}],
        "chosen": {"role": "assistant", "content": "Red."}, "rejected": {"role": "assistant", "content": "Blue."},
        "images": ["images/red.png"]}]))
    (rec,) = read_records(tmp_path / "lf.json", "llamafactory")
    assert rec.prompt == [user(IMAGE, "Which color?")] and (rec.chosen, rec.rejected) == ("Red.", "Blue.")


def test_swift_messages_and_rejected_response():
    a, b, c = read("swift")
    assert a.prompt[0] == {"role": "system", "content": [{"type": "text", "text": "Answer briefly."}]}
    assert (a.chosen, a.rejected) == ("Red.", "Blue.")
    assert b.prompt == [user(IMAGE, IMAGE, "Which one is blue?")] and len(b.images) == 2
    assert b.meta == {"tools": "[]"}
    assert c.prompt[1] == user(IMAGE, "Describe the image.")  # no <image> tag: ms-swift puts the image first


def test_verl_easyr1_rows_become_prompt_records(blue, same_image):
    a, b = read("verl")
    assert a.prompt == [user(IMAGE, "How many pixels wide is the square?")] and a.ground_truth == "4"
    assert same_image(a.images[0], blue) and (b.images, b.videos, b.ground_truth) == ([], [], "5")


def test_verl_parquet_in_geo3k_layout(tmp_path, red, same_image):
    rows = [{"data_source": "hiyouga/geometry3k", "prompt": [{"role": "user", "content": "<image>Find x. <video>"}],
             "images": [{"bytes": (FIXTURES / "images" / "red.png").read_bytes(), "path": None}],
             "videos": ["clips/a.mp4"], "ability": "math", "reward_model": {"style": "rule", "ground_truth": "3"},
             "extra_info": {"split": "train", "index": 0}}]
    features = datasets.Features({
        "data_source": datasets.Value("string"),
        "prompt": [{"role": datasets.Value("string"), "content": datasets.Value("string")}],
        "images": datasets.Sequence(datasets.Image()), "videos": datasets.Sequence(datasets.Value("string")),
        "ability": datasets.Value("string"),
        "reward_model": {"style": datasets.Value("string"), "ground_truth": datasets.Value("string")},
        "extra_info": {"split": datasets.Value("string"), "index": datasets.Value("int64")}})
    datasets.Dataset.from_list(rows, features=features).to_parquet(str(tmp_path / "train.parquet"))
    (rec,) = read_records(tmp_path / "train.parquet")
    assert rec.prompt == [user(IMAGE, "Find x. ", {"type": "video"})] and rec.videos == ["clips/a.mp4"]
    assert (rec.ground_truth, rec.data_source) == ("3", "hiyouga/geometry3k") and same_image(rec.images[0], red)
    assert rec.meta == {"ability": "math", "extra_info": {"split": "train", "index": 0}}  # style "rule": the default


def test_rlaif_v_flat_rows_and_reference_logps(red, same_image):
    a, b = read("rlaif_v")
    assert (a.prompt, a.chosen, a.rejected) == ("What color is the square?", "The square is red.",
                                               "The square is green.")
    assert same_image(a.images[0], red) and a.ref_logps is None
    assert a.meta == {"ds_name": "RLAIF-V", "origin_dataset": "lab", "image_path": "red.png", "idx": "0",
                      "origin_split": '{"model": "lab-base", "type": "question_answering"}'}
    assert b.ref_logps == {"chosen": -12.5, "rejected": -20.0}


def test_rlaif_v_parquet_with_image_bytes(tmp_path, blue, same_image):
    features = datasets.Features({"image": datasets.Image(), "question": datasets.Value("string"),
                                  "chosen": datasets.Value("string"), "rejected": datasets.Value("string")})
    datasets.Dataset.from_list([{"image": {"bytes": (FIXTURES / "images" / "blue.png").read_bytes(), "path": None},
                                 "question": "Describe.", "chosen": "Blue.", "rejected": "Red."}],
                               features=features).to_parquet(str(tmp_path / "rlaif.parquet"))
    (rec,) = read_records(tmp_path / "rlaif.parquet", "rlaif_v")
    assert rec.prompt == "Describe." and same_image(rec.images[0], blue)


def test_vlfeedback_pairs_from_mean_aspect_ratings():
    pairs = {p.id: p for p in read("vlfeedback")}
    assert sorted(pairs) == ["v0-0-1", "v0-0-2", "v0-2-1", "v1-0-2", "v1-1-2"]  # v1: 0 and 1 tie, 3 is N/A
    assert pairs["v0-0-1"].reward_margin == pytest.approx(5 - 8 / 3)
    assert pairs["v0-2-1"].scores == pytest.approx({"chosen": 4.0, "rejected": 8 / 3})
    assert (pairs["v0-2-1"].chosen, pairs["v0-2-1"].rejected) == ("Reddish.", "Blue.")
    assert pairs["v1-0-2"].meta["ties_skipped"] == 1 and pairs["v1-0-2"].reward_margin == pytest.approx(2.5)
    assert pairs["v0-0-1"].meta["models"] == {"chosen": "model-a", "rejected": "model-b"}


def test_vlfeedback_parquet_stores_completions_as_lists(tmp_path):
    rows = [json.loads(line) for line in (FIXTURES / "vlfeedback.jsonl").read_text().splitlines()][:1]
    for row in rows:
        row["completions"] = {k: [c[k] for c in row["completions"]] for k in ("model", "response", "annotations")}
        row["img_path"] = str(FIXTURES / row["img_path"])
    datasets.Dataset.from_list(rows).to_parquet(str(tmp_path / "vlf.parquet"))
    assert [p.id for p in read_records(tmp_path / "vlf.parquet", "vlfeedback")] == ["v0-0-1", "v0-0-2", "v0-2-1"]


def test_mmrlhf_pairs_with_reference_logps_mixed_images_and_critiques(red, blue, same_image):
    a, b, c = read("mmrlhf")
    assert a.prompt == "What color is the square?" and a.ref_logps == {"chosen": -4.5, "rejected": -6.0}
    assert a.meta == {"chosen_reason": "Correct color.", "rejected_reason": "Wrong color.", "is_tie": False,
                      "ls_factor": 0.8}
    assert [same_image(x, y) for x, y in zip(b.images + b.corrupt_images, [red, blue, blue, red])] == [True] * 4
    assert c.images == [] and c.meta == {"video": "videos/v0"}


def test_llava_rlhf_preference_picks_the_chosen_output():
    a, b = read("llava_rlhf")
    assert (a.id, a.chosen, a.rejected) == ("000001", "It is red.", "It is blue.")
    assert a.prompt == [user(IMAGE, "\nWhat color is the square?")]
    assert (b.chosen, b.rejected, b.meta) == ("No, only the square.", "Yes, a cat sits beside it.",
                                              {"hallucination": True})
    assert len(b.prompt) == 3 and b.prompt[1]["role"] == "assistant"


def test_rlhfv_corrections_become_ddpo_spans():
    (rec,) = read("rlhfv")
    assert rec.chosen == "A red square on a gray background."
    assert [rec.chosen[s:e] for s, e in rec.chosen_spans] == ["gray"]
    assert [rec.rejected[s:e] for s, e in rec.rejected_spans] == ["with a small dog", "white"]
    assert correction_spans("same words", "same words") == ([], [])


def test_povid_conversations_and_rejected_conversations():
    (rec,) = read("povid")
    assert (rec.id, rec.chosen) == ("p0", "A red square.")
    assert rec.rejected == "A red square next to a red apple on a table."


# ---- round trips ---------------------------------------------------------------------------------------------

CONTAINERS = {"mmalign": [".jsonl"], "mmrlhf": [".jsonl", ".json"], "llava_rlhf": [".json"], "povid": [".json"]}
CASES = [(name, suffix) for name in FIXTURE_FILES for suffix in CONTAINERS.get(name, [".jsonl", ".parquet"])]


@pytest.mark.parametrize("name,suffix", CASES)
def test_write_then_read_loses_nothing(name, suffix, tmp_path, same_records):
    records = read(name)
    out = FORMATS[name].write(records, tmp_path / f"out{suffix}")
    same_records(read_records(out, name), records)

"""Conversions: records with every field filled go through each pair format and back without loss (the prompt
may change shape: a string and a one-turn message prompt with the image first are the same prompt), format
detection, and the line between pairs and RL prompts."""
from dataclasses import replace
from pathlib import Path

import pytest

from mmalign.data.formats.messages import prompt_to_turns
from mmalign.data.formats.registry import (
    FORMATS,
    convert,
    detect_format,
    read_records,
    write_records,
)
from mmalign.data.formats.rlhfv import correction_spans
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import MMAlignError

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture
def rich(red, blue):
    return [
        PreferenceRecord(id="r0", prompt="What color is the square?", images=[red], chosen="It is red.",
                         rejected="It is blue and round.", corrupt_images=[blue], chosen_spans=[[6, 9]],
                         rejected_spans=[[6, 20]], reward_margin=0.75, scores={"chosen": 3.0, "rejected": 2.25},
                         ref_logps={"chosen": -5.5, "rejected": -9.0}, task="color", meta={"source": "lab", "n": 3}),
        PreferenceRecord(id="r1", prompt=[{"role": "user", "content": [{"type": "image"},
                                                                       {"type": "text", "text": "Describe."}]}],
                         images=[blue], chosen="A blue square.", rejected="A blue cat."),
    ]


CONVERTIBLE = [name for name, fmt in FORMATS.items() if fmt.kind == "pairs" and name != "vlfeedback"]
SUFFIX = {"llava_rlhf": ".json", "povid": ".json"}


@pytest.mark.parametrize("name", CONVERTIBLE)
def test_every_field_survives_a_conversion_through_each_format(name, rich, tmp_path, same_records):
    src = write_records(rich, tmp_path / "src.jsonl", "mmalign")
    middle = tmp_path / f"mid{SUFFIX.get(name, '.jsonl')}"
    assert convert(src, middle, name) == ("mmalign", 2)
    assert detect_format(middle) == name
    convert(middle, tmp_path / "back.jsonl", "mmalign", name)
    back = read_records(tmp_path / "back.jsonl", "mmalign")
    assert [prompt_to_turns(b.prompt, 1) for b in back] == [prompt_to_turns(r.prompt, 1) for r in rich]
    want = [replace(r, prompt=b.prompt) for r, b in zip(rich, back)]
    if name == "rlhfv":  # RLHF-V records always have spans: the diff's when the record had none
        want[1] = replace(want[1], chosen_spans=correction_spans(want[1].chosen, want[1].rejected)[0],
                          rejected_spans=correction_spans(want[1].chosen, want[1].rejected)[1])
    same_records(back, want)


def test_trl_parquet_holds_every_field_too(rich, tmp_path, same_records):
    out = write_records(rich, tmp_path / "trl.parquet", "trl")
    back = read_records(out, "trl")
    same_records(back, [replace(r, prompt=b.prompt) for r, b in zip(rich, back)])


def test_vlfeedback_pairs_convert_out_and_back(tmp_path, same_records):
    pairs = read_records(FIXTURES / "vlfeedback.jsonl")
    convert(FIXTURES / "vlfeedback.jsonl", tmp_path / "pairs.jsonl", "trl")
    convert(tmp_path / "pairs.jsonl", tmp_path / "vlf.parquet", "vlfeedback", "trl")
    back = read_records(tmp_path / "vlf.parquet", "vlfeedback")
    same_records(back, [replace(p, prompt=b.prompt) for p, b in zip(pairs, back)])


def test_pairs_and_rl_prompts_do_not_convert_into_each_other(tmp_path):
    with pytest.raises(MMAlignError, match="verl holds prompts and trl holds pairs"):
        convert(FIXTURES / "verl_easyr1.jsonl", tmp_path / "x.jsonl", "trl")
    with pytest.raises(MMAlignError, match="mmalign holds pairs and verl holds prompts"):
        convert(FIXTURES / "mmalign.jsonl", tmp_path / "x.parquet", "verl")


def test_detection_refuses_what_it_cannot_tell(tmp_path):
    (tmp_path / "odd.jsonl").write_text('{"query": "q", "answer_a": "a"}\n')
    with pytest.raises(MMAlignError, match="cannot tell the format .*its columns are query, answer_a"):
        detect_format(tmp_path / "odd.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n")
    with pytest.raises(MMAlignError, match="no record to detect the format from"):
        detect_format(tmp_path / "empty.jsonl")

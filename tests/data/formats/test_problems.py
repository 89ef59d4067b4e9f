"""Bad input: every problem of a file is listed with its file, record (line) and field, as one MMAlignError when
reading; records that cannot be written are all named; nothing raises anything else, nothing is skipped."""
import json
import shutil
from pathlib import Path

import pytest

from mmalign.data.formats.registry import (
    FORMATS,
    check_file,
    read_records,
    write_records,
)
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import MMAlignError

FIXTURES = Path(__file__).parent / "fixtures"
ANSWER = [{"role": "assistant", "content": [{"type": "text", "text": "Red."}]}]
USER = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "Color?"}]}]

# format -> (rows, expected problems as (line, text after "FILE:LINE: "))
BAD = {
    "mmalign": ([{"prompt": "Color?", "chosen": "Red.", "images": ["images/red.png"]},
                 {"prompt": "Color?", "chosen": "Red.", "rejected": "Blue.", "images": ["images/nope.png"]},
                 {"prompt": "Color?", "chosen": "Red.", "rejected": "Red.", "images": ["images/red.png"]}],
                [(1, "field 'rejected': missing"), (2, "field 'images': image 0: file not found"),
                 (3, "field 'rejected': identical to 'chosen'")]),
    "trl": ([{"prompt": USER, "chosen": ANSWER, "rejected": [{"role": "assistant", "content": "Blue."}],
              "images": []}],
            [(1, "field 'prompt': 1 image block(s) for 0 image(s) in 'images'")]),
    "llamafactory": ([{"conversations": [{"from": "human"}], "chosen": {"from": "gpt", "value": "a"}, "rejected": "b"},
                      {"conversations": [{"from": "human", "value": "<image><image>Color?"}],
                       "chosen": {"from": "gpt", "value": "Red."}, "rejected": {"from": "gpt", "value": "Blue."},
                       "images": ["images/red.png"]}],
                     [(1, "field 'conversations': message 0: expected"), (1, "field 'rejected': expected a message"),
                      (2, "field 'conversations': 2 image block(s) for 1 image(s)")]),
    "swift": ([{"messages": [{"role": "user", "content": "Color?"}], "rejected_messages": []}],
              [(1, "field 'messages': the last message must be the assistant's"),
               (1, "field 'rejected_response': missing or not a string")]),
    "verl": ([{"prompt": [{"role": "user", "content": "<image><image>x"}], "images": ["images/red.png"],
               "reward_model": {"style": "rule"}},
              {"answer": "1"}],
             [(1, "field 'reward_model': expected an object with 'ground_truth'"),
              (1, "field 'prompt': 2 <image> placeholder(s) for 1 image(s)"),
              (2, "field 'prompt': missing (neither verl's 'prompt' nor EasyR1's 'problem')")]),
    "rlaif_v": ([{"question": "Color?", "chosen": "Red.", "rejected": "Blue."},
                 {"question": 7, "chosen": "Red.", "rejected": "Blue.", "image": "images/red.png", "logps": "[1]"}],
                [(1, "field 'image': missing"), (2, "field 'logps': expected RLAIF-V's six")]),
    "vlfeedback": ([{"prompt": "Color?", "img_path": "images/red.png",
                     "completions": [{"response": "Red.", "annotations": {"Helpfulness": {"Rating": "5"}}},
                                     {"response": "Blue."}]}],
                   [(1, "field 'completions': completion 1: expected"), (1, "field 'id': missing")]),
    "mmrlhf": ([{"prompt": "Color?", "chosen": "Red.", "rejected": "Blue.", "image": "images/red.png",
                 "reference_chosen_logp": -1.0},
                {"prompt": "Color?", "chosen": "Red.", "rejected": "Blue.", "image": "images/gone.png"}],
               [(1, "field 'reference_rejected_logp': reference_chosen_logp and reference_rejected_logp come"),
                (2, "field 'image': image 0: file not found")]),
    "llava_rlhf": ([{"id": "1", "conversations": [{"from": "human", "value": "Color?"}],
                     "output_1": {"from": "llava", "value": "Red."}, "output_2": "Blue.", "preference": 3}],
                   [(1, "field 'conversations': must end with the gpt turn"), (1, "field 'output_2': expected"),
                    (1, "field 'preference': 3, expected 1 or 2")]),
    "rlhfv": ([{"image": "images/red.png", "text": "not json"},
               {"image": "images/red.png", "text": json.dumps({"question": "Q", "chosen": "A", "rejected": 5})}],
              [(1, "field 'text': expected a JSON string"), (2, "field 'text': question, chosen and rejected must")]),
    "povid": ([{"id": "p", "image": "images/red.png",
                "conversations": [{"from": "human", "value": "<image>Q"}, {"from": "gpt", "value": "A"}],
                "rejected_conversations": [{"from": "human", "value": "<image>Other"}, {"from": "gpt", "value": "B"}]}],
              [(1, "field 'rejected_conversations': its prompt turns differ")]),
}


@pytest.mark.parametrize("name", list(BAD))
def test_every_problem_is_listed_with_file_line_and_field(name, tmp_path):
    assert set(BAD) == set(FORMATS)
    shutil.copytree(FIXTURES / "images", tmp_path / "images")
    rows, expected = BAD[name]
    path = tmp_path / "bad.jsonl"
    path.write_text("".join(json.dumps(row) + "\n" for row in rows) + "{not json\n7\n")
    _, _, problems = check_file(path, name)
    n = len(rows)
    expected = expected + [(n + 1, "invalid JSON"), (n + 2, "record is a int, expected an object")]
    for line, text in expected:
        assert any(p.startswith(f"{path}:{line}: {text}") for p in problems), (line, text, problems)
    assert len(problems) == len(expected), problems
    with pytest.raises(MMAlignError, match=f"{len(expected)} problem"):
        read_records(path, name)


def test_records_a_format_cannot_hold_are_all_named_when_writing(tmp_path):
    one = PreferenceRecord(id="a", prompt="Q", images=[], chosen="A", rejected="B")
    turns = PreferenceRecord(id="b", prompt=[{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}],
                             images=[], chosen="A", rejected="B")
    with pytest.raises(MMAlignError) as e:
        write_records([one, turns], tmp_path / "out.parquet", "rlaif_v")
    msg = str(e.value)
    assert "record 'a': RLAIF-V rows hold exactly one image, this record has 0" in msg
    assert "record 'b': RLAIF-V rows hold one question, this record's prompt has several turns" in msg
    assert not (tmp_path / "out.parquet").exists()
    with pytest.raises(MMAlignError, match="record 'a': VLFeedback rows are rebuilt from a pair's meta"):
        write_records([one], tmp_path / "out.jsonl", "vlfeedback")
    clash = PreferenceRecord(id="c", prompt="Q", images=[], chosen="A", rejected="B", meta={"rejected_response": 1})
    with pytest.raises(MMAlignError, match="record 'c': meta key 'rejected_response' would overwrite"):
        write_records([clash], tmp_path / "out.jsonl", "swift")
    with pytest.raises(MMAlignError, match="cannot write .*out.parquet: POVID reads one JSON array"):
        write_records([one], tmp_path / "out.parquet", "povid")

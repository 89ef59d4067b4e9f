"""``mmalign data convert | validate | show`` through ``mmalign.cli.main``."""
import json
import shutil
from pathlib import Path

from mmalign.cli import main
from mmalign.data.formats.registry import read_records

FIXTURES = Path(__file__).parent / "fixtures"


def test_convert_detects_the_source_format(tmp_path, capsys, same_records):
    assert main(["data", "convert", str(FIXTURES / "llamafactory.json"), str(tmp_path / "out.parquet"),
                 "--to", "trl"]) == 0
    assert "wrote 2 record(s)" in capsys.readouterr().out
    assert [r.chosen for r in read_records(tmp_path / "out.parquet", "trl")] == ["Red.", "The first."]
    assert main(["data", "convert", str(tmp_path / "out.parquet"), str(tmp_path / "back.json"),
                 "--from", "trl", "--to", "llamafactory"]) == 0
    same_records(read_records(tmp_path / "back.json"), read_records(FIXTURES / "llamafactory.json"))


def test_convert_reports_bad_input_in_one_error(tmp_path, capsys):
    assert main(["data", "convert", str(tmp_path / "none.jsonl"), str(tmp_path / "o.jsonl"), "--to", "trl"]) == 2
    assert capsys.readouterr().err.startswith("error: data file not found")
    assert main(["data", "convert", str(FIXTURES / "swift.jsonl"), str(tmp_path / "o.parquet"), "--to",
                 "rlaif_v"]) == 2
    err = capsys.readouterr().err
    assert "3 problem(s)" in err and "record 'swift-1': RLAIF-V rows hold one question" in err
    assert "record 'swift-2': RLAIF-V rows hold exactly one image, this record has 2" in err


def test_validate_lists_every_defect_of_a_broken_file_and_fails(tmp_path, capsys):
    shutil.copytree(FIXTURES / "images", tmp_path / "images")
    ok = {"prompt": "Color?", "images": ["images/red.png"], "chosen": "Red.", "rejected": "Blue."}
    rows = [ok, ok | {"chosen": 3}, ok | {"images": ["images/gone.png"]}, ok | {"rejected": "Red."},
            ok | {"chosen_spans": [[0, 40]]}, ok | {"colour": "red"}]
    bad = tmp_path / "bad.jsonl"
    bad.write_text("".join(json.dumps(r) + "\n" for r in rows) + "{oops\n")
    assert main(["data", "validate", str(bad)]) == 1
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[:-1] == [
        f"{bad}:2: field 'chosen': a int, expected a string or a list of assistant messages",
        f"{bad}:3: field 'images': image 0: file not found: {tmp_path / 'images' / 'gone.png'}",
        f"{bad}:4: field 'rejected': identical to 'chosen'",
        f"{bad}:5: field 'chosen_spans': span [0, 40] out of range for a text of 4 characters",
        (f"{bad}:6: field 'colour': unknown (known: id, prompt, images, chosen, rejected, corrupt_images, "
         "chosen_spans, rejected_spans, reward_margin, scores, ref_logps, task, meta, "
         "audios, corrupt_audios, sampling_rate)"),
        f"{bad}:7: invalid JSON (Expecting property name enclosed in double quotes)",
    ]
    assert lines[-1] == f"{bad} (mmalign): 3 record(s) read, 6 problem(s)"
    assert main(["data", "validate", str(FIXTURES / "povid.json"), "--format", "povid"]) == 0
    assert capsys.readouterr().out.strip().endswith("1 record(s) read, 0 problem(s)")


def test_show_escapes_model_text_and_inlines_images(tmp_path, capsys):
    shutil.copytree(FIXTURES / "images", tmp_path / "images")
    row = {"prompt": "What is <b>here</b>?", "images": ["images/red.png"], "chosen": "A red square.",
           "rejected": "<script>alert('x')</script> & more"}
    (tmp_path / "pairs.jsonl").write_text(json.dumps(row) + "\n" + json.dumps(row | {"chosen": "Red."}) + "\n")
    assert main(["data", "show", str(tmp_path / "pairs.jsonl"), "--limit", "1"]) == 0
    page = (tmp_path / "pairs.html").read_text()
    assert "<script>" not in page and "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; &amp; more" in page
    assert "What is &lt;b&gt;here&lt;/b&gt;?" in page and page.count("data:image/png;base64,") == 1
    assert "1 of 2 record(s)" in page and "class='pair'" in page
    assert main(["data", "show", str(FIXTURES / "verl_easyr1.jsonl"), "--out", str(tmp_path / "rl.html")]) == 0
    assert "ground truth:</b> 4" in (tmp_path / "rl.html").read_text()


def test_data_has_its_own_help_and_is_listed_in_the_main_one(capsys):
    for argv in (["--help"], ["data", "--help"]):
        try:
            main(argv)
        except SystemExit as e:
            assert e.code == 0
    out = " ".join(capsys.readouterr().out.split())      # argparse wraps help lines
    assert "build, convert, validate and show preference data" in out and "{convert,validate,show,build}" in out

"""The command line: bad input gives one clear line and exit code 2, never a traceback."""
import json
import subprocess
import sys

import pytest


def mmalign(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "mmalign", *args], check=False, capture_output=True, text=True,
                          cwd=cwd,
                          timeout=300)


def one_line_error(result, *fragments):
    assert result.returncode == 2, result.stderr
    lines = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    for f in fragments:
        assert f in lines[0], lines[0]


@pytest.mark.parametrize("command", ["sft", "vision", "eval", "world", "base", "quickstart", "train"])
def test_misspelt_key_is_named_with_a_suggestion(command):
    args = ["world", "build"] if command == "world" else [command]
    one_line_error(mmalign(*args, "world.sed=3"), "unknown key 'world.sed'", "did you mean 'world.seed'?")


def test_wrong_type_and_missing_config_file(tmp_path):
    one_line_error(mmalign("sft", "train.lr=fast"), "key 'train.lr' expects float", "'fast'")
    one_line_error(mmalign("sft", "--config", str(tmp_path / "nope.yaml")), "config file not found", "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  max_stepz: 3\n")
    one_line_error(mmalign("sft", "--config", str(bad)), "unknown key 'train.max_stepz'", str(bad))


def test_missing_model_folder_and_data_file(tmp_path):
    one_line_error(mmalign("eval", f"model={tmp_path / 'no-model'}"), "no-model")
    one_line_error(mmalign("train", f"model.path={tmp_path / 'no-model'}"), "no-model")
    one_line_error(mmalign("train", f"data.source={tmp_path / 'pairs.jsonl'}"), "not found", "pairs.jsonl")
    one_line_error(mmalign("train", "loss.name=dpx"), "unknown loss 'dpx'", "dpo")
    one_line_error(mmalign("train", "loss.params.betta=0.2"), "betta", "beta")
    one_line_error(mmalign("sft", f"data.source={tmp_path / 'none.jsonl'}", "train.max_steps=1"),
                   "data file not found", "none.jsonl")


def test_bad_records_are_all_listed_with_line_and_field(tmp_path):
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"images": ["missing.png"], "prompt": "describe the image .", "response": "a ."})
                    + "\n{not json\n" + json.dumps({"images": [], "prompt": "x"}) + "\n")
    r = mmalign("sft", f"data.source={data}", "train.max_steps=1")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "3 problem(s)" in r.stderr
    assert f"{data}:1: field 'images': file not found: missing.png" in r.stderr
    assert f"{data}:2: invalid JSON" in r.stderr
    assert f"{data}:3: field 'response'" in r.stderr


def test_config_show_prints_the_resolved_config(tmp_path):
    f = tmp_path / "sft.yaml"
    f.write_text("train:\n  lr: 0.01\n  max_steps: 7\n")
    r = mmalign("config", "show", "sft", str(f), "train.max_steps=9")
    assert r.returncode == 0, r.stderr
    assert "lr: 0.01" in r.stdout and "max_steps: 9" in r.stdout
    r = mmalign("config", "show", "world", "out=x")
    assert r.returncode == 0 and "out: x" in r.stdout


def test_compare_and_eval_shorthands(tmp_path):
    for name, chair in (("base", 0.2), ("dpo", 0.15)):
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.json").write_text(json.dumps({"caption": {"chair_i": chair}}))
    r = mmalign("compare", str(tmp_path / "base"), str(tmp_path / "dpo"), "--out", str(tmp_path / "cmp"))
    assert r.returncode == 0, r.stderr
    assert "| CHAIR-i | 0.200 | 0.150 (-0.050) |" in (tmp_path / "cmp" / "report.md").read_text()
    one_line_error(mmalign("compare", str(tmp_path / "base"), str(tmp_path / "gone")), "gone")
    one_line_error(mmalign("eval", "--model", str(tmp_path / "no-model"), "--tasks", "caption,exist"), "no-model")
    one_line_error(mmalign("eval", "--model", str(tmp_path / "base"), "--tasks", "captoin"), "captoin")


def test_serve_refuses_a_remote_bind_unless_asked(tmp_path):
    r = mmalign("serve", "--model", str(tmp_path), "--host", "0.0.0.0")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "allow_remote" in r.stderr


def test_out_names_each_commands_output_setting():
    from mmalign.cli import OUT_KEYS, _commands
    from mmalign.config import load_config
    commands = _commands()
    assert set(commands) - set(OUT_KEYS) == {"judge"}
    for name, key in OUT_KEYS.items():
        cfg = load_config(commands[name][0], None, [f"{key}=somewhere"])
        for part in key.split("."):
            cfg = getattr(cfg, part)
        assert cfg == "somewhere", name


def test_rm_is_the_reward_command():
    one_line_error(mmalign("rm", "world.sed=3"), "unknown key 'world.sed'", "did you mean 'world.seed'?")
    r = mmalign("config", "show", "reward", "train.max_steps=9")
    assert r.returncode == 0 and "max_steps: 9" in r.stdout
    assert mmalign("judge", "--out", "x").returncode == 2

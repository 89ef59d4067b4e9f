from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest

from mmalign.config import load_config, to_dict, to_yaml
from mmalign.errors import ConfigError, MMAlignError


@dataclass
class Optim:
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.98)
    warmup: int = 10


@dataclass
class Lora:
    rank: int = 8


@dataclass
class Sample:
    optim: Optim = field(default_factory=Optim)
    output_dir: str = "runs/sft"
    mix: dict[str, float] = field(default_factory=lambda: {"caption": 0.7, "vqa": 0.3})
    seed: int = 0
    resume: str | None = None
    family: Literal["llava", "qwen2_vl", "idefics3"] = "llava"
    bf16: bool = True
    tags: list[str] = field(default_factory=list)
    sizes: tuple[int, ...] = (1, 2)
    lora: Lora | None = None
    max_len: int | None = 512


def write(tmp_path, text, name="cfg.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def error(*args, **kwargs) -> str:
    with pytest.raises(ConfigError) as info:
        load_config(Sample, *args, **kwargs)
    message = str(info.value)
    assert "\n" not in message
    return message


# --- loading -------------------------------------------------------------------------------------------


def test_defaults_when_nothing_given():
    assert load_config(Sample) == Sample()


def test_defaults_are_fresh_objects():
    a = load_config(Sample, overrides=["mix.caption=0.1"])
    assert load_config(Sample).mix == {"caption": 0.7, "vqa": 0.3}
    assert a.mix["caption"] == 0.1


def test_yaml_merges_into_nested_sections(tmp_path):
    cfg = load_config(Sample, write(tmp_path, "optim:\n  lr: 0.01\nseed: 3\nfamily: idefics3\n"))
    assert cfg.optim == Optim(lr=0.01)  # untouched keys of the section keep their defaults
    assert (cfg.seed, cfg.family) == (3, "idefics3")


def test_path_may_be_str(tmp_path):
    assert load_config(Sample, str(write(tmp_path, "seed: 4\n"))).seed == 4


def test_empty_yaml_file_changes_nothing(tmp_path):
    assert load_config(Sample, write(tmp_path, "")) == Sample()


def test_dotted_keys_in_yaml(tmp_path):
    assert load_config(Sample, write(tmp_path, "optim.lr: 0.5\n")).optim.lr == 0.5


def test_yaml_dict_field_replaces_whole_dict(tmp_path):
    cfg = load_config(Sample, write(tmp_path, "mix:\n  caption: 1\n  grounding: 2.5\n"))
    assert cfg.mix == {"caption": 1.0, "grounding": 2.5}
    assert isinstance(cfg.mix["caption"], float)


def test_overrides(tmp_path):
    cfg = load_config(
        Sample,
        overrides=["optim.lr=5e-5", "optim.betas=[0.9,0.99]", "resume=null", "output_dir=foo", "bf16=false"],
    )
    assert cfg.optim.lr == 5e-5 and isinstance(cfg.optim.lr, float)
    assert cfg.optim.betas == (0.9, 0.99)
    assert cfg.resume is None and cfg.output_dir == "foo" and cfg.bf16 is False


def test_override_beats_yaml(tmp_path):
    path = write(tmp_path, "optim:\n  lr: 0.01\n  warmup: 5\nseed: 1\n")
    cfg = load_config(Sample, path, ["optim.lr=0.02", "seed=2"])
    assert (cfg.optim.lr, cfg.optim.warmup, cfg.seed) == (0.02, 5, 2)


def test_later_override_wins():
    assert load_config(Sample, overrides=["seed=1", "seed=2"]).seed == 2


def test_override_sets_one_dict_entry(tmp_path):
    cfg = load_config(Sample, write(tmp_path, "mix:\n  caption: 1.0\n"), ["mix.vqa=0.5", "mix.caption=0.25"])
    assert cfg.mix == {"caption": 0.25, "vqa": 0.5}


def test_override_whole_dict_and_section():
    cfg = load_config(Sample, overrides=["mix={a: 1}", "optim={lr: 0.5}"])
    assert cfg.mix == {"a": 1.0}
    assert cfg.optim == Optim(lr=0.5)


def test_override_value_with_equals_sign_and_spaces():
    assert load_config(Sample, overrides=["output_dir=a=b"]).output_dir == "a=b"
    assert load_config(Sample, overrides=[" seed = 7"]).seed == 7


def test_str_field_keeps_text_that_yaml_would_retype():
    assert load_config(Sample, overrides=["output_dir=007"]).output_dir == "007"
    assert load_config(Sample, overrides=["resume=true"]).resume == "true"
    assert load_config(Sample, overrides=["resume=ckpt/last"]).resume == "ckpt/last"


@pytest.mark.parametrize(
    "text, value", [("5e-5", 5e-5), ("1e-3", 1e-3), ("1E3", 1000.0), ("-2.5e+1", -25.0), ("3", 3.0)]
)
def test_float_spellings(text, value):
    lr = load_config(Sample, overrides=[f"optim.lr={text}"]).optim.lr
    assert lr == value and type(lr) is float


def test_float_spelling_in_yaml_and_int_to_float(tmp_path):
    cfg = load_config(Sample, write(tmp_path, "optim:\n  lr: 5e-5\n  betas: [1, 0.5]\n"))
    assert cfg.optim.lr == 5e-5
    assert cfg.optim.betas == (1.0, 0.5) and type(cfg.optim.betas[0]) is float


def test_lists_become_tuples(tmp_path):
    cfg = load_config(Sample, write(tmp_path, "sizes: [3, 4, 5]\ntags: [a, b]\n"))
    assert cfg.sizes == (3, 4, 5) and isinstance(cfg.sizes, tuple)
    assert cfg.tags == ["a", "b"]


def test_optional_section():
    cfg = load_config(Sample, overrides=["lora.rank=16"])
    assert cfg.lora == Lora(rank=16)
    assert load_config(Sample, overrides=["lora={}"]).lora == Lora()
    assert load_config(Sample, overrides=["lora={rank: 4}", "lora=null"]).lora is None


def test_optional_scalar():
    assert load_config(Sample, overrides=["max_len=null"]).max_len is None
    assert load_config(Sample, overrides=["max_len=64"]).max_len == 64


# --- errors --------------------------------------------------------------------------------------------


def test_config_error_is_user_facing():
    assert issubclass(ConfigError, MMAlignError) and issubclass(MMAlignError, Exception)


def test_unknown_key_in_yaml_suggests(tmp_path):
    path = write(tmp_path, "optim:\n  lrr: 0.1\n")
    assert error(path) == f"unknown key 'optim.lrr' in {path} (did you mean 'optim.lr'?)"


def test_unknown_key_on_command_line_suggests():
    message = error(overrides=["optim.lrr=0.1"])
    assert message == "unknown key 'optim.lrr' on the command line (did you mean 'optim.lr'?)"


def test_unknown_top_level_key_suggests():
    assert "(did you mean 'family'?)" in error(overrides=["famly=llava"])
    message = error(overrides=["optimm.lr=1"])  # the full dotted key is matched, so the leaf counts too
    assert message == "unknown key 'optimm.lr' on the command line (did you mean 'optim.lr'?)"


def test_unknown_key_without_close_match_lists_section_keys():
    message = error(overrides=["optim.zzzzzzzz=1"])
    assert message == "unknown key 'optim.zzzzzzzz' on the command line (valid keys in 'optim': lr, betas, warmup)"
    assert "valid keys: optim, output_dir, mix" in error(overrides=["qqqqqqqq=1"])


def test_dotted_key_into_scalar_is_unknown():
    assert "unknown key 'seed.value'" in error(overrides=["seed.value=1"])
    assert "unknown key 'mix.a.b'" in error(overrides=["mix.a.b=1"])


def test_wrong_type_message():
    assert error(overrides=["optim.lr=abc"]) == "key 'optim.lr' expects float, got str 'abc' (command line)"


def test_wrong_type_names_file(tmp_path):
    path = write(tmp_path, "optim:\n  warmup: 1.5\n")
    assert error(path) == f"key 'optim.warmup' expects int, got float 1.5 ({path})"


@pytest.mark.parametrize("yaml_text", ["bf16: 1\n", "bf16: 'yes'\n", "bf16: 'true'\n", "bf16: null\n"])
def test_bool_is_strict(tmp_path, yaml_text):
    assert "key 'bf16' expects bool" in error(write(tmp_path, yaml_text))


def test_bool_is_not_int():
    assert error(overrides=["seed=true"]) == "key 'seed' expects int, got bool True (command line)"
    assert "expects float, got bool" in error(overrides=["optim.lr=true"])


def test_literal():
    assert load_config(Sample, overrides=["family=qwen2_vl"]).family == "qwen2_vl"
    message = error(overrides=["family=gpt"])
    assert message == "key 'family' expects one of 'llava', 'qwen2_vl', 'idefics3', got str 'gpt' (command line)"


def test_fixed_tuple_length_and_item_types():
    assert "key 'optim.betas' expects tuple[float, float], got list [0.9]" in error(overrides=["optim.betas=[0.9]"])
    assert "key 'optim.betas' expects tuple[float, float]" in error(overrides=["optim.betas=[0.9, x]"])
    assert "key 'optim.betas'" in error(overrides=["optim.betas=0.9"])


def test_variable_tuple_and_list_item_types():
    assert "key 'sizes' expects tuple[int, ...]" in error(overrides=["sizes=[1, 2.5]"])
    assert "key 'tags' expects list[str]" in error(overrides=["tags=a"])


def test_dict_field_value_types(tmp_path):
    assert "key 'mix' expects dict[str, float]" in error(write(tmp_path, "mix:\n  caption: lots\n"))
    assert error(overrides=["mix.vqa=lots"]) == "key 'mix.vqa' expects float, got str 'lots' (command line)"
    assert "key 'mix' expects dict[str, float], got list" in error(overrides=["mix=[1, 2]"])


def test_optional_type_message():
    assert error(overrides=["max_len=big"]) == "key 'max_len' expects int or null, got str 'big' (command line)"


def test_section_must_be_mapping(tmp_path):
    path = write(tmp_path, "optim: 3\n")
    assert error(path) == f"key 'optim' expects a section (mapping), got int 3 ({path})"
    assert "key 'optim' expects a section (mapping), got null" in error(overrides=["optim=null"])


def test_malformed_override():
    message = error(overrides=["optim.lr"])
    assert "'optim.lr'" in message and "key=value" in message and "command line" in message
    assert "'=3'" in error(overrides=["=3"])


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    assert error(path) == f"config file not found: {path}"


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = write(tmp_path, "seed: 1\noptim:\n  lr: [1, 2\nfamily: llava\n")
    message = error(path)
    assert message.startswith(f"invalid YAML in {path} line ")
    assert "line 4" in message or "line 5" in message


def test_yaml_top_level_must_be_mapping(tmp_path):
    path = write(tmp_path, "- 1\n- 2\n")
    assert error(path) == f"config file {path} must contain a mapping at top level, got list"


# --- output --------------------------------------------------------------------------------------------


def test_to_dict_converts_tuples_and_keeps_order():
    d = to_dict(Sample())
    assert list(d) == ["optim", "output_dir", "mix", "seed", "resume", "family", "bf16", "tags", "sizes",
                       "lora", "max_len"]
    assert d["optim"] == {"lr": 1e-3, "betas": [0.9, 0.98], "warmup": 10}
    assert d["sizes"] == [1, 2] and d["lora"] is None


def test_to_yaml_keeps_declared_order():
    text = to_yaml(Sample())
    top = [line.split(":")[0] for line in text.splitlines() if line and not line.startswith(" ")]
    assert top == list(to_dict(Sample()))


def test_to_yaml_round_trip(tmp_path):
    cfg = load_config(Sample, overrides=["optim.lr=5e-5", "mix.grounding=0.125", "resume=ckpt/7",
                                         "family=idefics3", "tags=[x, 'y z']", "lora.rank=2", "max_len=null",
                                         "output_dir=007", "bf16=false"])
    path = write(tmp_path, to_yaml(cfg), "shown.yaml")
    assert load_config(Sample, path) == cfg
    assert load_config(Sample, write(tmp_path, to_yaml(Sample()), "defaults.yaml")) == Sample()

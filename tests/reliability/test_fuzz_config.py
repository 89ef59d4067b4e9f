"""Property-based fuzzing of the config loader: random YAML text, random values under real keys, and random
command-line overrides load or fail with a ``ConfigError`` naming the file (or "command line") and the key, or
for checks across fields, the section and field;
YAML is read with the safe loader, so a Python tag is refused, not run."""
from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mmalign.config import _valid_keys, load_config
from mmalign.errors import ConfigError
from mmalign.train.preference import PreferenceConfig
from mmalign.train.sft import SFTConfig

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
CLASSES = [PreferenceConfig, SFTConfig]
VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**6), st.floats(allow_nan=True),
                   st.text(max_size=8), st.lists(st.integers(-1, 3), max_size=3),
                   st.dictionaries(st.text(max_size=4), st.integers(), max_size=2))


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield Path(d)


def _load_or_refuse(cls, path: Path | None, overrides: list[str], keys: list[str]) -> None:
    try:
        load_config(cls, path, overrides)
    except ConfigError as e:
        message = str(e)
        source_named = (path is not None and str(path) in message) or "command line" in message
        # checks across fields (a section's validate()) name the section and the field, not the source
        assert source_named or any(part in message for k in keys for part in k.split(".")[-2:]), message


@SETTINGS
@given(text=st.text(max_size=80))
def test_random_yaml_text(folder, text):
    path = folder / "random.yaml"
    path.write_text(text, encoding="utf-8", errors="surrogatepass")
    _load_or_refuse(PreferenceConfig, path, [], [])


@SETTINGS
@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_random_values_under_real_keys(folder, cls, data):
    keys = data.draw(st.lists(st.sampled_from(_valid_keys(cls)), min_size=1, max_size=3, unique=True))
    mapping = {k: data.draw(VALUES) for k in keys}
    path = folder / "values.yaml"
    path.write_text(yaml.safe_dump(mapping, allow_unicode=True))
    _load_or_refuse(cls, path, [], keys)


@SETTINGS
@given(cls=st.sampled_from(CLASSES), data=st.data())
def test_random_overrides(cls, data):
    key = st.sampled_from(_valid_keys(cls)) | st.text(max_size=12)
    raw = st.text(max_size=12) | VALUES.map(lambda v: yaml.safe_dump(v, default_flow_style=True).strip())
    overrides = data.draw(st.lists(st.tuples(key, raw).map("=".join) | st.text(max_size=10), max_size=3))
    _load_or_refuse(cls, None, overrides, [o.partition("=")[0] for o in overrides])


def test_python_tags_are_refused_not_run(folder):
    path = folder / "evil.yaml"
    marker = folder / "ran"
    path.write_text(f"train:\n  output_dir: !!python/object/apply:os.system ['touch {marker}']\n")
    with pytest.raises(ConfigError, match=f"invalid YAML in {path} line 2"):
        load_config(PreferenceConfig, path)
    assert not marker.exists()
    tag = "!!python/object/apply:os.getcwd []"         # on the command line, a tag is only text
    assert load_config(PreferenceConfig, None, [f"train.output_dir={tag}"]).train.output_dir == tag

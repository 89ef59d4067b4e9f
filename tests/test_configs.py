"""Every YAML under configs/ (recursively) loads into its command's config: configs/<command>/*.yaml for the
stage commands, configs/<method>.yaml for preference methods, one per registry entry."""
from pathlib import Path

import pytest

from mmalign.cli import _commands
from mmalign.config import load_config
from mmalign.losses import PREFERENCE_LOSSES
from mmalign.train.preference import PreferenceConfig

ROOT = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(p for p in ROOT.rglob("*.yaml") if "accelerate" not in p.parts)


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads(path):
    if path.parent == ROOT:
        cfg = load_config(PreferenceConfig, path)
        assert cfg.loss.name == path.stem          # configs/<method>.yaml trains <method>
    else:
        load_config(_commands()[path.parent.name][0], path)


def test_every_preference_method_has_a_config():
    assert {p.stem for p in ROOT.glob("*.yaml")} == set(PREFERENCE_LOSSES)

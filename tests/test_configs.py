"""Every YAML under configs/ (recursively) loads into its command's config without error."""
from pathlib import Path

import pytest

from mmalign.cli import _commands
from mmalign.config import load_config

ROOT = Path(__file__).resolve().parents[1] / "configs"
FILES = sorted(p for p in ROOT.rglob("*.yaml") if "accelerate" not in p.parts)


def command_of(path: Path) -> str:
    return path.stem.split("_")[0]


def test_there_are_configs():
    assert len(FILES) >= 4


@pytest.mark.parametrize("path", FILES, ids=lambda p: str(p.relative_to(ROOT)))
def test_config_loads(path):
    cls = _commands()[command_of(path)][0]
    load_config(cls, path)

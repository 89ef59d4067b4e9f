"""User-facing errors. The CLI prints ``error: <message>`` and exits 2 for these; anything else is a bug."""
from __future__ import annotations


class MMAlignError(Exception):
    """Base of every error caused by the user's input: a bad config, a missing file, a bad record."""


class ConfigError(MMAlignError):
    """A config file or command-line override is invalid."""

"""``mmalign judge``: one question (text and images) to a judge, its reply and parsed label printed as JSON.

For checking an endpoint, its key and the cache before a labelling run, and for trying a judge prompt by hand.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmalign.errors import ConfigError, MMAlignError
from mmalign.judge.client import JudgeClient, JudgeConfig
from mmalign.judge.parse import PARSERS, ParseTally


@dataclass
class JudgeAskConfig:
    judge: JudgeConfig = field(default_factory=JudgeConfig)
    prompt: str = ""
    images: list[str] = field(default_factory=list)  # image files, sent before the prompt
    parse: str = ""                                  # rating | preference | yes_no; empty: the text only

    def validate(self) -> None:
        if self.parse and self.parse not in PARSERS:
            raise ConfigError(f"unknown parse {self.parse!r} (known: {', '.join(PARSERS)})")


def ask_judge(cfg: JudgeAskConfig) -> dict:
    """The judgement as a dict, with ``parsed`` and the tally when ``cfg.parse`` names a parser."""
    cfg.validate()
    if not cfg.prompt:
        raise ConfigError("prompt is empty: give the question to ask (prompt=...)")
    for path in cfg.images:
        if not Path(path).is_file():
            raise MMAlignError(f"image file not found: {path}")
    judgement = JudgeClient(cfg.judge).ask(cfg.prompt, cfg.images)
    out = judgement.to_dict()
    if cfg.parse:
        tally = ParseTally()
        out["parsed"] = tally.parse(PARSERS[cfg.parse], judgement.text)
        out["parse"] = {"parser": cfg.parse, **tally.to_dict()}
    return out

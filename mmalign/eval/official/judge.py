"""LLM judges for the judged benchmarks (MMHal-Bench, Object HalBench, HallusionBench, LLaVA-Bench-in-the-Wild,
MM-AlignBench).

A judge is any callable ``fn(messages) -> str``; ``messages`` is a chat list of
``{"role": "system" | "user", "content": str}``, plus ``"images": [...]`` (the benchmark's image field, e.g. a
path or base64 string) on a message the official judge sees with an image. Wrapping it in ``Judge`` attaches the
id and the settings (temperature, max tokens, ...) that every judged score records, because judged numbers are
only comparable under the same judge (EVALUATION.md §1, §5). Nothing here talks to a network: the caller's
``fn`` does, or, in tests, a plain Python function does.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from mmalign.errors import MMAlignError


@dataclass(frozen=True)
class Judge:
    fn: Callable[[list[dict]], str]
    judge_id: str
    settings: dict = field(default_factory=dict)


def ask(judge: Judge, messages: list[dict], parse: Callable[[str], object], tries: int = 1) -> dict:
    """Call the judge until ``parse(output)`` is not None, at most ``tries`` times.

    Returns the row fields of a judged score: ``judge_output`` (the last raw output), ``parsed`` (None when every
    try failed), ``parse_failed``, ``judge_calls``, ``judge_id`` and ``judge_settings``.
    """
    if not isinstance(judge, Judge):
        raise MMAlignError("this benchmark needs a judge: pass Judge(fn, judge_id, settings)")
    for call in range(1, tries + 1):
        output = judge.fn(messages)
        parsed = parse(output)
        if parsed is not None:
            break
    return {"judge_output": output, "parsed": parsed, "parse_failed": parsed is None, "judge_calls": call,
            "judge_id": judge.judge_id, "judge_settings": dict(judge.settings)}


def judge_summary(rows: list[dict]) -> dict:
    """The judge block every judged aggregate carries: id, settings and the number of parse failures.

    Rows scored without a judge call (e.g. Object HalBench's answers of three words or fewer) carry no judge id
    and are skipped; rows from two different judges (or settings) are an error, since their scores do not mix.
    """
    judged = [r for r in rows if "judge_id" in r]
    judges = {(r["judge_id"], repr(sorted(r["judge_settings"].items()))) for r in judged}
    if len(judges) > 1:
        raise MMAlignError(f"rows were scored by different judges or settings: {sorted(judges)}")
    first = judged[0] if judged else {"judge_id": None, "judge_settings": {}}
    return {"judge": {"id": first["judge_id"], "settings": first["judge_settings"]},
            "n_judged": len(judged), "n_parse_failures": sum(r["parse_failed"] for r in judged)}

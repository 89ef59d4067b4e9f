"""What a scorer returns."""
from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Scores:
    """One score per response (higher is better; NaN where the scorer could not score it, e.g. a judge reply
    that did not parse) and, optionally, one dict of details per response."""
    values: list[float]
    details: list[dict] = field(default_factory=list)

    @classmethod
    def of(cls, result: Scores | list[float]) -> Scores:
        """A scorer's result as ``Scores``: plain callables may return the list of floats alone."""
        return result if isinstance(result, Scores) else cls([float(v) for v in result])

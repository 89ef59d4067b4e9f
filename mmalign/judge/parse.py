"""Reading labels out of a judge's free text: a rating, an A/B/tie preference, a yes/no.

A parser returns None when the reply does not say one thing clearly (no number, two different verdicts, a rating
out of range); it never guesses. :class:`ParseTally` counts successes and failures and keeps the unreadable
replies, so a run reports how many labels it lost to parsing instead of dropping them silently.
"""
from __future__ import annotations

import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field

_NUMBER = r"-?\d+(?:\.\d+)?"
# "Rating: 7", "score of 7", "**Score**: 7/10", MT-bench's "[[7]]": an announced rating wins over other numbers
_ANNOUNCED = re.compile(rf"(?i:rating|score|grade)\W*(?:(?i:is|of)\W+)?({_NUMBER})|\[\[({_NUMBER})\]\]")
_DENOMINATOR = re.compile(rf"(?:/|\bout of)\s*{_NUMBER}", re.IGNORECASE)

_WHO = r"(?:(?i:response|answer|output|assistant|option|model)\W*)"
_VERDICTS = [
    re.compile(r"\[\[(A|B|C|tie)\]\]"),  # MT-bench pairwise; [[C]] is its tie
    re.compile(rf"^\W*{_WHO}?\(?([AB])\)?\W*$"),  # the whole reply is the letter
    re.compile(rf"\b{_WHO}?\(?([AB])\)?\s+(?i:is|was)\s+(?i:better|preferred|best|the better|the winner)"),
    re.compile(rf"(?i:prefer|preference|winner|verdict|choice|better one|better response|final answer)\W+"
               rf"(?:(?i:is)\W+)?{_WHO}?\(?([AB])\b"),
]
_TIE = re.compile(r"\b(?:tie|equally (?:good|bad|helpful)|both are equal|neither is better|no preference)\b",
                  re.IGNORECASE)


def parse_rating(text: str, low: float = 1, high: float = 10) -> int | float | None:
    """The rating in ``[low, high]`` the reply gives: the last announced one ("Rating: 7", "[[7]]", "7/10" counts as
    7), else the only number in it. None when there is none, several disagree, or it is out of range."""
    announced = [a or b for a, b in _ANNOUNCED.findall(text)]
    if announced:
        value = float(announced[-1])
    else:
        numbers = {float(n) for n in re.findall(rf"(?<![\w.]){_NUMBER}(?!\w|\.\d)", _DENOMINATOR.sub(" ", text))}
        if len(numbers) != 1:
            return None
        value = numbers.pop()
    if not low <= value <= high:
        return None
    return int(value) if value.is_integer() else value


def parse_preference(text: str) -> str | None:
    """``"A"``, ``"B"`` or ``"tie"``: MT-bench's ``[[A]]``/``[[B]]``/``[[C]]``, a bare letter, "Response A is
    better", "I prefer B", "tie"/"equally good". None when nothing is said, or A, B and tie are not one verdict."""
    said = {("tie" if v in ("C", "tie") else v) for pattern in _VERDICTS for v in pattern.findall(text.strip())}
    if _TIE.search(text):
        said.add("tie")
    return said.pop() if len(said) == 1 else None


def parse_yes_no(text: str) -> bool | None:
    """True for yes, False for no: the reply's first word if it is one, else the one of the two it uses.
    None when it uses neither, or both after a first word that is neither."""
    words = re.findall(r"[a-z]+", text.lower())
    if words and words[0] in ("yes", "no"):
        return words[0] == "yes"
    said = {w for w in words if w in ("yes", "no")}
    return said.pop() == "yes" if len(said) == 1 else None


PARSERS: dict[str, Callable[[str], object]] = {
    "rating": parse_rating, "preference": parse_preference, "yes_no": parse_yes_no,
}


@dataclass
class ParseTally:
    """How many replies parsed and how many did not, with the first ``keep`` unreadable ones. Thread-safe."""
    keep: int = 20
    ok: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def parse(self, parser: Callable[..., object], text: str, **kwargs):
        """``parser(text, **kwargs)``, counted; None (a failure, recorded) when the parser could not read it."""
        value = parser(text, **kwargs)
        with self._lock:
            if value is None:
                self.failed += 1
                if len(self.failures) < self.keep:
                    self.failures.append(text)
            else:
                self.ok += 1
        return value

    def to_dict(self) -> dict:
        return {"ok": self.ok, "failed": self.failed, "failures": list(self.failures)}

"""The objects a lab response mentions, with the colour written before each: the claims every scorer checks."""
from __future__ import annotations

import re

from mmalign.world import language as L
from mmalign.world.scoring import WORD_TO_CATEGORY

_WORD = re.compile(r"[a-z0-9]+")


def object_mentions(text: str) -> list[tuple[str | None, str]]:
    """``(colour or None, category)`` per mention, in order: the categories ``scoring.mentioned_objects`` finds
    (synonyms and plurals mapped back), each with the word before it when that word is a colour."""
    words = _WORD.findall(text.lower())
    return [(words[k - 1] if k and words[k - 1] in L.ALL_COLOURS else None, WORD_TO_CATEGORY[w])
            for k, w in enumerate(words) if w in WORD_TO_CATEGORY]


def claim_text(colour: str | None, category: str) -> str:
    """The atomic claim of one mention, as RLAIF-V's divide step writes it: "there is a red circle"."""
    return f"there is a {colour} {category}" if colour else f"there is a {category}"

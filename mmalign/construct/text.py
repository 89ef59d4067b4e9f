"""Text-side negatives: hallucinations written into a correct answer, keeping its style (POVID, HA-DPO).

POVID (Zhou et al. 2024, ALGORITHMS.md §4.5) has GPT-4V inject co-occurring objects, attribute and logic errors into
the ground-truth answer; HA-DPO (§4.2) has GPT-4 rewrite so that chosen and rejected differ only in the hallucinated
content. On the lab both are exact and need no model: a caption is a list of object phrases ("a red circle"), so
``inject`` rewrites one phrase, renders the list with the world's own phrasing (``language.caption_text``) and
knows the character offsets of what changed (DDPO's corrected spans, §4.1). On real data a ``Rewriter`` (any
callable text -> text, e.g. a judge model told to inject one error) is plugged into ``rewrite_negative``, and the
spans come from a word-level diff.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from mmalign.data.preference import PreferenceRecord
from mmalign.world import language as L
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import world_stats

_PHRASE = re.compile(r"\ba ([a-z]+) ([a-z]+)\b")


@dataclass(frozen=True)
class Phrase:
    colour: str
    category: str
    start: int
    end: int


@dataclass(frozen=True)
class Injection:
    """A rewritten caption. ``spans``: offsets in ``text`` of the phrase that is now wrong (the rejected side's
    corrected span); ``source_spans``: offsets in the original of the phrase it replaced or dropped (the chosen
    side's). ``change`` names the object: ``{"category", "colour"}`` as written, ``"was"`` for a replaced one."""
    text: str
    spans: list[list[int]]
    source_spans: list[list[int]]
    kind: str
    change: dict


def parse_caption(text: str) -> list[Phrase]:
    """The object phrases of a lab caption, in order; ``ValueError`` if ``text`` is not one (every phrase
    "a <colour> <category>" of the language, joined exactly as ``language.caption_text`` joins them)."""
    phrases = [Phrase(m[1], m[2], m.start(), m.end()) for m in _PHRASE.finditer(text)]
    unknown = [f"{p.colour} {p.category}" for p in phrases
               if p.colour not in L.ALL_COLOURS or p.category not in L.ALL_CATEGORIES]
    if not phrases or unknown or L.caption_text([(p.colour, p.category) for p in phrases]) != text:
        raise ValueError(f"not a lab caption: {text!r}")
    return phrases


# ---- one rewrite per kind: (world, objects, rng) -> (new objects, changed index in new, in old) or None ----------

def _cooccurring(world: WorldConfig, objs: list, rng: np.random.Generator) -> str | None:
    """An absent category drawn in proportion to its co-occurrence with the caption's objects in the world's
    scenes (overall frequency where it never co-occurs): the object a language prior would add."""
    present = {c for _, c in objs}
    absent = [c for c in world.categories if c not in present]
    if not absent:
        return None
    freq, co = world_stats(world)
    w = np.array([sum(co[p][c] for p in present) for c in absent], dtype=float)
    w = w if w.sum() > 0 else np.array([freq[c] for c in absent], dtype=float)
    return absent[int(rng.choice(len(absent), p=w / w.sum()))]


def _canonical(objs: list) -> list:
    return sorted(objs, key=lambda o: L.ALL_CATEGORIES.index(o[1]))  # stable: equal categories keep their order


def _insert(world, objs, rng):
    category = _cooccurring(world, objs, rng)
    if category is None:
        return None
    new = (world.colours[int(rng.integers(len(world.colours)))], category)
    out = _canonical(objs + [new])
    return out, out.index(new), None


def _replace(world, objs, rng):
    i = int(rng.integers(len(objs)))
    category = _cooccurring(world, objs, rng)
    if category is None:
        return None
    new = (objs[i][0], category)  # the colour stays: only the object is wrong
    out = _canonical(objs[:i] + objs[i + 1:] + [new])
    return out, out.index(new), i


def _colour(world, objs, rng):
    i = int(rng.integers(len(objs)))
    others = [c for c in world.colours if c != objs[i][0]]
    if not others:
        return None
    out = list(objs)
    out[i] = (others[int(rng.integers(len(others)))], objs[i][1])
    return out, i, i


def _count(world, objs, rng):
    i = int(rng.integers(len(objs)))
    new = (world.colours[int(rng.integers(len(world.colours)))], objs[i][1])
    return objs[:i + 1] + [new] + objs[i + 1:], i + 1, None  # right after its namesake: still canonical order


def _drop(world, objs, rng):
    if len(objs) < 2:
        return None
    i = int(rng.integers(len(objs)))
    return objs[:i] + objs[i + 1:], None, i


# insert/replace: an absent co-occurring object; colour: a wrong attribute; count: one object too many;
# drop: one object too few (an omission, not a hallucination, for length balance)
INJECTIONS = {"insert": _insert, "replace": _replace, "colour": _colour, "count": _count, "drop": _drop}


def inject(world: WorldConfig, caption: str, kind: str, rng: np.random.Generator) -> Injection | None:
    """``caption`` (a lab caption, taken as the truth) with one error of ``kind`` (a key of ``INJECTIONS``),
    phrased as the world phrases captions; None where the kind does not apply (nothing absent to insert or
    replace with, one object left to drop, one colour in the world)."""
    if kind not in INJECTIONS:
        raise ValueError(f"unknown injection {kind!r} (known: {', '.join(INJECTIONS)})")
    phrases = parse_caption(caption)
    objs = [(p.colour, p.category) for p in phrases]
    result = INJECTIONS[kind](world, objs, rng)
    if result is None:
        return None
    new, at_new, at_old = result
    text = L.caption_text(new)
    written = parse_caption(text)
    spans = [] if at_new is None else [[written[at_new].start, written[at_new].end]]
    source = [] if at_old is None else [[phrases[at_old].start, phrases[at_old].end]]
    colour, category = new[at_new] if at_new is not None else objs[at_old]
    change = {"category": category, "colour": colour}
    if kind == "replace":
        change["was"] = objs[at_old][1]
    return Injection(text, spans, source, kind, change)


def inject_negative(world: WorldConfig, record: PreferenceRecord, kind: str,
                    seed: int = 0) -> PreferenceRecord | None:
    """A pair (clean caption, injected caption) from a record whose ``chosen`` is a lab caption, with the
    injection's spans as DDPO's ``chosen_spans``/``rejected_spans``; seeded by ``seed`` and the record's id.
    None where ``kind`` does not apply."""
    inj = inject(world, record.chosen, kind, np.random.default_rng([text_seed(record.id), seed]))
    if inj is None:
        return None
    return _negative(record, inj.text, inj.source_spans, inj.spans, f"inject_{kind}", inj.change)


# ---- any rewriter: a judge or rewriting model on real data ------------------------------------------------------

class Rewriter(Protocol):
    """Rewrites a correct answer into a hallucinated one in the same style (e.g. a judge model prompted as
    POVID prompts GPT-4V); returns the text unchanged when it has nothing to inject."""

    def __call__(self, text: str) -> str: ...


def lab_rewriter(world: WorldConfig, kinds: tuple[str, ...] = ("insert", "replace", "colour", "count"),
                 seed: int = 0) -> Callable[[str], str]:
    """The lab's ``Rewriter``: one injection of a kind drawn from ``kinds`` (the next one where it does not
    apply), seeded by ``seed`` and the text itself, so a text always gets the same rewrite."""
    def rewrite(text: str) -> str:
        rng = np.random.default_rng([text_seed(text), seed])
        for k in rng.permutation(len(kinds)):
            inj = inject(world, text, kinds[int(k)], rng)
            if inj is not None:
                return inj.text
        return text
    return rewrite


REWRITE_PROMPT = (
    "Rewrite the description below so that it contains exactly one hallucination: add an object that is not in the "
    "image but often appears with the objects it names, or change one attribute or count. Keep its wording, length "
    "and style otherwise; reply with the rewritten description only.\n\nDescription: {text}")


def judge_rewriter(chat: Callable[[list[dict]], str], template: str = REWRITE_PROMPT) -> Callable[[str], str]:
    """A ``Rewriter`` backed by a chat model (POVID's and HA-DPO's GPT-4 step on real data): ``chat`` sends
    OpenAI-style messages and returns the reply text, e.g. ``lambda m: JudgeClient(cfg).chat(m).text``. An empty
    reply counts as no rewrite."""
    def rewrite(text: str) -> str:
        reply = chat([{"role": "user", "content": template.format(text=text)}]).strip()
        return reply or text
    return rewrite


def rewrite_negative(record: PreferenceRecord, rewriter: Rewriter) -> PreferenceRecord | None:
    """A pair (``record.chosen``, ``rewriter(record.chosen)``) with the differing words as DDPO spans (see
    ``changed_spans``); None when the rewriter changed nothing."""
    rejected = rewriter(record.chosen)
    if rejected == record.chosen:
        return None
    chosen_spans, rejected_spans = changed_spans(record.chosen, rejected)
    return _negative(record, rejected, chosen_spans, rejected_spans, "rewrite", {})


def changed_spans(original: str, rewritten: str) -> tuple[list[list[int]], list[list[int]]]:
    """Character spans of the words that differ (difflib's opcodes over whitespace-separated words): in
    ``original`` what was replaced or deleted, in ``rewritten`` what replaced or was inserted. A span runs from
    the first changed word's start to the last one's end."""
    wa, wb = _words(original), _words(rewritten)
    matcher = difflib.SequenceMatcher(a=[original[s:e] for s, e in wa], b=[rewritten[s:e] for s, e in wb],
                                      autojunk=False)
    spans_a, spans_b = [], []
    for op, i1, i2, j1, j2 in matcher.get_opcodes():
        if op == "equal":
            continue
        if i2 > i1:
            spans_a.append([wa[i1][0], wa[i2 - 1][1]])
        if j2 > j1:
            spans_b.append([wb[j1][0], wb[j2 - 1][1]])
    return spans_a, spans_b


def _words(text: str) -> list[tuple[int, int]]:
    return [(m.start(), m.end()) for m in re.finditer(r"\S+", text)]


def text_seed(text: str) -> int:
    """A seed from a string (the first 8 bytes of its sha256): stable across runs, unlike ``hash``."""
    return int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")


def _negative(record: PreferenceRecord, rejected: str, chosen_spans: list, rejected_spans: list, how: str,
              change: dict) -> PreferenceRecord:
    return dataclasses.replace(
        record, id=f"{record.id}-{how}", rejected=rejected, chosen_spans=chosen_spans or None,
        rejected_spans=rejected_spans or None, reward_margin=None, scores=None, ref_logps=None,
        meta={**record.meta, "negative": how, **({"change": change} if change else {})})

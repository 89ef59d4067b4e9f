"""``singularize``: the noun singulariser of the official CHAIR code, without the ``pattern`` package.

LisaAnne/Hallucination ``utils/chair.py`` singularises every caption token with ``pattern.en.singularize``
(Python-2 era pattern, ``pattern/text/en/inflect.py`` as of clips/pattern dceb560). This module re-implements
that function's decision procedure and tables so CHAIR's word matching is reproduced offline:

1. ``"x-in-law"``-style compounds (second part a preposition) singularise their first part; ``"dogs'"`` ->
   ``"dog's"``.
2. A word that is a *suffix* of an uninflected or uncountable entry is returned unchanged (pattern tests
   ``entry.endswith(word)``, so "ice" (from "rice"), "ears" (from "shears") and "s" stay as they are).
3. A word ending in an "-ie" entry + "s" is returned lower-cased and **still plural** ("doggies" -> "doggies").
4. A word ending in an irregular plural takes its singular ("women" -> "woman", "people" -> "person").
5. Otherwise the first matching suffix rule applies; the last rule strips a final "s".

What this means for CHAIR (each case is tested): "bus" -> "bu" (so a singular "bus" never counts as a COCO
word, only "buses" does); "glass" -> "glas" (hence the official "wine glas" double word); "ties" -> "ty"
(pattern's "^tie" entry is an anchor that ``endswith`` never matches); "skis" -> "ski"; "sheep", "scissors"
stay; "children" -> "child"; "knives" -> "knife"; "mice" -> "mouse".

Differences from pattern: none in behaviour on lower-case input. Three entries of pattern's tables run together
for lack of a comma ("wildebeest" "carp", "water" "cheese", "zombie" "bogie"); they are kept joined because
the suffix test in step 2 sees them that way. The "^pie" / "^tie" entries are left out (they never match).
"""
from __future__ import annotations

import re

_PREPOSITIONS = frozenset((
    "about", "before", "during", "of", "till", "above", "behind", "except", "off", "to", "across", "below", "for",
    "on", "under", "after", "beneath", "from", "onto", "until", "among", "beside", "in", "out", "unto", "around",
    "besides", "into", "over", "upon", "at", "between", "near", "since", "with", "athwart", "betwixt", "beyond",
    "but", "by"))

_UNINFLECTED = frozenset((
    "bison", "debris", "headquarters", "pincers", "trout", "bream", "diabetes", "herpes", "pliers", "tuna",
    "breeches", "djinn", "high-jinks", "proceedings", "whiting", "britches", "eland", "homework", "rabies",
    "wildebeestcarp", "elk", "innings", "salmon", "chassis", "flounder", "jackanapes", "scissors", "christmas",
    "gallows", "mackerel", "series", "clippers", "georgia", "measles", "shears", "cod", "graffiti", "mews",
    "species", "contretemps", "mumps", "swine", "corps", "news", "swiss"))

_UNCOUNTABLE = frozenset((
    "advice", "equipment", "happiness", "luggage", "news", "software", "bread", "fruit", "information",
    "mathematics", "progress", "understanding", "butter", "furniture", "ketchup", "mayonnaise", "research",
    "watercheese", "garbage", "knowledge", "meat", "rice", "electricity", "gravel", "love", "mustard", "sand"))

_UNCHANGED = _UNINFLECTED | _UNCOUNTABLE

_IE = frozenset((
    "alergie", "cutie", "hoagie", "newbie", "softie", "veggie", "auntie", "doggie", "hottie", "nightie", "sortie",
    "weenie", "beanie", "eyrie", "indie", "oldie", "stoolie", "yuppie", "birdie", "freebie", "junkie", "sweetie",
    "zombiebogie", "goonie", "laddie", "pixie", "techie", "bombie", "groupie", "laramie", "quickie", "collie",
    "hankie", "lingerie", "reverie", "toughie", "cookie", "hippie", "meanie", "rookie", "valkyrie"))

_IRREGULAR = {
    "atlantes": "atlas", "atlases": "atlas", "axes": "axe", "beeves": "beef", "brethren": "brother",
    "children": "child", "corpora": "corpus", "corpuses": "corpus", "ephemerides": "ephemeris", "feet": "foot",
    "ganglia": "ganglion", "geese": "goose", "genera": "genus", "genii": "genie", "graffiti": "graffito",
    "helves": "helve", "kine": "cow", "leaves": "leaf", "loaves": "loaf", "men": "man", "mongooses": "mongoose",
    "monies": "money", "moves": "move", "mythoi": "mythos", "numena": "numen", "occipita": "occiput",
    "octopodes": "octopus", "opera": "opus", "opuses": "opus", "our": "my", "oxen": "ox", "penes": "penis",
    "penises": "penis", "people": "person", "sexes": "sex", "soliloquies": "soliloquy", "teeth": "tooth",
    "testes": "testis", "trilbys": "trilby", "turves": "turf", "zoa": "zoon",
}

# (suffix pattern, replacement), tried in order; the first that matches decides
_RULES = [(re.compile(p), r) for p, r in (
    (r"(?i)(.)ae$", r"\1a"), (r"(?i)(.)itis$", r"\1itis"), (r"(?i)(.)eaux$", r"\1eau"),
    (r"(?i)(quiz)zes$", r"\1"), (r"(?i)(matr)ices$", r"\1ix"), (r"(?i)(ap|vert|ind)ices$", r"\1ex"),
    (r"(?i)^(ox)en", r"\1"), (r"(?i)(alias|status)es$", r"\1"), (r"(?i)([octop|vir])i$", r"\1us"),
    (r"(?i)(cris|ax|test)es$", r"\1is"), (r"(?i)(shoe)s$", r"\1"), (r"(?i)(o)es$", r"\1"),
    (r"(?i)(bus)es$", r"\1"), (r"(?i)([m|l])ice$", r"\1ouse"), (r"(?i)(x|ch|ss|sh)es$", r"\1"),
    (r"(?i)(m)ovies$", r"\1ovie"), (r"(?i)(.)ombies$", r"\1ombie"), (r"(?i)(s)eries$", r"\1eries"),
    (r"(?i)([^aeiouy]|qu)ies$", r"\1y"),
    (r"([aeo]l)ves$", r"\1f"), (r"([^d]ea)ves$", r"\1f"), (r"arves$", "arf"), (r"erves$", "erve"),
    (r"([nlw]i)ves$", r"\1fe"), (r"(?i)([lr])ves$", r"\1f"), (r"([aeo])ves$", r"\1ve"),
    (r"(?i)(sive)s$", r"\1"), (r"(?i)(tive)s$", r"\1"), (r"(?i)(hive)s$", r"\1"), (r"(?i)([^f])ves$", r"\1fe"),
    (r"(?i)(^analy)ses$", r"\1sis"),
    (r"(?i)((a)naly|(b)a|(d)iagno|(p)arenthe|(p)rogno|(s)ynop|(t)he)ses$", r"\1\2sis"),
    (r"(?i)(.)opses$", r"\1opsis"), (r"(?i)(.)yses$", r"\1ysis"), (r"(?i)(h|d|r|o|n|b|cl|p)oses$", r"\1ose"),
    (r"(?i)(fruct|gluc|galact|lact|ket|malt|rib|sacchar|cellul)ose$", r"\1ose"), (r"(?i)(.)oses$", r"\1osis"),
    (r"(?i)([ti])a$", r"\1um"), (r"(?i)(n)ews$", r"\1ews"), (r"(?i)s$", ""),
)]


def singularize(word: str) -> str:
    """pattern.en's ``singularize(word)`` for a noun (see the module docstring for the procedure)."""
    parts = word.split("-")
    if len(parts) > 1 and parts[1] in _PREPOSITIONS:
        return singularize(parts[0]) + "-" + "-".join(parts[1:])
    if word.endswith("'"):
        return singularize(word[:-1]) + "'s"
    w = word.lower()
    if any(entry.endswith(w) for entry in _UNCHANGED):
        return word
    if any(w.endswith(entry + "s") for entry in _IE):
        return w
    for plural, single in _IRREGULAR.items():
        if w.endswith(plural):
            return re.sub("(?i)" + plural + "$", single, word)
    for rule, replacement in _RULES:
        if rule.search(word):
            return rule.sub(replacement, word)
    return word

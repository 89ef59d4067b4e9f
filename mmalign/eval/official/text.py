"""Offline stand-ins for the NLTK calls of the official CHAIR, Object HalBench and AMBER scripts.

``word_tokenize`` replaces ``nltk.word_tokenize`` (Punkt sentence split + Treebank word split). Tokens are runs
of letters/digits that may be joined by "-", "." or "/" inside the run (NLTK keeps "t-shirt", "cat/dog", "3.5"
whole), a clitic "'s"/"'re"/..., or one other character. A period at the end of a run is split off, as Punkt
does for every sentence-final word that is not a known abbreviation. Where it differs from NLTK: abbreviations
("mr." stays one NLTK token), contractions ("don't" gives "don", "'t"; NLTK "do", "n't"), "cannot"/"gonna"
(NLTK splits them) and quote marks (NLTK rewrites " to `` and ''). None of these produce or break a COCO or
AMBER object word.

``lemmatize_noun`` replaces ``WordNetLemmatizer().lemmatize(word)`` (noun). WordNet returns the shortest of the
word and its candidate bases (its exception list, then the suffix substitutions s→, ses→s, ves→f, xes→x, zes→z,
ches→ch, shes→sh, men→man, ies→y) that is a WordNet lemma. Without WordNet we accept a candidate only if it is
in the benchmark's own vocabulary, the only words the official scripts keep afterwards. It differs from WordNet
when WordNet picks a shorter lemma that is outside the vocabulary while a longer candidate is inside it (we
keep a match that WordNet would have dropped), and for irregular plurals missing from the small exception table
below.
"""
from __future__ import annotations

import re

_TOKEN = re.compile(r"[^\W_]+(?:[-./][^\W_]+)*|'[^\W_]+|\S")

# WordNet noun substitutions (nltk WordNetCorpusReader.MORPHOLOGICAL_SUBSTITUTIONS["n"])
_NOUN_SUFFIXES = (("s", ""), ("ses", "s"), ("ves", "f"), ("xes", "x"), ("zes", "z"), ("ches", "ch"),
                  ("shes", "sh"), ("men", "man"), ("ies", "y"))
# the irregular plurals from WordNet's noun.exc that can name an object in an image description
_NOUN_EXCEPTIONS = {
    "children": "child", "feet": "foot", "teeth": "tooth", "geese": "goose", "mice": "mouse", "lice": "louse",
    "oxen": "ox", "knives": "knife", "wives": "wife", "lives": "life", "leaves": "leaf", "loaves": "loaf",
    "calves": "calf", "halves": "half", "wolves": "wolf", "shelves": "shelf", "scarves": "scarf",
    "hooves": "hoof", "dice": "die", "cacti": "cactus", "fungi": "fungus",
}


def word_tokenize(text: str) -> list[str]:
    return _TOKEN.findall(text)


def lemmatize_noun(word: str, vocabulary) -> str:
    """WordNet's noun lemma of ``word`` restricted to ``vocabulary`` (see the module docstring)."""
    candidates = [word]
    if word in _NOUN_EXCEPTIONS:
        candidates.append(_NOUN_EXCEPTIONS[word])
    candidates += [word[: len(word) - len(old)] + new for old, new in _NOUN_SUFFIXES if word.endswith(old)]
    known = [c for c in candidates if c in vocabulary]
    return min(known, key=len) if known else word

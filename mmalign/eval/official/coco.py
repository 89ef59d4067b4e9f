"""COCO object words for the CHAIR family: synonym tables, the caption-to-objects routine and the ground-truth
objects of an image from the COCO 2014 annotation files.

``caption_to_words`` follows LisaAnne/Hallucination ``utils/chair.py``:
  1. lower-case and tokenize (``text.word_tokenize``), normalize every token (CHAIR: ``singularize``;
     Object HalBench: WordNet noun lemmas);
  2. merge two-word phrases left to right, greedily: a bigram in the double-word table becomes its mapped
     word and both tokens are consumed;
  3. if both "toilet" and "seat" occur, drop every "seat" (a toilet seat is not a chair);
  4. keep the tokens that are synonyms and pair each with its node word; duplicates are kept.
Ground truth of an image = node words of its instance categories ∪ node words of its reference captions,
read from ``instances_<split>2014.json`` and ``captions_<split>2014.json`` (train and/or val).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mmalign.data.records import raise_problems
from mmalign.errors import MMAlignError
from mmalign.eval.official.coco_synonyms import CHAIR_SYNONYMS, REFINED_SYNONYMS
from mmalign.eval.official.files import field_problems, read_json
from mmalign.eval.official.text import word_tokenize

_CHAIR_DOUBLE_WORDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal", "stop light",
    "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball", "baseball bat", "baseball glove",
    "tennis racket", "wine glass", "hot dog", "cell phone", "mobile phone", "teddy bear", "hair drier",
    "potted plant", "bow tie", "laptop computer", "stove top oven", "home plate")
_ANIMALS = ("bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub")


@dataclass(frozen=True)
class Vocab:
    node: dict[str, str]            # every synonym -> its COCO class
    double_words: dict[str, str]    # "w1 w2" -> the single word it is read as


def _node_table(text: str, strip: bool) -> dict[str, str]:
    table = {}
    for line in text.splitlines():
        entries = line.strip().split(", ")
        entries = [e.strip() for e in entries] if strip else entries
        table.update({e: entries[0] for e in entries})
    return table


def _qualified(doubles: list[str]) -> dict[str, str]:
    table = {d: d for d in doubles}
    # "baby bird" must not fire "person" (baby); "passenger jet" must not either
    table.update({f"{q} {a}": a for a in _ANIMALS for q in ("baby", "adult")})
    table.update({f"passenger {v}": v for v in ("jet", "train")})
    table.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return table


def chair_vocab() -> Vocab:
    """LisaAnne's CHAIR: ``synonyms.txt`` split on ", " unstripped, and its fixed double-word list."""
    return Vocab(_node_table(CHAIR_SYNONYMS, strip=False), _qualified(list(_CHAIR_DOUBLE_WORDS)))


def refined_vocab() -> Vocab:
    """RLAIF-V's Object HalBench: ``synonyms_refine.txt`` stripped; double words = every multi-word synonym plus
    "home plate" and "train track"."""
    node = _node_table(REFINED_SYNONYMS, strip=True)
    return Vocab(node, _qualified([w for w in node if " " in w] + ["home plate", "train track"]))


def lemma_vocabulary(vocab: Vocab) -> frozenset[str]:
    """Every synonym and every word of a double word: what a WordNet-like lemmatizer must be able to reach
    (``glasses`` -> ``glass`` for "wine glass")."""
    return frozenset(vocab.node) | {w for phrase in vocab.double_words for w in phrase.split(" ")}


def caption_to_words(caption: str, vocab: Vocab, normalize: Callable[[str], str]) -> list[tuple[str, str]]:
    """(word, node word) for every COCO object mention of ``caption``, in order (see the module docstring)."""
    words = [normalize(w) for w in word_tokenize(caption.lower())]
    merged, i = [], 0
    while i < len(words):
        pair = " ".join(words[i:i + 2])
        if pair in vocab.double_words:
            merged.append(vocab.double_words[pair])
            i += 2
        else:
            merged.append(words[i])
            i += 1
    if "toilet" in merged and "seat" in merged:
        merged = [w for w in merged if w != "seat"]
    return [(w, vocab.node[w]) for w in merged if w in vocab.node]


def annotation_files(coco_dir: str | Path) -> list[tuple[Path, Path]]:
    """(instances, captions) file pairs for the 2014 splits present in ``coco_dir``; each instances file needs
    its captions file, since the official ground truth uses both."""
    coco_dir = Path(coco_dir)
    pairs = [(coco_dir / f"instances_{s}2014.json", coco_dir / f"captions_{s}2014.json") for s in ("train", "val")]
    pairs = [(i, c) for i, c in pairs if i.exists()]
    if not pairs:
        raise MMAlignError(f"no COCO instance file in {coco_dir} (expected instances_val2014.json and/or "
                           "instances_train2014.json, each with its captions_<split>2014.json)")
    return pairs


def ground_truth(coco_dir: str | Path, vocab: Vocab, normalize: Callable[[str], str],
                 image_ids: set[int] | None = None) -> dict[int, dict]:
    """``{image_id: {"image": file name, "objects": set of node words}}`` for the images of the annotation files
    (see ``annotation_files``), or only for ``image_ids`` (tokenizing a million captions takes minutes)."""
    out: dict[int, dict] = {}
    for instances_path, captions_path in annotation_files(coco_dir):
        instances = _checked_json(instances_path, {"images": {"id": int, "file_name": str},
                                                   "annotations": {"image_id": int, "category_id": int},
                                                   "categories": {"id": int, "name": str}})
        captions = _checked_json(captions_path, {"annotations": {"image_id": int, "caption": str}})
        out.update({im["id"]: {"image": im["file_name"], "objects": set()} for im in instances["images"]
                    if image_ids is None or im["id"] in image_ids})
        nodes = _category_nodes(instances, vocab, instances_path)
        for ann in instances["annotations"]:
            if ann["image_id"] in out:
                out[ann["image_id"]]["objects"].add(nodes[ann["category_id"]])
        for ann in captions["annotations"]:
            if ann["image_id"] in out:
                out[ann["image_id"]]["objects"].update(n for _, n in caption_to_words(ann["caption"], vocab,
                                                                                      normalize))
    return out


def _category_nodes(instances: dict, vocab: Vocab, path: Path) -> dict[int, str]:
    nodes = {c["id"]: vocab.node.get(c["name"]) for c in instances["categories"]}
    problems = [f"{path}: categories: '{c['name']}' is not a COCO class of the synonym list"
                for c in instances["categories"] if nodes[c["id"]] is None]
    problems += [f"{path}: annotations[{i}]: field 'category_id': {a['category_id']} is not in categories"
                 for i, a in enumerate(instances["annotations"]) if a["category_id"] not in nodes]
    raise_problems(problems, [instances], path)
    return nodes


def _checked_json(path: Path, lists: dict[str, dict]) -> dict:
    data = read_json(path)
    if not isinstance(data, dict):
        raise MMAlignError(f"{path}: expected a JSON object with keys {sorted(lists)}")
    problems = [f"{path}: key '{key}': missing or not a list" for key in lists
                if not isinstance(data.get(key), list)]
    for key, fields in lists.items():
        for i, rec in enumerate(data.get(key) or []):
            problems += [f"{path}: {key}[{i}]: {p}" for p in field_problems(rec, fields)]
    raise_problems(problems, [data], path)
    return data

"""ms-swift's preference format (ms-swift ``docs/source_en/Customization/Custom-dataset.md``, "RLHF" and
"Multimodal"; MM-RLHF's ``scripts/convert_to_swift.py`` targets it).

Schema: ``messages``, ``{"role", "content"}`` turns ending with the assistant's chosen answer, where each
``<image>`` in a content string marks the next image; ``rejected_response``, the rejected answer; ``images``, a
list of paths or URLs (or one). As ms-swift's ``Template._add_default_tags`` does, images without an ``<image>``
tag go in front of the first non-system message. ``videos``, ``audios``, ``tools``, ``objects`` and any other
column travel in ``meta``. Rows that give ``rejected_messages``/``rejected_images`` instead of
``rejected_response`` (ms-swift >= 3.8) are reported, not read: the pair they hold differs in more than the answer.

Not carried: whether the tags were written or added by default (written out, they are explicit).
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import (
    IMAGE,
    parse_turns,
    prompt_to_turns,
    turns_to_prompt,
)
from mmalign.data.formats.pairs import read_pairs, split_extras, write_pairs
from mmalign.data.preference import PreferenceRecord

DOCUMENTED = {"messages", "rejected_response", "images"}
# record field -> the column a problem about it names
COLUMNS = {"prompt": "messages", "chosen": "messages", "rejected": "rejected_response"}


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    turns, problems = parse_turns(raw.get("messages"), "messages")
    if turns and turns[-1][0] != "assistant":
        problems.append("field 'messages': the last message must be the assistant's (chosen) answer")
    if not isinstance(raw.get("rejected_response"), str):
        problems.append("field 'rejected_response': missing or not a string")
    if problems:
        return [], problems
    images = raw.get("images") or []
    images = images if isinstance(images, list) else [images]
    return [{"prompt": turns_to_prompt(_default_tags(turns[:-1], len(images))), "images": images,
             "chosen": turns[-1][1], "rejected": raw["rejected_response"], **split_extras(raw, DOCUMENTED)}], []


def _default_tags(turns: list[tuple[str, str]], n_images: int) -> list[tuple[str, str]]:
    missing = n_images - sum(text.count(IMAGE) for _, text in turns)
    first = next((i for i, (role, _) in enumerate(turns) if role != "system"), None)
    if missing <= 0 or first is None:
        return turns
    role, text = turns[first]
    return turns[:first] + [(role, IMAGE * missing + text)] + turns[first + 1:]


def write(records: list, path: Path) -> Path:
    return write_pairs(records, path, _row, documented=DOCUMENTED, images={"images": True})


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    turns = prompt_to_turns(rec.prompt, len(rec.images)) + [("assistant", rec.chosen)]
    return {"messages": [{"role": role, "content": text} for role, text in turns],
            "rejected_response": rec.rejected, "images": sink.refs(rec.images, f"{n:06d}")}


def detect(row: dict) -> bool:
    return "messages" in row and ("rejected_response" in row or "rejected_messages" in row)

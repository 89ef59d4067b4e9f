"""POVID's preference data (``YiyangZhou/POVID_preference_data_for_VLLMs``, read by POVID's
``llava/train/train_dpo.py``).

Schema: a JSON array of ``{"id", "image", "conversations", "rejected_conversations"}``; both are ShareGPT turns
(``<image>`` marks the image) with the same human turns, ending with the chosen and the rejected (hallucinated)
``gpt`` answer; ``image`` is a path relative to the image folder (here: the file's folder). Other columns go to
``meta``. POVID's second stage makes its noisy image while training, so the data holds none; ``corrupt_images``
travels as an extra column.

Not carried: nothing else (``rejected_conversations`` must repeat the prompt turns; a row where they differ is
reported).
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import (
    parse_turns,
    prompt_to_turns,
    sharegpt,
    turns_to_prompt,
)
from mmalign.data.formats.pairs import read_pairs, split_extras, unfit, write_pairs
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import MMAlignError

DOCUMENTED = {"image", "conversations", "rejected_conversations"}
# record field -> the column a problem about it names
COLUMNS = {"prompt": "conversations", "chosen": "conversations", "rejected": "rejected_conversations"}


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    chosen, problems = parse_turns(raw.get("conversations"), "conversations")
    rejected, found = parse_turns(raw.get("rejected_conversations"), "rejected_conversations")
    problems += found
    for name, turns in (("conversations", chosen), ("rejected_conversations", rejected)):
        if turns and turns[-1][0] != "assistant":
            problems.append(f"field '{name}': must end with the gpt answer")
    if not problems and chosen[:-1] != rejected[:-1]:
        problems.append("field 'rejected_conversations': its prompt turns differ from those of 'conversations'")
    if problems:
        return [], problems
    return [{"prompt": turns_to_prompt(chosen[:-1]), "images": [raw["image"]] if raw.get("image") else [],
             "chosen": chosen[-1][1], "rejected": rejected[-1][1], **split_extras(raw, DOCUMENTED)}], []


def write(records: list, path: Path) -> Path:
    if path.suffix != ".json":
        raise MMAlignError(f"cannot write {path}: POVID reads one JSON array, written as .json")
    return write_pairs(records, path, _row, documented=DOCUMENTED, native={"id"},
                       check=lambda rec: unfit(rec, "POVID", "at most one"))


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    turns = prompt_to_turns(rec.prompt, len(rec.images))
    row = {"id": rec.id, "conversations": sharegpt(turns + [("assistant", rec.chosen)]),
           "rejected_conversations": sharegpt(turns + [("assistant", rec.rejected)])}
    return row | ({"image": sink.ref(rec.images[0], f"{n:06d}")} if rec.images else {})


def detect(row: dict) -> bool:
    return "rejected_conversations" in row

"""LLaVA-RLHF's human preference data (``zhiqings/LLaVA-Human-Preference-10K``, read by LLaVA-RLHF's
``RLHF/data_utils/data_utils_rm.py`` and converted by MM-RLHF's ``llava/rm_process/download_pairwise_data.py``).

Schema: a JSON array of ``{"id", "image", "conversations", "output_1", "output_2", "preference"}``;
``conversations`` are ShareGPT turns (``<image>`` marks the image) ending with a ``gpt`` turn, the slot each
output fills; ``output_1``/``output_2`` are ``{"from", "value"}`` messages; ``preference`` is 1 or 2, the better
output; ``image`` is a path relative to the image folder (here: the file's folder). Other columns go to ``meta``.

Not carried: which of ``output_1``/``output_2`` held the preferred answer (written first, ``preference: 1``), the
``from`` tags of the outputs and the text of the trailing ``gpt`` slot (written as the preferred answer).
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import (
    message_text,
    parse_turns,
    prompt_to_turns,
    sharegpt,
    turns_to_prompt,
)
from mmalign.data.formats.pairs import read_pairs, split_extras, unfit, write_pairs
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import MMAlignError

DOCUMENTED = {"image", "conversations", "output_1", "output_2", "preference"}
# record field -> the column a problem about it names
COLUMNS = {"prompt": "conversations", "chosen": "output_1", "rejected": "output_2"}


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    turns, problems = parse_turns(raw.get("conversations"), "conversations")
    if turns and turns[-1][0] != "assistant":
        problems.append("field 'conversations': must end with the gpt turn the outputs fill")
    outputs = [message_text(raw.get(k), k) for k in ("output_1", "output_2")]
    problems += outputs[0][1] + outputs[1][1]
    if raw.get("preference") not in (1, 2):
        problems.append(f"field 'preference': {raw.get('preference')!r}, expected 1 or 2")
    if problems:
        return [], problems
    better = raw["preference"] - 1
    return [{"prompt": turns_to_prompt(turns[:-1]), "images": [raw["image"]] if raw.get("image") else [],
             "chosen": outputs[better][0], "rejected": outputs[1 - better][0], **split_extras(raw, DOCUMENTED)}], []


def write(records: list, path: Path) -> Path:
    if path.suffix != ".json":
        raise MMAlignError(f"cannot write {path}: LLaVA-RLHF reads one JSON array, written as .json")
    return write_pairs(records, path, _row, documented=DOCUMENTED, native={"id"},
                       check=lambda rec: unfit(rec, "LLaVA-RLHF", "at most one"))


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    turns = prompt_to_turns(rec.prompt, len(rec.images)) + [("assistant", rec.chosen)]
    row = {"id": rec.id, "conversations": sharegpt(turns), "output_1": {"from": "gpt", "value": rec.chosen},
           "output_2": {"from": "gpt", "value": rec.rejected}, "preference": 1}
    return row | ({"image": sink.ref(rec.images[0], f"{n:06d}")} if rec.images else {})


def detect(row: dict) -> bool:
    return "output_1" in row and "preference" in row

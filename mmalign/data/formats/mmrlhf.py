"""MM-RLHF's DPO pairs (``dpo_pairs.jsonl`` of ``yifanzhang114/MM-RLHF``, as MM-RLHF's ``llava/train/train_dpo.py``
reads it and ``scripts/convert_to_swift.py`` converts it).

Schema: ``prompt`` (any ``<image>`` is dropped and put back in front by MM-RLHF's loader); ``chosen``;
``rejected``; ``image``, a path or a list of paths relative to the image folder (here: the file's folder);
``video``, a folder of frames, kept in ``meta`` (records carry no video); after MM-RLHF's reference pass,
``reference_chosen_logp``/``reference_rejected_logp`` (read into ``ref_logps``); ``mixed_up_image``, the mixed
image of its "vision DPO" term (read into ``corrupt_images``); ``chosen_reason``/``rejected_reason`` (critiques),
``is_tie``, ``ls_factor`` (MM-DPO's per-pair scaling) and ``mix_reference_*_logp`` are kept in ``meta``.

The ranked ``data.jsonl`` (3-5 scored responses per instruction) is not read: its columns are described in the
README but no public copy of the file or of code reading it could be checked. Pairs from any ranked list come from
``preference.ranked_to_pairs``, which keeps the reward margin.

Not carried: the position of the image in a message prompt (MM-RLHF puts it first).
"""
from __future__ import annotations

from pathlib import Path

from mmalign.data.formats.images import ImageSink
from mmalign.data.formats.messages import IMAGE, question
from mmalign.data.formats.pairs import read_pairs, split_extras, unfit, write_pairs
from mmalign.data.preference import PreferenceRecord
from mmalign.errors import MMAlignError

DOCUMENTED = {"prompt", "chosen", "rejected", "image", "mixed_up_image", "reference_chosen_logp",
              "reference_rejected_logp"}
# record field -> the column a problem about it names
COLUMNS = {"images": "image", "corrupt_images": "mixed_up_image", "ref_logps": "reference_chosen_logp"}


def read(path: Path) -> tuple[list, list[str]]:
    return read_pairs(path, _fields, COLUMNS)


def _listed(value) -> list | None:
    return None if value is None else value if isinstance(value, list) else [value]


def _fields(raw: dict) -> tuple[list[dict], list[str]]:
    prompt = raw.get("prompt")
    f = {"prompt": prompt.replace(IMAGE, "").strip() if isinstance(prompt, str) else prompt,
         "images": _listed(raw.get("image")) or [], "chosen": raw.get("chosen"), "rejected": raw.get("rejected"),
         **split_extras(raw, DOCUMENTED)}
    if raw.get("mixed_up_image") is not None:
        f["corrupt_images"] = _listed(raw["mixed_up_image"])
    logps = raw.get("reference_chosen_logp"), raw.get("reference_rejected_logp")
    if (logps[0] is None) != (logps[1] is None):
        return [], ["field 'reference_rejected_logp': reference_chosen_logp and reference_rejected_logp come together"]
    if logps[0] is not None:
        f["ref_logps"] = {"chosen": logps[0], "rejected": logps[1]}
    return [f], []


def write(records: list, path: Path) -> Path:
    if path.suffix not in (".jsonl", ".json"):
        raise MMAlignError(f"cannot write {path}: MM-RLHF pairs are JSON (images as paths), written as .jsonl or .json")
    return write_pairs(records, path, _row, documented=DOCUMENTED, native={"ref_logps", "corrupt_images"},
                       check=lambda rec: unfit(rec, "MM-RLHF", one_question=True))


def _row(rec: PreferenceRecord, sink: ImageSink, n: int) -> dict:
    row = {"prompt": question(rec.prompt), "chosen": rec.chosen, "rejected": rec.rejected}
    if rec.images:
        row["image"] = _one(sink.refs(rec.images, f"{n:06d}"))
    if rec.corrupt_images is not None:
        row["mixed_up_image"] = _one(sink.refs(rec.corrupt_images, f"{n:06d}-mixed"))
    if rec.ref_logps is not None:
        row |= {"reference_chosen_logp": rec.ref_logps["chosen"], "reference_rejected_logp": rec.ref_logps["rejected"]}
    return row


def _one(refs: list):
    return refs[0] if len(refs) == 1 else refs


def detect(row: dict) -> bool:
    return isinstance(row.get("chosen"), str) and "prompt" in row and ("image" in row or "video" in row)

"""RL prompts for verl and EasyR1: prompts with a ground truth, no responses.

verl (``examples/data_preprocess/geo3k.py``; ``verl/utils/dataset/rl_dataset.py``): parquet rows with
``data_source``, ``prompt`` (a list of ``{"role", "content"}`` messages whose text marks images and videos with
``<image>``/``<video>``), ``images`` (HF images, paths or ``{"image": ...}``), optional ``videos``, ``ability``,
``reward_model`` ``{"style": "rule", "ground_truth": ...}`` and ``extra_info``. EasyR1 (``examples/config.yaml``:
``prompt_key: problem``, ``answer_key: answer``, ``image_key: images``; ``hiyouga/geometry3k``): ``problem`` (text
with ``<image>``), ``answer``, ``images``, optional ``videos``. Both are read; rows are written in verl's layout
with EasyR1's ``problem`` (the last user turn) and ``answer`` beside it, so one file serves both.

A ``PromptRecord`` holds a row: the prompt as messages with image/video blocks, the images (loaded as for
preference records), the videos as path/URL strings (not decoded), the ground truth (any JSON value), the
``data_source``, and every other column in ``meta`` (``reward_model``'s other keys under ``meta["reward_model"]``
unless they are the default ``{"style": "rule"}``).

Not carried: an EasyR1-only row's distinction between ``problem`` and a one-turn ``prompt`` (both are the same
prompt here); videos given as frame lists (reported).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mmalign.data.formats.images import ImageSink, load_images
from mmalign.data.formats.messages import parse_turns, prompt_to_turns, turns_to_prompt
from mmalign.data.formats.rows import read_rows, write_rows
from mmalign.data.preference import unique_records

DOCUMENTED = {"id", "data_source", "prompt", "images", "videos", "reward_model", "problem", "answer"}
DEFAULT_REWARD = {"style": "rule"}       # what the writer puts beside the ground truth when meta has no other


@dataclass
class PromptRecord:
    id: str
    prompt: list[dict]          # {"role", "content": blocks}; {"type": "image"} / {"type": "video"} mark media
    images: list                # PIL images (or RemoteImage), one per image block
    videos: list[str]           # paths or URLs, one per video block
    ground_truth: object = None     # verl reward_model.ground_truth / EasyR1 answer
    data_source: str = ""
    meta: dict = field(default_factory=dict)


def read(path: Path) -> tuple[list[PromptRecord], list[str]]:
    rows, problems = read_rows(path)
    built = []
    for where, default_id, raw in rows:
        rec, found = _record(raw, path.parent, default_id, where) if isinstance(raw, dict) else \
            (None, [f"record is a {type(raw).__name__}, expected an object"])
        built.append((where, rec, found))
    records, found = unique_records(built)
    return records, problems + found


def _record(raw: dict, root: Path, default_id: str, where: str) -> tuple[PromptRecord | None, list[str]]:
    if "prompt" in raw:
        turns, problems = parse_turns(raw["prompt"], "prompt")
    elif isinstance(raw.get("problem"), str):
        turns, problems = [("user", raw["problem"])], []
    else:
        turns, problems = [], ["field 'prompt': missing (neither verl's 'prompt' nor EasyR1's 'problem')"]
    reward = raw.get("reward_model")
    if reward is not None and not (isinstance(reward, dict) and "ground_truth" in reward):
        problems.append("field 'reward_model': expected an object with 'ground_truth'")
    prompt = turns_to_prompt(turns)
    images, videos, found = _media(raw, prompt if turns else None, root, where)
    problems += found
    if problems:
        return None, problems
    meta = {k: v for k, v in raw.items() if k not in DOCUMENTED and v is not None}
    rest = {k: v for k, v in (reward or {}).items() if k != "ground_truth"}
    if rest not in ({}, DEFAULT_REWARD):
        meta["reward_model"] = rest
    truth = reward["ground_truth"] if reward is not None else raw.get("answer")
    return PromptRecord(id=str(raw.get("id", default_id)), prompt=prompt, images=images, videos=videos,
                        ground_truth=truth, data_source=raw.get("data_source") or "", meta=meta), []


def _media(raw: dict, prompt: list[dict] | None, root: Path, where: str) -> tuple[list, list[str], list[str]]:
    """The images (loaded) and videos (references) of a row, each list matched against the prompt's
    placeholders (``prompt=None``: no prompt to match)."""
    refs, problems = {"image": raw.get("images") or [], "video": raw.get("videos") or []}, []
    for kind, media in refs.items():
        if not isinstance(media, list):
            problems.append(f"field '{kind}s': a {type(media).__name__}, expected a list")
            refs[kind] = []
        elif prompt is not None and (n := sum(b["type"] == kind for m in prompt for b in m["content"])) != len(media):
            problems.append(f"field 'prompt': {n} <{kind}> placeholder(s) for {len(media)} {kind}(s)")
    images, found = load_images(refs["image"], root, "images", where)
    videos = [v.get("video") if isinstance(v, dict) else v for v in refs["video"]]
    problems += found + [f"field 'videos': video {k}: expected a path or URL" for k, v in enumerate(videos)
                         if not isinstance(v, str)]
    return images, videos, problems


def write(records: list[PromptRecord], path: Path) -> Path:
    sink, rows = ImageSink(path), []
    for n, rec in enumerate(records):
        turns = prompt_to_turns(rec.prompt, 0)
        meta = dict(rec.meta)
        row = {"id": rec.id, "data_source": rec.data_source,
               "prompt": [{"role": role, "content": text} for role, text in turns],
               "images": sink.refs(rec.images, f"{n:06d}"),
               "reward_model": {**meta.pop("reward_model", DEFAULT_REWARD), "ground_truth": rec.ground_truth},
               "problem": next((text for role, text in reversed(turns) if role == "user"), ""),
               "answer": rec.ground_truth}
        if rec.videos:
            row["videos"] = rec.videos
        rows.append(row | meta)
    return write_rows(rows, path, {"images": True})


def detect(row: dict) -> bool:
    return "reward_model" in row or {"problem", "answer"} <= row.keys()


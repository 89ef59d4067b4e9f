"""Property-based fuzzing of the data readers: every public format (``FORMATS``), the preference reader and the
SFT loader, fed their own fixtures with random damage (a field replaced by junk or removed, junk columns, bytes
that are not UTF-8, a file cut short, references to missing, corrupt, truncated and huge images, placeholders,
lone surrogates, empty answers). Each file is either read, and then every record it gives collates into model
inputs, or refused with one ``MMAlignError`` whose every problem names the file, the record and the field.
"""
from __future__ import annotations

import copy
import json
import tempfile
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from mmalign.data.collate import collate_preference
from mmalign.data.formats.registry import FORMATS, read_records
from mmalign.data.preference import read_preference_file
from mmalign.data.records import load_sft_records
from mmalign.errors import MMAlignError
from mmalign.models.inputs import build_inputs
from mmalign.world.model import build_lab_model

from .conftest import FIXTURES, TINY, assert_names_place, write_images

SEEDS = {"mmalign": "mmalign.jsonl", "trl": "trl.jsonl", "llamafactory": "llamafactory.json",
         "swift": "swift.jsonl", "verl": "verl_easyr1.jsonl", "rlaif_v": "rlaif_v.jsonl",
         "vlfeedback": "vlfeedback.jsonl", "mmrlhf": "mmrlhf.jsonl", "llava_rlhf": "llava_rlhf.json",
         "rlhfv": "rlhfv.jsonl", "povid": "povid.json"}
SFT_SEED = [{"images": ["images/red.png"], "prompt": "What colour is the square?", "response": "Red.", "task": "colour"},
            {"images": ["images/red.png", "images/blue.png"], "response": "They differ.",
             "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "image"},
                                                     {"type": "text", "text": "Compare them."}]}]}]
BAD_STRINGS = ["", "  ", "<image>", "see <video> here", "caf\ud800", "images/missing.png", "images/corrupt.png",
               "images/truncated.png", "images/huge.png", "images/big.png", "data:image/png;base64,@@", "image"]
JUNK = st.one_of(st.none(), st.booleans(), st.integers(-2, 3), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=6), st.sampled_from(BAD_STRINGS), st.lists(st.integers(0, 2), max_size=2),
                 st.dictionaries(st.sampled_from(["type", "text", "role", "content", "bytes", "path", "Rating"]),
                                 st.sampled_from([None, "image", "text", "user", 1, []]), max_size=2))
SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


@pytest.fixture(scope="module")
def workdir():
    with tempfile.TemporaryDirectory() as d:
        write_images(Path(d))
        yield Path(d)


@pytest.fixture(scope="module")
def processor():
    return build_lab_model(TINY, 64)[1]


def _rows(name: str) -> list:
    text = (FIXTURES / name).read_text()
    return json.loads(text) if name.endswith(".json") else [json.loads(line) for line in text.splitlines() if line]


def _places(value, prefix=()):
    """Every path into a JSON value: () for the value itself, then keys and indices."""
    yield prefix
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for k, v in items:
        yield from _places(v, prefix + (k,))


@st.composite
def damaged(draw, rows: list) -> bytes:
    """The rows with 1-3 random changes, serialised (as a JSON array when ``rows`` came from one, else JSONL),
    sometimes with bytes that are not UTF-8 or cut short."""
    rows = copy.deepcopy(rows)
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(rows) - 1))
        place = draw(st.sampled_from(list(_places(rows[i]))))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add"]))
        parent = rows if not place else _get(rows[i], place[:-1])
        key = i if not place else place[-1]
        if action == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(["junk", "images", "image", "chosen", "meta", "role"]))] = draw(JUNK)
        elif action == "delete" and place and isinstance(parent, dict):
            del parent[key]
        else:
            parent[key] = draw(JUNK)
    data = "".join(json.dumps(r) + "\n" for r in rows).encode("utf-8", "surrogatepass")
    spoil = draw(st.sampled_from(["none", "none", "none", "bytes", "cut"]))
    at = draw(st.integers(0, max(len(data) - 1, 0)))
    if spoil == "bytes":
        data = data[:at] + b"\xff\xfe" + data[at:]
    elif spoil == "cut":
        data = data[:at]
    return data


def _get(value, place):
    for k in place:
        value = value[k]
    return value


def _as_file(data: bytes, folder: Path, name: str) -> Path:
    path = folder / name
    if name.endswith(".json"):  # the same rows as one array
        lines = [line for line in data.split(b"\n") if line.strip()]
        data = b"[" + b",\n".join(lines) + b"]"
    path.write_bytes(data)
    return path


def _read_or_refuse(read, path: Path):
    """The records, or None when refused with a well-formed error; PIL may not warn on the way."""
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            return read(path)
        except MMAlignError as e:
            assert_names_place(str(e), path)
            return None


@st.composite
def format_and_file(draw):
    fmt = draw(st.sampled_from(sorted(SEEDS)))
    return fmt, draw(damaged(_rows(SEEDS[fmt])))


@SETTINGS
@given(case=format_and_file())
def test_public_format_readers_read_or_name_the_problem(workdir, processor, case):
    fmt, data = case
    path = _as_file(data, workdir, SEEDS[fmt])
    records = _read_or_refuse(lambda p: read_records(p, fmt), path)
    if records and FORMATS[fmt].kind == "pairs":
        records = [r for r in records if all(isinstance(i, Image.Image) for i in r.images)]  # URLs stay unfetched
        if records:
            collate_preference(processor, records)


@SETTINGS
@given(layout=st.sampled_from(["mmalign.jsonl", "trl.jsonl"]), data=st.data())
def test_preference_reader_reads_or_names_the_problem(workdir, processor, layout, data):
    path = _as_file(data.draw(damaged(_rows(layout))), workdir, "pairs.jsonl")
    records = _read_or_refuse(read_preference_file, path)
    if records:
        collate_preference(processor, records, ("chosen", "rejected"))


@SETTINGS
@given(data=damaged(SFT_SEED))
def test_sft_loader_reads_or_names_the_problem(workdir, processor, data):
    path = _as_file(data, workdir, "sft.jsonl")
    records = _read_or_refuse(load_sft_records, path)
    if records:
        build_inputs(processor, [records[i] for i in range(len(records))])


def test_each_covered_case_is_named(workdir):
    """The cases the issue lists, one record each, all reported at once."""
    good = {"prompt": "What colour?", "images": ["images/red.png"], "chosen": "Red.", "rejected": "Blue."}
    cases = [{"images": ["images/missing.png"]}, {"images": ["images/corrupt.png"]},
             {"images": ["images/truncated.png"]}, {"images": ["images/huge.png"]}, {"images": ["images/big.png"]},
             {"prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "image"}]}]},
             {"prompt": "look at <image> here"}, {"chosen": ""}, {"rejected": "Red."}, {"chosen": "caf\ud800"}]
    path = workdir / "cases.jsonl"
    path.write_bytes(b"".join(json.dumps(good | c).encode("utf-8", "surrogatepass") + b"\n" for c in cases)
                     + b'{"prompt": "caf\xe9"}\n')
    with pytest.raises(MMAlignError) as e:
        _read_or_refuse(read_preference_file, path) or read_preference_file(path)
    text = str(e.value)
    want = ["1: field 'images': image 0: file not found", "2: field 'images': image 0: not a decodable image",
            "3: field 'images': image 0: not a decodable image", "4: field 'images': image 0: too large",
            "5: field 'images': image 0: too large: 10000x10000 = 100,000,000 pixels",
            "6: field 'prompt': 2 image block(s) for 1 image(s)", "7: field 'prompt': the text holds the placeholder",
            "8: field 'chosen': empty", "9: field 'rejected': identical to 'chosen'",
            "10: field 'chosen': not valid Unicode text", "11: not UTF-8 text"]
    for w in want:
        assert f"{path}:{w}" in text, (w, text)


def test_the_pixel_limit_is_configurable(workdir, monkeypatch):
    path = workdir / "small.jsonl"
    path.write_text(json.dumps({"prompt": "p", "images": ["images/small.png"], "chosen": "a", "rejected": "b"}) + "\n")
    assert len(read_preference_file(path)) == 1
    monkeypatch.setenv("MMALIGN_MAX_IMAGE_PIXELS", "63")
    with pytest.raises(MMAlignError, match=r"8x8 = 64 pixels, above the limit of 63 \(set MMALIGN_MAX_IMAGE_PIXELS"):
        read_preference_file(path)


def test_broken_parquet_files_are_named(workdir):
    from mmalign.data.formats.rows import write_rows
    red = (workdir / "images" / "red.png").read_bytes()
    rows = [{"prompt": "p", "chosen": "a", "rejected": "b", "images": [{"bytes": red, "path": None}]},
            {"prompt": "p", "chosen": "a", "rejected": "c", "images": [{"bytes": b"not an image", "path": None}]}]
    path = write_rows(rows, workdir / "pairs.parquet", {"images": True})
    with pytest.raises(MMAlignError) as e:
        read_preference_file(path)
    assert f"{path}:2: field 'images': image 0: not a decodable image" in str(e.value)
    assert str(e.value).startswith("1 problem(s)")
    garbage = workdir / "garbage.parquet"
    garbage.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(MMAlignError, match="not a readable parquet file"):
        read_preference_file(garbage)

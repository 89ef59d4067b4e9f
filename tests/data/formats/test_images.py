"""Image references: every kind a file may hold, lazy URLs (never fetched in tests: an unreachable local port),
and where writers put images."""
import base64
import io
import json
from pathlib import Path

import pytest
from PIL import Image

from mmalign.data.formats.images import (
    ImageSink,
    RemoteImage,
    image_ref,
    load_images,
    open_image,
)
from mmalign.data.formats.registry import read_records
from mmalign.data.preference import read_preference_file
from mmalign.errors import MMAlignError

FIXTURES = Path(__file__).parent / "fixtures"
RED_PNG = (FIXTURES / "images" / "red.png").read_bytes()
UNREACHABLE = "http://127.0.0.1:9/x.png"   # the discard port: connection refused, no network touched


@pytest.mark.parametrize("ref", [
    "images/red.png",
    str(FIXTURES / "images" / "red.png"),
    RED_PNG,
    base64.b64encode(RED_PNG).decode(),
    "data:image/png;base64," + base64.b64encode(RED_PNG).decode(),
    {"bytes": RED_PNG, "path": None},
    {"bytes": None, "path": "images/red.png"},
    {"image": "images/red.png"},
    Image.open(io.BytesIO(RED_PNG)).convert("RGBA"),
], ids=["relative", "absolute", "bytes", "base64", "data-url", "hf-bytes", "hf-path", "verl-dict", "pil"])
def test_every_kind_of_reference_gives_the_rgb_image(ref, red, same_image):
    image = image_ref(ref, FIXTURES, "f.jsonl:1: field 'images': image 0")
    assert image.mode == "RGB" and same_image(image, red)


def test_a_url_is_not_fetched_when_read_and_fails_clearly_when_opened_offline():
    image = image_ref(UNREACHABLE, FIXTURES, "pairs.jsonl:3: field 'images': image 1")
    assert isinstance(image, RemoteImage) and image.url == UNREACHABLE
    image.timeout = 2.0
    with pytest.raises(MMAlignError) as e:
        open_image(image)
    assert str(e.value).startswith("pairs.jsonl:3: field 'images': image 1: cannot open http://127.0.0.1:9/x.png (")


def test_bad_references_are_problems_naming_field_and_image(red, same_image):
    images, problems = load_images(["images/red.png", "missing.png", "data:image/png;base64,@@", b"junk", 7],
                                   FIXTURES, "images", "f.jsonl:1")
    assert len(images) == 1 and same_image(images[0], red)
    assert problems[0] == f"field 'images': image 1: file not found: {FIXTURES / 'missing.png'}"
    assert problems[1].startswith("field 'images': image 2: not a decodable image")
    assert problems[2].startswith("field 'images': image 3: not a decodable image")
    assert problems[3].startswith("field 'images': image 4: a int, expected a path, a URL")


def test_sink_saves_pngs_beside_json_inlines_bytes_in_parquet_and_keeps_urls(tmp_path, red, blue, same_image):
    remote = RemoteImage(UNREACHABLE, "x")
    json_sink = ImageSink(tmp_path / "out.jsonl")
    assert json_sink.refs([red, blue], "000003") == ["images/out-000003-0.png", "images/out-000003-1.png"]
    assert same_image(Image.open(tmp_path / "images" / "out-000003-1.png").convert("RGB"), blue)
    assert json_sink.ref(remote, "r") == UNREACHABLE
    parquet_sink = ImageSink(tmp_path / "out.parquet")
    inline = parquet_sink.ref(red, "0")
    assert inline["path"] is None and same_image(Image.open(io.BytesIO(inline["bytes"])).convert("RGB"), red)
    assert parquet_sink.ref(remote, "r") == {"bytes": None, "path": UNREACHABLE}


def test_format_readers_leave_urls_unfetched_while_the_training_reader_opens_them(tmp_path):
    row = {"prompt": "Color?", "images": [UNREACHABLE], "chosen": "Red.", "rejected": "Blue."}
    (tmp_path / "pairs.jsonl").write_text(json.dumps(row) + "\n")
    (rec,) = read_records(tmp_path / "pairs.jsonl", "mmalign")
    assert isinstance(rec.images[0], RemoteImage)
    with pytest.raises(MMAlignError) as e:  # connection refused at once: no timeout is waited for
        read_preference_file(tmp_path / "pairs.jsonl")
    assert f"{tmp_path / 'pairs.jsonl'}:1: field 'images': image 0: cannot open {UNREACHABLE}" in str(e.value)

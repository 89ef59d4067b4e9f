"""Shared by the reliability tests: one torch thread, the tiny lab model, broken images, and the check that an
error names its file, record and field."""
from __future__ import annotations

import re
import struct
import tempfile
import zlib
from pathlib import Path

import pytest
import torch
from hypothesis.configuration import set_hypothesis_home_dir
from PIL import Image

from mmalign.train.loop import TrainConfig, train
from mmalign.world.model import LabModelConfig, build_lab_model

TINY = LabModelConfig(vision_hidden=32, vision_layers=1, vision_heads=2, vision_mlp=64,
                      text_hidden=32, text_layers=1, text_heads=2, text_mlp=64)
TINY_OVERRIDES = [f"lab_model.{k}={v}" for k, v in vars(TINY).items() if k.startswith(("vision_", "text_"))]
FIXTURES = Path(__file__).parents[1] / "data" / "formats" / "fixtures"
# hypothesis keeps caches in .hypothesis/ under the working directory; the fuzzers are derandomized and need none
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "mmalign-hypothesis")



@pytest.fixture(scope="session")
def base_folder(tmp_path_factory) -> Path:
    """A tiny lab model saved as a model folder (the starting point of preference runs)."""
    folder = tmp_path_factory.mktemp("tiny-base")
    model, processor = build_lab_model(TINY, 64)
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def regression_batches(start: int):
    """Micro-batch k of a linear regression stream (seeded by k, so any start gives the same batches)."""
    k = start
    while True:
        x = torch.randn(4, 3, generator=torch.Generator().manual_seed(k))
        yield x, x.sum(1, keepdim=True)
        k += 1


def train_linear(out: Path, loss_fn, **cfg) -> tuple[dict, torch.nn.Module]:
    """``train`` on a 3 -> 1 linear model: 6 steps, a log line and a metrics record each, checkpoints every 2."""
    torch.manual_seed(0)
    model = torch.nn.Linear(3, 1)
    c = TrainConfig(**({"output_dir": str(out), "max_steps": 6, "batch_size": 4, "lr": 0.05, "warmup_steps": 0,
                        "log_every": 1, "save_every": 2} | cfg))
    last = train(model, [{"params": list(model.parameters())}], loss_fn, regression_batches, c,
                 save_model=lambda m, folder: folder.mkdir(parents=True, exist_ok=True))
    return last, model


def png_header(width: int, height: int) -> bytes:
    """A PNG that claims ``width`` x ``height`` pixels and holds no pixel data: what a decompression bomb looks
    like to a reader, at 57 bytes."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)) + \
        chunk(b"IEND", b"")


def write_images(folder: Path) -> None:
    """``images/`` with good images and every kind of broken one the fuzzers point at."""
    images = folder / "images"
    images.mkdir(parents=True, exist_ok=True)
    for name in ("red.png", "blue.png"):
        (images / name).write_bytes((FIXTURES / "images" / name).read_bytes())
    (images / "corrupt.png").write_bytes(b"\x89PNG not really")
    noise = Image.effect_noise((64, 64), 64).convert("RGB")
    noise.save(images / "noise.png")
    data = (images / "noise.png").read_bytes()
    (images / "truncated.png").write_bytes(data[:len(data) // 2])
    (images / "huge.png").write_bytes(png_header(20_000, 20_000))       # above twice PIL's limit: PIL refuses it
    (images / "big.png").write_bytes(png_header(10_000, 10_000))        # above PIL's limit: PIL only warns
    Image.new("RGB", (8, 8)).save(images / "small.png")


# FILE:LINE, FILE:ROW (parquet) or "FILE record N" (JSON array), then the problem
PLACE = r"(:\d+| record \d+):"
WHOLE_RECORD = ("invalid JSON", "not UTF-8 text", "record is a", "expected an object", "no records",
                "not a readable parquet file", "a JSON ")


def assert_names_place(message: str, path: Path) -> None:
    """Every problem an error lists names the file and the record, and the field unless it is about the whole
    record (not JSON, not UTF-8, not an object)."""
    lines = [line.strip() for line in message.split("\n")[1:]] or [message]
    for line in lines:
        if line.startswith("... and "):
            continue
        assert line.startswith(str(path)), (line, message)
        rest = line[len(str(path)):]
        if any(w in rest for w in WHOLE_RECORD):
            continue
        assert re.match(PLACE, rest), (line, message)
        assert "field '" in rest or "pixels" in rest, (line, message)

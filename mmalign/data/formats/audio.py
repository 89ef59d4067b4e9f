"""Audio clips in data files: WAV references in, mono float32 arrays out, and back.

A clip reference is a path to a WAV file (relative to the data file's folder, or absolute) or a
``data:audio/wav;base64,`` URL; in memory a clip is a 1-D float array in [-1, 1] beside the record's
``sampling_rate``. WAV is read here without an audio library (none imports beside the CPU torch build): 16-bit PCM
and 32-bit float, mono or several channels averaged to mono. Writers use 32-bit float so that a clip reads back
bit for bit.
"""
from __future__ import annotations

import base64
import struct
from pathlib import Path

import numpy as np

_DATA_URI = "data:audio/wav;base64,"
PCM, FLOAT = 1, 3   # WAV format tags


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """``(mono float32 samples, sampling rate)`` of a WAV file's bytes; ``ValueError`` on anything else."""
    if data[:4] != b"RIFF" or data[8:12] != b"WAVE":
        raise ValueError("not a WAV file (no RIFF/WAVE header)")
    fmt, samples, pos = None, None, 12
    while pos + 8 <= len(data):
        tag, size = data[pos:pos + 4], struct.unpack("<I", data[pos + 4:pos + 8])[0]
        body = data[pos + 8:pos + 8 + size]
        if tag == b"fmt ":
            fmt = struct.unpack("<HHIIHH", body[:16])
        elif tag == b"data":
            samples = body
        pos += 8 + size + size % 2          # chunks are word-aligned
    if fmt is None or samples is None:
        raise ValueError("WAV file without a fmt or data chunk")
    kind, channels, rate, _, _, bits = fmt
    if (kind, bits) == (PCM, 16):
        x = np.frombuffer(samples, "<i2").astype(np.float32) / 32768.0
    elif (kind, bits) == (FLOAT, 32):
        x = np.frombuffer(samples, "<f4").astype(np.float32)
    else:
        raise ValueError(f"WAV format {kind} with {bits} bits is not read (16-bit PCM or 32-bit float)")
    return x.reshape(-1, channels).mean(1), rate


def encode_wav(clip: np.ndarray, rate: int) -> bytes:
    """A mono 32-bit float WAV file."""
    pcm = np.asarray(clip, dtype="<f4").tobytes()
    fmt = struct.pack("<HHIIHH", FLOAT, 1, rate, rate * 4, 4, 32)
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def load_audios(refs: list, root: Path, field: str, where: str) -> tuple[list, list[int], list[str]]:
    """The clips of a record's ``field`` (WAV references, or arrays already in memory), the rates read from the
    files (none for arrays), and every problem as ``field 'x': clip k: ...``."""
    clips, rates, problems = [], [], []
    for k, ref in enumerate(refs):
        try:
            if isinstance(ref, str):
                data = base64.b64decode(ref[len(_DATA_URI):]) if ref.startswith(_DATA_URI) else \
                    _resolve(ref, root).read_bytes()
                clip, rate = decode_wav(data)
                rates.append(rate)
            else:
                clip = np.asarray(ref, dtype=np.float32)
            clips.append(clip)
        except (OSError, ValueError, TypeError) as e:
            problems.append(f"field '{field}': clip {k}: cannot read {str(ref)[:80]!r} ({e})")
    return clips, rates, problems


def clip_problems(field: str, clips: list) -> list[str]:
    """What is wrong with in-memory clips: each must be a non-empty 1-D array of finite samples."""
    out = []
    for k, c in enumerate(clips):
        if not isinstance(c, np.ndarray) or c.ndim != 1 or c.size == 0:
            shape = getattr(c, "shape", type(c).__name__)
            out.append(f"field '{field}': clip {k} is {shape}, expected a non-empty 1-D array (mono samples)")
        elif not np.isfinite(c).all():
            out.append(f"field '{field}': clip {k} has non-finite samples")
    return out


def _resolve(ref: str, root: Path) -> Path:
    path = Path(ref).expanduser()
    return path if path.is_absolute() else root / path


class AudioSink:
    """Writes clips as WAV files in ``audio/`` beside a data file and returns their relative paths."""

    def __init__(self, path: Path):
        self.folder, self.stem = path.parent / "audio", path.stem

    def refs(self, clips: list, rate: int, tag: str) -> list[str]:
        self.folder.mkdir(parents=True, exist_ok=True)
        out = []
        for k, clip in enumerate(clips):
            name = f"{self.stem}-{tag}-{k}.wav"
            (self.folder / name).write_bytes(encode_wav(clip, rate))
            out.append(f"audio/{name}")
        return out


def wav_data_uri(clip: np.ndarray, rate: int) -> str:
    """A clip as an inline ``data:audio/wav;base64,`` reference."""
    return _DATA_URI + base64.b64encode(encode_wav(clip, rate)).decode()


"""Audio clips in preference records: WAV files in and out, and every validation message naming file, line and
field."""
import json

import numpy as np
import pytest

from mmalign.data.formats.audio import decode_wav, encode_wav, wav_data_uri
from mmalign.data.preference import PreferenceRecord, read_preference_file, write_preference_file
from mmalign.errors import MMAlignError

from .conftest import RATE, audio_records, silence, tone


def pcm16_wav(clip: np.ndarray, rate: int, channels: int = 1) -> bytes:
    """A 16-bit PCM WAV, built by hand (what most tools write)."""
    import struct
    pcm = np.repeat((clip * 32767).astype("<i2")[:, None], channels, 1).tobytes()
    fmt = struct.pack("<HHIIHH", 1, channels, rate, rate * 2 * channels, 2 * channels, 16)
    body = b"WAVE" + b"fmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", len(pcm)) + pcm
    return b"RIFF" + struct.pack("<I", len(body)) + body


def write_rows(path, rows) -> None:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))


def test_round_trip_keeps_every_clip_bit_for_bit(tmp_path):
    recs = audio_records()
    back = read_preference_file(write_preference_file(recs, tmp_path / "pairs.jsonl"))
    assert [r.id for r in back] == [r.id for r in recs]
    for a, b in zip(recs, back):
        assert b.sampling_rate == RATE and len(b.audios) == len(a.audios) and b.images == []
        for x, y in zip(a.audios + a.corrupt_audios, b.audios + b.corrupt_audios):
            assert x.dtype == y.dtype == np.float32 and np.array_equal(x, y)
    assert sorted(p.name for p in (tmp_path / "audio").iterdir())[0] == "pairs-000000-0.wav"


def test_records_without_audio_are_written_as_before(tmp_path):
    rec = PreferenceRecord(id="t", prompt="is there a star ?", images=[], chosen="no", rejected="yes")
    row = json.loads(write_preference_file([rec], tmp_path / "p.jsonl").read_text())
    assert "audios" not in row and "corrupt_audios" not in row and "sampling_rate" not in row
    assert not (tmp_path / "audio").exists()


def test_reads_pcm16_stereo_and_inline_wav_and_takes_the_rate_from_the_files(tmp_path):
    (tmp_path / "a.wav").write_bytes(pcm16_wav(tone(440, 0.5, 8000), 8000, channels=2))
    row = {"id": "r", "prompt": "how many beeps ?", "chosen": "2", "rejected": "3", "audios": ["a.wav"],
           "corrupt_audios": [wav_data_uri(silence(0.5)[:4000], 8000)]}
    write_rows(tmp_path / "p.jsonl", [row])
    (rec,) = read_preference_file(tmp_path / "p.jsonl")
    assert rec.sampling_rate == 8000 and rec.audios[0].shape == (4000,)
    assert np.allclose(rec.audios[0], tone(440, 0.5, 8000), atol=1e-4)        # 16-bit rounding, channels averaged
    assert not rec.corrupt_audios[0].any()


@pytest.mark.parametrize("row,message", [
    ({"audios": ["missing.wav"]}, "field 'audios': clip 0: cannot read 'missing.wav'"),
    ({"audios": ["a.wav"], "sampling_rate": 8000}, "field 'sampling_rate': the clips' rates disagree"),
    ({"audios": ["a.wav", "b.wav"]}, "field 'sampling_rate': the clips' rates disagree ([8000, 16000])"),
    ({"audios": ["a.wav"], "corrupt_audios": []}, "field 'corrupt_audios': 0 clip(s) for 1 in 'audios'"),
    ({"audios": "a.wav"}, "field 'audios': a str, expected a list of audio clips"),
    ({"audios": [[0.1, 0.2]]}, "field 'sampling_rate': missing (the record has audio clips)"),
    ({"audios": [[[0.1], [0.2]]], "sampling_rate": 16000}, "field 'audios': clip 0 is (2, 1), expected a"),
    ({"audios": [[0.1, float("nan")]], "sampling_rate": 16000}, "field 'audios': clip 0 has non-finite samples"),
    ({"audios": ["a.wav"], "sampling_rate": 0}, "field 'sampling_rate': a int, expected a positive integer (Hz)"),
    ({"audios": ["a.wav"], "prompt": [{"role": "user", "content": [{"type": "text", "text": "how many beeps ?"}]}]},
     "field 'prompt': 0 audio block(s) for 1 clip(s) in 'audios'"),
    ({"audios": ["not.wav"]}, "field 'audios': clip 0: cannot read 'not.wav' (not a WAV file"),
])
def test_every_audio_problem_names_file_line_and_field(tmp_path, row, message):
    (tmp_path / "a.wav").write_bytes(encode_wav(tone(440), RATE))
    (tmp_path / "b.wav").write_bytes(encode_wav(tone(440, 0.5, 8000), 8000))
    (tmp_path / "not.wav").write_bytes(b"hello")
    write_rows(tmp_path / "p.jsonl", [{"id": "r", "prompt": "how many beeps ?", "chosen": "2", "rejected": "3", **row}])
    with pytest.raises(MMAlignError) as e:
        read_preference_file(tmp_path / "p.jsonl")
    assert f"p.jsonl:1: {message}" in str(e.value)


def test_decode_refuses_other_sample_formats():
    data = bytearray(encode_wav(tone(440, 0.01), RATE))
    data[34:36] = (64).to_bytes(2, "little")      # bits per sample -> 64
    with pytest.raises(ValueError, match="format 3 with 64 bits"):
        decode_wav(bytes(data))

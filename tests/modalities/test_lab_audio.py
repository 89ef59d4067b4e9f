"""The lab's audio channel: clips that carry the scene's ground truth, determinism, scoring, audio blindness and
audio-contrast pairs."""
import numpy as np
import pytest

from mmalign.data.collate import collate_preference
from mmalign.world.audio import (
    BEEP_S,
    PITCH,
    RATE,
    WORDS,
    audio_blindness,
    audio_examples,
    audio_pairs,
    build_audio_lab_model,
    make_audio_example,
    muted,
)
from mmalign.world.scenes import Scene, WorldConfig
from mmalign.world.scoring import aggregate, score_example

WORLD = WorldConfig()


def loud_segments(clip: np.ndarray, threshold: float = 0.015) -> list[np.ndarray]:
    """The stretches where a 5 ms moving average of |x| exceeds ``threshold`` (the beeps, faint ones included)."""
    env = np.convolve(np.abs(clip), np.ones(80) / 80, mode="same") > threshold
    edges = np.flatnonzero(np.diff(np.r_[0, env.astype(int), 0]))
    return [clip[a:b] for a, b in zip(edges[::2], edges[1::2])]


def pitch(segment: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(segment * np.hanning(len(segment)), n=1 << 16))
    return float(np.fft.rfftfreq(1 << 16, 1 / RATE)[spectrum.argmax()])


def nearest_colour(freq: float) -> str:
    return min(PITCH, key=lambda c: abs(np.log(PITCH[c] / freq)))


@pytest.mark.parametrize("index", range(12))
def test_a_beeps_clip_has_one_beep_per_object_at_its_colours_pitch_left_to_right(index):
    ex = make_audio_example(WORLD, "beeps", "test", index)
    scene = Scene.from_dict(ex["scenes"][0])
    (clip,) = ex["audios"]
    beeps = loud_segments(clip)
    assert len(beeps) == len(scene.objects) == int(ex["answer"])
    assert all(abs(len(b) / RATE - BEEP_S) < 0.02 for b in beeps)
    heard = [nearest_colour(pitch(b)) for b in beeps]
    assert heard == [o.colour for o in sorted(scene.objects, key=lambda o: o.center[0])]
    assert len(clip) <= RATE and clip.dtype == np.float32


def test_clip_lengths_do_not_tell_the_answer():
    """Silence of the same length must carry nothing: the audio token count follows the clip's length."""
    for task in ("beeps", "tone"):
        assert len({len(e["audios"][0]) for e in audio_examples(WORLD, "val", 24, tasks=(task,))}) == 1


def test_a_tone_is_the_answers_pitch_and_everything_is_deterministic():
    for index in range(8):
        ex = make_audio_example(WORLD, "tone", "val", index)
        assert nearest_colour(pitch(ex["audios"][0])) == ex["answer"]
        again = make_audio_example(WORLD, "tone", "val", index)
        assert np.array_equal(ex["audios"][0], again["audios"][0])
    a, b = make_audio_example(WORLD, "beeps", "val", 0), make_audio_example(WORLD, "beeps", "val", 1)
    assert a["audios"][0].shape != b["audios"][0].shape or not np.array_equal(a["audios"][0], b["audios"][0])


def test_the_lab_audio_tokenizer_knows_every_prompt_and_answer_word():
    _, processor = build_audio_lab_model()
    tok = processor.tokenizer
    for ex in audio_examples(WORLD, "train", 40):
        for text in (ex["prompt"], ex["answer"]):
            assert tok.unk_token_id not in tok(text, add_special_tokens=False)["input_ids"], text
    assert set(WORDS) <= set(tok.get_vocab())


def test_scoring_uses_the_lab_registry():
    exs = audio_examples(WORLD, "test", 6)
    assert score_example(exs[0], f" {exs[0]['answer']} .")["correct"]
    out = aggregate(exs, [e["answer"] for e in exs[:3]] + ["0", "0", "0"])
    # the tasks take turns: beeps at 0, 2, 4 (two right), tone at 1, 3, 5 (one right)
    assert (out["beeps"]["accuracy"], out["tone"]["accuracy"]) == pytest.approx((2 / 3, 1 / 3))


def test_audio_blindness_by_hand():
    exs = [{"task": "beeps", "answer": a} for a in ("2", "2", "3", "4")]
    blind = audio_blindness(["2", "2", "2", "2"], ["2", "2", "2", "2"], exs)
    assert blind == {"accuracy": 0.5, "muted_accuracy": 0.5, "prior_accuracy": 0.5, "unchanged": 1.0, "n": 4}
    hearing = audio_blindness(["2", "2", "3", "4"], ["2", "3", "3", "3"], exs)
    assert hearing["accuracy"] == 1.0 and hearing["unchanged"] == 0.5
    assert not muted({"audios": [np.ones(4, np.float32)]})["audios"][0].any()


def test_wrong_clip_pairs_reject_the_answer_the_corrupted_clip_carries():
    pairs = audio_pairs(WORLD, "train", 10)
    for p in pairs:
        other = make_audio_example(WORLD, p.task, "train", int(p.meta["other"].split("-")[1]))
        assert p.rejected == other["answer"] != p.chosen
        assert np.array_equal(p.corrupt_audios[0], other["audios"][0])
    silent = audio_pairs(WORLD, "train", 4, contrast="silence")
    assert all(not p.corrupt_audios[0].any() and len(p.corrupt_audios[0]) == len(p.audios[0]) for p in silent)
    _, processor = build_audio_lab_model()
    batch = collate_preference(processor, pairs, ("chosen", "rejected", "chosen_corrupt"))
    assert batch.inputs["input_features"].shape[0] == 3 * len(pairs)

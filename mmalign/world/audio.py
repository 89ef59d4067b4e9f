"""The lab's audio channel: sounds made from a scene, audio-grounded questions, audio blindness and audio-contrast
pairs.

A scene sounds as **one beep per object**, left to right, each at the pitch of the object's colour (``PITCH``,
spaced evenly on the mel scale so that neighbouring colours fall about two of the tiny extractor's 16 mel bins
apart); a faint object beeps quietly, the audio twin of its low contrast. Every clip of a task has the same length:
a first version let the clip's length (hence its number of audio tokens) grow with the beep count, and a model
answered "how many beeps" right with the clip silenced. Onsets, loudness and a little noise are
drawn from the scene's own random stream, so a clip is a pure function of (world seed, split, index). Tasks:

| task | prompt | answer |
|---|---|---|
| ``beeps`` | how many beeps do you hear ? | the number of objects |
| ``tone`` | what colour is the tone ? | the colour of one object, played alone as a longer tone |

**Audio blindness** is answering from the text prior: the same answer with the clip replaced by silence
(``audio_blindness``). **Audio-contrast pairs** (``audio_pairs``) carry the clip A and a corrupted A' (silence, or
another scene's clip whose answer is the rejected one), so mDPO's conditional term rewards y_w under A over A',
as it does for images.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from mmalign.data.preference import PreferenceRecord
from mmalign.world import language as L
from mmalign.world.scenes import Scene, WorldConfig, sample_scene, scene_rng
from mmalign.world.scoring import exact_match

RATE = 16000
WORDS = ("hear", "beep", "beeps", "tone", "you", "silence")   # what the audio prompts add to the lab's vocabulary
BEEP_S, GAP_S, TONE_S = 0.08, 0.1, 0.5
BEEPS_CLIP_S = 0.9   # every beeps clip: its length (so its audio token count) must not tell the count


def _mel_to_hz(mel: float) -> float:
    return 700.0 * (10 ** (mel / 2595.0) - 1)


PITCH = {c: _mel_to_hz(400.0 + 300.0 * k) for k, c in enumerate(L.ALL_COLOURS)}   # Hz, 300 Hz (red) to 6 kHz


def _wave(freq: float, seconds: float, amplitude: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    ramp = np.minimum(1.0, np.minimum(t, seconds - t) / 0.01)       # 10 ms fades: no clicks
    return amplitude * ramp * np.sin(2 * np.pi * freq * t)


def _amplitude(rng: np.random.Generator, faint: bool) -> float:
    return float(rng.uniform(0.03, 0.06) if faint else rng.uniform(0.3, 0.6))


def beeps_clip(scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """One beep per object, left to right, at its colour's pitch (faint objects quiet)."""
    clip = np.zeros(int(RATE * BEEPS_CLIP_S))
    at = float(rng.uniform(0.0, 0.1))
    for o in sorted(scene.objects, key=lambda o: o.center[0]):
        w = _wave(PITCH[o.colour], BEEP_S, _amplitude(rng, o.faint))
        start = int(at * RATE)
        clip[start:start + len(w)] += w
        at += BEEP_S + float(rng.uniform(0.8, 1.2)) * GAP_S
    return _noisy(clip, rng)


def tone_clip(colour: str, rng: np.random.Generator, faint: bool = False) -> np.ndarray:
    return _noisy(_wave(PITCH[colour], TONE_S, _amplitude(rng, faint)), rng)


def _noisy(clip: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return (clip + rng.normal(0.0, 0.005, clip.shape)).astype(np.float32)


def silence_like(clip: np.ndarray) -> np.ndarray:
    return np.zeros_like(clip)


# ---- tasks -------------------------------------------------------------------------------------------------

def _beeps(scene: Scene, rng: np.random.Generator) -> dict:
    n = str(len(scene.objects))
    return dict(prompt="how many beeps do you hear ?", clip=beeps_clip(scene, rng), answer=n, meta={})


def _tone(scene: Scene, rng: np.random.Generator) -> dict:
    o = scene.objects[int(rng.integers(len(scene.objects)))]
    return dict(prompt="what colour is the tone ?", clip=tone_clip(o.colour, rng, o.faint), answer=o.colour,
                meta={"faint": o.faint})


AUDIO_TASKS = {"beeps": _beeps, "tone": _tone}


def make_audio_example(cfg: WorldConfig, task: str, split: str, index: int) -> dict:
    """The example of audio ``task`` on scene ``split``/``index``, in ``build_inputs``' form (no images) with the
    lab's example fields (``id``, ``task``, ``answer``, ``meta``, ``scenes``)."""
    scene = sample_scene(cfg, split, index)
    ex = AUDIO_TASKS[task](scene, scene_rng(cfg, split, index, stream=2000 + list(AUDIO_TASKS).index(task)))
    return {"id": f"{split}-{index:06d}-{task}", "task": task, "images": [], "audios": [ex.pop("clip")],
            "sampling_rate": RATE, "response": ex["answer"], "scenes": [scene.to_dict()], **ex}


def audio_examples(cfg: WorldConfig, split: str, n: int, tasks: tuple[str, ...] = tuple(AUDIO_TASKS),
                   first: int = 0) -> list[dict]:
    """``n`` examples, the tasks taking turns over consecutive scenes."""
    return [make_audio_example(cfg, tasks[i % len(tasks)], split, first + i) for i in range(n)]


def muted(example: dict) -> dict:
    """The example with every clip replaced by silence of the same length."""
    return {**example, "audios": [silence_like(c) for c in example["audios"]]}


def audio_blindness(answers: list[str], muted_answers: list[str], examples: list[dict]) -> dict:
    """How much a model's answers depend on the audio. ``unchanged``: the share of answers that stay the same
    when the clip is silenced (1.0 = fully audio-blind); ``muted_accuracy``: accuracy with silence, which only the
    text prior can earn; ``prior_accuracy``: that of always giving the most common answer of each task."""
    n = len(examples)
    prior = {t: Counter(e["answer"] for e in examples if e["task"] == t).most_common(1)[0][0]
             for t in {e["task"] for e in examples}}
    return {"accuracy": sum(exact_match(a, e["answer"]) for a, e in zip(answers, examples)) / n,
            "muted_accuracy": sum(exact_match(a, e["answer"]) for a, e in zip(muted_answers, examples)) / n,
            "prior_accuracy": sum(prior[e["task"]] == e["answer"] for e in examples) / n,
            "unchanged": sum(exact_match(a, b) for a, b in zip(answers, muted_answers)) / n, "n": n}


# ---- audio-contrast pairs ----------------------------------------------------------------------------------

def audio_pairs(cfg: WorldConfig, split: str, n: int, *, contrast: str = "wrong_clip",
                tasks: tuple[str, ...] = tuple(AUDIO_TASKS), first: int = 0) -> list[PreferenceRecord]:
    """Pairs ``(x, A, y_w = the answer, y_l = a wrong answer)`` with A' for the audio-contrast term.

    ``contrast="wrong_clip"``: y_l is the answer of the next scene with another answer to the same task and A' is
    that scene's clip, so y_l is right for A' and y_w is not (mDPO's corrupted condition, made exact by the world);
    ``"silence"``: A' is silence and y_l the next scene's answer all the same."""
    if contrast not in ("wrong_clip", "silence"):
        raise ValueError(f"contrast must be 'wrong_clip' or 'silence', not {contrast!r}")
    out = []
    for i in range(n):
        ex = make_audio_example(cfg, tasks[i % len(tasks)], split, first + i)
        other = next(o for k in range(1, 1000)
                     if (o := make_audio_example(cfg, ex["task"], split, first + i + k))["answer"] != ex["answer"])
        corrupt = other["audios"] if contrast == "wrong_clip" else [silence_like(ex["audios"][0])]
        out.append(PreferenceRecord(id=f"{ex['id']}-{contrast}", prompt=ex["prompt"], images=[], chosen=ex["answer"],
                                    rejected=other["answer"], audios=ex["audios"], corrupt_audios=corrupt,
                                    sampling_rate=RATE, task=ex["task"], meta={"other": other["id"]}))
    return out


# ---- the lab's audio model ---------------------------------------------------------------------------------

def build_audio_lab_model(*, audio: dict | None = None, text: dict | None = None, seed: int = 0):
    """A fresh tiny Qwen2-Audio over the lab's vocabulary plus ``WORDS``, clips at ``RATE`` in a 1 s window."""
    from mmalign.models.audio import audio_tokenizer, build_qwen2_audio
    return build_qwen2_audio(audio_tokenizer(L.VOCAB + WORDS), audio=audio, text=text, sampling_rate=RATE, seed=seed)

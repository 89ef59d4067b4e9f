"""The tiny Qwen2-Audio end to end: inputs, log-probs against plain per-example forwards, the packed path's
refusal, save/reload with plain transformers, and DPO raising the chosen-vs-rejected margin."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

from mmalign.data.collate import collate_preference
from mmalign.data.pack import collate_packed
from mmalign.data.preference import write_preference_file
from mmalign.errors import MMAlignError
from mmalign.models import build_llava
from mmalign.models.inputs import IGNORE_INDEX, build_inputs, prompt_text
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.logprobs import preference_logps
from mmalign.train.loop import TrainConfig
from mmalign.train.preference import LossConfig, PreferenceConfig, PreferenceDataConfig, run_preference

from .conftest import RATE, audio_records, tone

TOL = dict(rtol=1e-5, atol=1e-5)
VIEWS = ("chosen", "rejected", "chosen_corrupt", "kl")


def audio_tokens(processor, ids) -> int:
    return int((torch.as_tensor(ids) == processor.tokenizer.convert_tokens_to_ids("<|AUDIO|>")).sum())


def test_each_clip_expands_to_its_own_number_of_audio_tokens(audio_model):
    _, processor = audio_model
    ex = [{"images": [], "audios": [tone(440, s)], "sampling_rate": RATE, "prompt": "how many beeps ?",
           "response": "2"} for s in (1.0, 0.4)]
    batch = build_inputs(processor, ex)
    frames = [100, 40]                                  # 100 mel frames per second
    expect = [((n - 1) // 2 + 1 - 2) // 2 + 1 for n in frames]
    assert [audio_tokens(processor, row) for row in batch["input_ids"]] == expect == [25, 10]
    assert batch["input_features"].shape == (2, 16, 100)
    assert batch["feature_attention_mask"].sum(1).tolist() == frames
    for row, labels in zip(batch["input_ids"], batch["labels"]):   # labels: the answer and end-of-turn only
        kept = labels[labels != IGNORE_INDEX].tolist()
        assert processor.tokenizer.decode(kept) == "2 <|im_end|>"


@pytest.mark.parametrize("change,message", [
    (dict(sampling_rate=8000), "example 0: clips at 8000 Hz, but the feature extractor takes 16000 Hz"),
    (dict(audios=[tone(440, 1.5)]), "example 0: clip 0 has 24000 samples, more than the feature extractor's window"),
])
def test_clips_the_extractor_would_misread_are_refused(audio_model, change, message):
    ex = {"images": [], "audios": [tone(440)], "sampling_rate": RATE, "prompt": "how many beeps ?", "response": "2"}
    with pytest.raises(MMAlignError, match=message):
        build_inputs(audio_model[1], [ex | change])


def test_a_modality_the_processor_lacks_is_refused(audio_model):
    _, llava = build_llava()
    with pytest.raises(MMAlignError, match="example 0 has audio clips, but LlavaProcessor takes no audio"):
        build_inputs(llava, [{"images": [], "audios": [tone(440)], "sampling_rate": RATE, "prompt": "hi",
                              "response": "yes"}])
    from PIL import Image
    with pytest.raises(MMAlignError, match="example 0 has images, but Qwen2AudioProcessor takes no images"):
        build_inputs(audio_model[1], [{"images": [Image.new("RGB", (8, 8))], "prompt": "hi", "response": "yes"}])


def plain_sum(model, processor, audios, prompt, response) -> tuple[float, int]:
    """One example alone, no padding, read off a log_softmax by hand."""
    ex = {"images": [], "audios": audios, "sampling_rate": RATE, "prompt": prompt}
    ptext = prompt_text(processor, ex)
    kw = dict(audio=audios, sampling_rate=RATE, return_tensors="pt")
    full = processor(text=[ptext + response + processor.tokenizer.eos_token], **kw)
    n_prompt = processor(text=[ptext], **kw)["input_ids"].shape[1]
    with torch.no_grad():
        logp = torch.log_softmax(model(**full).logits[0].float(), -1)
    ids = full["input_ids"][0]
    pos = torch.arange(n_prompt, len(ids))
    return float(logp[pos - 1].gather(1, ids[pos][:, None]).sum()), len(pos)


def test_views_equal_plain_forwards(audio_model):
    model, processor = audio_model
    recs = audio_records()
    with torch.no_grad():
        out = preference_logps(model, collate_preference(processor, recs, VIEWS))
    partners = recs[1:] + recs[:1]
    expect = {"chosen": [(r.audios, r.prompt, r.chosen) for r in recs],
              "rejected": [(r.audios, r.prompt, r.rejected) for r in recs],
              "chosen_corrupt": [(r.corrupt_audios, r.prompt, r.chosen) for r in recs],
              "kl": [(r.audios, r.prompt, p.chosen) for r, p in zip(recs, partners)]}
    for view, examples in expect.items():
        sums, counts = zip(*(plain_sum(model, processor, *ex) for ex in examples))
        torch.testing.assert_close(getattr(out, view).sum, torch.tensor(sums), **TOL, msg=f"view {view}")
        assert getattr(out, view).count.tolist() == list(counts)
    assert not torch.allclose(out.chosen.sum, out.chosen_corrupt.sum)    # A' is what the corrupt view hears


def test_packed_path_refuses_audio_records(audio_model):
    with pytest.raises(MMAlignError, match="the packed path handles images only; set data.packed=false"):
        collate_packed(audio_model[1], audio_records())


def test_saved_folder_reloads_with_plain_transformers_and_mmalign(audio_model, tmp_path):
    model, processor = audio_model
    model.save_pretrained(tmp_path)
    processor.save_pretrained(tmp_path)
    again = Qwen2AudioForConditionalGeneration.from_pretrained(tmp_path).eval()
    batch = collate_preference(AutoProcessor.from_pretrained(tmp_path), audio_records())
    mm_model, mm_processor = load_model(ModelConfig(path=str(tmp_path), freeze_vision=True))
    assert not any(p.requires_grad for p in mm_model.model.audio_tower.parameters())   # the audio encoder
    with torch.no_grad():
        a = preference_logps(model, batch).chosen.sum
        b = preference_logps(again, batch).chosen.sum
        c = preference_logps(mm_model.eval(), collate_preference(mm_processor, audio_records())).chosen.sum
    torch.testing.assert_close(a, b)
    torch.testing.assert_close(a, c)


def margins(model, processor, records) -> torch.Tensor:
    with torch.no_grad():
        out = preference_logps(model.eval(), collate_preference(processor, records))
    return out.chosen.sum - out.rejected.sum


@pytest.mark.parametrize("loss", ["dpo", "mdpo"])
def test_dpo_steps_raise_the_margin(audio_model, tmp_path, loss):
    model, processor = audio_model
    model.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    recs = audio_records() * 3
    recs = [dataclasses.replace(r, id=f"{r.id}-{i}") for i, r in enumerate(recs)]
    data = write_preference_file(recs, tmp_path / "pairs.jsonl")
    cfg = PreferenceConfig(
        model=ModelConfig(path=str(tmp_path / "base")), cache_dir=str(tmp_path / "cache"), eval_scenes=0,
        loss=LossConfig(name=loss, nll_weight=0.0),
        data=PreferenceDataConfig(source=str(data), val_size=3, packed=False),
        train=TrainConfig(output_dir=str(tmp_path / "out"), max_steps=6, batch_size=3, lr=2e-3, warmup_steps=0,
                          log_every=1, eval_every=0, threads=1))
    run_preference(cfg)
    trained, _ = load_model(ModelConfig(path=str(tmp_path / "out" / "model")))
    before, after = margins(model, processor, recs[:6]), margins(trained, processor, recs[:6])
    assert (after > before + 0.5).all(), (before, after)


def test_packed_default_fails_clearly_in_the_trainer(audio_model, tmp_path):
    model, processor = audio_model
    model.save_pretrained(tmp_path / "base")
    processor.save_pretrained(tmp_path / "base")
    recs = [dataclasses.replace(r, id=f"{r.id}-{i}") for i, r in enumerate(audio_records() * 2)]
    cfg = PreferenceConfig(model=ModelConfig(path=str(tmp_path / "base")), cache_dir=str(tmp_path / "cache"),
                           eval_scenes=0, data=PreferenceDataConfig(
                               source=str(write_preference_file(recs, tmp_path / "p.jsonl")), val_size=2),
                           train=TrainConfig(output_dir=str(tmp_path / "out"), max_steps=1, batch_size=2, threads=1))
    with pytest.raises(MMAlignError, match="set data.packed=false"):
        run_preference(cfg)


def test_silence_and_a_tone_are_different_reference_cache_entries():
    from mmalign.train.reference import data_fingerprint
    a = audio_records()[:1]
    b = [dataclasses.replace(a[0], audios=[np.zeros_like(a[0].audios[0])])]
    assert data_fingerprint(a, ("chosen",), {}) != data_fingerprint(b, ("chosen",), {})

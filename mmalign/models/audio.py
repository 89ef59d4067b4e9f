"""A random-weight Qwen2-Audio (Whisper-style encoder, linear projector, Qwen2 decoder) with its processor, built
offline from transformers' own classes: the audio counterpart of ``mmalign.models.tiny``.

The processor is transformers' ``Qwen2AudioProcessor`` over a ``WhisperFeatureExtractor`` (log-mel features in
numpy: no torchaudio, no torchvision) and the lab's word-level tokenizer with Qwen2-Audio's three audio tokens.
The extractor pads every clip to ``window_s`` seconds and the encoder's positions are sized to that window, so a
clip of ``n`` mel frames becomes ``((n - 1) // 2 + 1 - 2) // 2 + 1`` ``<|AUDIO|>`` tokens (25 for a full 1 s
window at the default 100 frames per second). The saved folder reloads with plain transformers
(``Qwen2AudioForConditionalGeneration``, ``AutoProcessor``).
"""
from __future__ import annotations

from transformers import (
    PreTrainedTokenizerBase,
    Qwen2AudioConfig,
    Qwen2AudioForConditionalGeneration,
    Qwen2AudioProcessor,
    WhisperFeatureExtractor,
)

from mmalign.models.tiny import _build, _text
from mmalign.world.language import VOCAB
from mmalign.world.tokenizer import CHAT_TEMPLATE, build_tokenizer

AUDIO_SPECIALS = ("<|audio_bos|>", "<|AUDIO|>", "<|audio_eos|>")
# The lab template, with an audio block as Qwen2-Audio writes it (images stay as they were).
AUDIO_TEMPLATE = CHAT_TEMPLATE.replace(
    "{% if item['type'] == 'image' %}<image>",
    "{% if item['type'] == 'audio' %}<|audio_bos|><|AUDIO|><|audio_eos|>{% elif item['type'] == 'image' %}<image>")


def audio_tokenizer(words: tuple[str, ...] = VOCAB) -> PreTrainedTokenizerBase:
    return build_tokenizer(words, extra_special=AUDIO_SPECIALS, chat_template=AUDIO_TEMPLATE)


def build_qwen2_audio(tokenizer: PreTrainedTokenizerBase | None = None, *, audio: dict | None = None,
                      text: dict | None = None, sampling_rate: int = 16000, window_s: int = 1, n_mels: int = 16,
                      hop_length: int = 160, seed: int = 0):
    """``(model, processor)``: ``audio`` overrides the encoder's small defaults, ``text`` the decoder's."""
    tok = tokenizer or audio_tokenizer()
    frames = window_s * sampling_rate // hop_length
    audio_cfg = {"encoder_layers": 2, "encoder_attention_heads": 2, "d_model": 32, **(audio or {}),
                 "num_mel_bins": n_mels, "max_source_positions": frames // 2}   # after the stride-2 convolution
    audio_cfg.setdefault("encoder_ffn_dim", 2 * audio_cfg["d_model"])
    text_cfg = {"model_type": "qwen2", **_text(tok, text, tok.eos_token_id)}
    config = Qwen2AudioConfig(audio_config=audio_cfg, text_config=text_cfg,
                              audio_token_index=tok.convert_tokens_to_ids("<|AUDIO|>"))
    config.tie_word_embeddings = False
    extractor = WhisperFeatureExtractor(feature_size=n_mels, sampling_rate=sampling_rate, hop_length=hop_length,
                                        chunk_length=window_s, n_fft=400)
    processor = Qwen2AudioProcessor(feature_extractor=extractor, tokenizer=tok, chat_template=tok.chat_template)
    return _build(Qwen2AudioForConditionalGeneration, config, tok, seed), processor


AUDIO_FAMILIES = {"qwen2_audio": build_qwen2_audio}

"""Random-weight LLaVA, Qwen2-VL and Idefics3 models with their processors, built from configs (no download).

Each builder returns ``(model, processor)``. The ``vision`` and ``text`` dicts override small defaults, so the same
builders make the unit-test models (a few hundred thousand parameters) and the lab model (bigger dicts). ``image_size``
and ``patch_size`` fix the image geometry for both the model and its image processor. The vocabulary is the lab's
word-level one (``mmalign.world.tokenizer``) with each family's own special tokens and chat template, so the saved
folders reload with plain ``transformers``.
"""
from __future__ import annotations

import torch
from transformers import (
    CLIPVisionConfig,
    Idefics3Config,
    Idefics3ForConditionalGeneration,
    Idefics3Processor,
    LlamaConfig,
    LlavaConfig,
    LlavaForConditionalGeneration,
    LlavaProcessor,
    PreTrainedModel,
    PreTrainedTokenizerBase,
    Qwen2VLConfig,
    Qwen2VLForConditionalGeneration,
)
from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil
from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

from mmalign.models.processors import Qwen2VLImageOnlyProcessor
from mmalign.world.tokenizer import CHAT_TEMPLATE, build_tokenizer

QWEN_SPECIALS = ("<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>")
QWEN_TEMPLATE = CHAT_TEMPLATE.replace("<image>", "<|vision_start|><|image_pad|><|vision_end|>")

IDEFICS_SPECIALS = ("<fake_token_around_image>", "<image>", "<end_of_utterance>", "<global-img>")
IDEFICS_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] | capitalize }}:"
    "{% if message['content'] is string %}{{ message['content'] }}{% else %}{% for item in message['content'] %}"
    "{% if item['type'] == 'image' %}<image>{% elif item['type'] == 'text' %}{{ item['text'] }}{% endif %}"
    "{% endfor %}{% endif %}<end_of_utterance>\n{% endfor %}"
    "{% if add_generation_prompt %}Assistant:{% endif %}"
)


def _vision(defaults: dict, override: dict | None, **fixed) -> dict:
    """Defaults, then the caller's dict, then the geometry; the MLP width follows the hidden size unless given."""
    cfg = {**defaults, **(override or {}), **fixed}
    cfg.setdefault("intermediate_size", 4 * cfg["hidden_size"])
    return cfg


def _text(tok: PreTrainedTokenizerBase, override: dict | None, eos_id: int) -> dict:
    cfg = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           **(override or {})}
    cfg.setdefault("intermediate_size", 2 * cfg["hidden_size"])
    return {**cfg, "vocab_size": len(tok), "pad_token_id": tok.pad_token_id, "eos_token_id": eos_id,
            "bos_token_id": None, "tie_word_embeddings": False}


def _build(model_cls, config, tok: PreTrainedTokenizerBase, seed: int) -> PreTrainedModel:
    with torch.random.fork_rng():  # seeded init without disturbing the caller's random stream
        torch.manual_seed(seed)
        model = model_cls(config)
    model.generation_config.pad_token_id = tok.pad_token_id
    model.generation_config.eos_token_id = tok.eos_token_id
    return model.eval()


def build_llava(tokenizer: PreTrainedTokenizerBase | None = None, *, vision: dict | None = None,
                text: dict | None = None, image_size: int = 64, patch_size: int = 16, seed: int = 0):
    """CLIP vision tower + Llama decoder; ``(image_size / patch_size)**2`` ``<image>`` tokens per image."""
    tok = tokenizer or build_tokenizer()
    vision_cfg = _vision({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}, vision,
                         image_size=image_size, patch_size=patch_size)
    config = LlavaConfig(
        vision_config=CLIPVisionConfig(**vision_cfg), text_config=LlamaConfig(**_text(tok, text, tok.eos_token_id)),
        image_token_index=tok.convert_tokens_to_ids("<image>"), vision_feature_select_strategy="default",
        vision_feature_layer=-1, image_seq_length=(image_size // patch_size) ** 2, tie_word_embeddings=False,
    )
    image_processor = CLIPImageProcessorPil(size={"shortest_edge": image_size},
                                            crop_size={"height": image_size, "width": image_size})
    # CLIP adds a CLS token that the "default" strategy drops again: one extra, one removed.
    processor = LlavaProcessor(image_processor=image_processor, tokenizer=tok, patch_size=patch_size,
                               vision_feature_select_strategy="default", num_additional_image_tokens=1,
                               chat_template=tok.chat_template)
    return _build(LlavaForConditionalGeneration, config, tok, seed), processor


def mrope_section(head_dim: int) -> list[int]:
    """Split ``head_dim / 2`` rotary pairs over (time, height, width) in Qwen2-VL's 2:3:3 proportion."""
    half = head_dim // 2
    t = half // 4
    h = (half - t) // 2
    return [t, h, half - t - h]


def build_qwen2_vl(tokenizer: PreTrainedTokenizerBase | None = None, *, vision: dict | None = None,
                   text: dict | None = None, image_size: int = 64, patch_size: int = 14, seed: int = 0):
    """Qwen2-VL with 3-D M-RoPE; images are resized to at most ``image_size**2`` pixels, merged 2x2 into tokens."""
    tok = tokenizer or build_tokenizer(extra_special=QWEN_SPECIALS, chat_template=QWEN_TEMPLATE)
    ids = {t: tok.convert_tokens_to_ids(t) for t in QWEN_SPECIALS}
    text_cfg = _text(tok, text, tok.eos_token_id)
    head_dim = text_cfg["hidden_size"] // text_cfg["num_attention_heads"]
    text_cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 1e4, "mrope_section": mrope_section(head_dim)}
    vision_cfg = {"depth": 2, "embed_dim": 32, "num_heads": 2, "mlp_ratio": 2, "spatial_merge_size": 2,
                  "temporal_patch_size": 2, **(vision or {}),
                  "patch_size": patch_size, "hidden_size": text_cfg["hidden_size"]}  # the merger feeds the decoder
    config = Qwen2VLConfig(
        text_config=text_cfg, vision_config=vision_cfg, image_token_id=ids["<|image_pad|>"],
        video_token_id=ids["<|video_pad|>"], vision_start_token_id=ids["<|vision_start|>"],
        vision_end_token_id=ids["<|vision_end|>"], tie_word_embeddings=False,
    )
    merge = vision_cfg["spatial_merge_size"]
    image_processor = Qwen2VLImageProcessorPil(
        size={"shortest_edge": (patch_size * merge) ** 2, "longest_edge": image_size**2}, patch_size=patch_size,
        temporal_patch_size=vision_cfg["temporal_patch_size"], merge_size=merge,
    )
    processor = Qwen2VLImageOnlyProcessor(image_processor=image_processor, tokenizer=tok,
                                          chat_template=tok.chat_template)
    return _build(Qwen2VLForConditionalGeneration, config, tok, seed), processor


def build_idefics3(tokenizer: PreTrainedTokenizerBase | None = None, *, vision: dict | None = None,
                   text: dict | None = None, image_size: int = 64, patch_size: int = 16, scale_factor: int = 2,
                   seed: int = 0):
    """Idefics3 (SigLIP-style vision, pixel-shuffle connector, Llama decoder); no image splitting."""
    if tokenizer is None:
        tokenizer = build_tokenizer(extra_special=IDEFICS_SPECIALS, chat_template=IDEFICS_TEMPLATE)
        tokenizer.eos_token = "<end_of_utterance>"  # Idefics3 closes every turn with it
    tok = tokenizer
    vision_cfg = _vision({"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2}, vision,
                         image_size=image_size, patch_size=patch_size)
    config = Idefics3Config(
        vision_config=vision_cfg, text_config=_text(tok, text, tok.eos_token_id),
        image_token_id=tok.convert_tokens_to_ids("<image>"), scale_factor=scale_factor,
        pad_token_id=tok.pad_token_id, tie_word_embeddings=False,
    )
    image_processor = Idefics3ImageProcessorPil(size={"longest_edge": image_size},
                                                max_image_size={"longest_edge": image_size}, do_image_splitting=False)
    image_seq_len = (image_size // patch_size) ** 2 // scale_factor**2
    processor = Idefics3Processor(image_processor=image_processor, tokenizer=tok, image_seq_len=image_seq_len,
                                  chat_template=tok.chat_template)
    return _build(Idefics3ForConditionalGeneration, config, tok, seed), processor


FAMILIES = {"llava": build_llava, "qwen2_vl": build_qwen2_vl, "idefics3": build_idefics3}

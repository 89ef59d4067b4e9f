"""The lab's tiny MLLM: a real LLaVA (CLIP vision tower, MLP projector, Llama decoder) sized for a CPU.

64x64 images at patch 16 give 16 image tokens; with the word-level tokenizer a caption example is ~40 tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from transformers import CLIPVisionModel

from mmalign.models.tiny import build_llava
from mmalign.world.tokenizer import build_tokenizer


@dataclass
class LabModelConfig:
    patch_size: int = 16
    vision_hidden: int = 128
    vision_layers: int = 4
    vision_heads: int = 4
    vision_mlp: int = 512
    text_hidden: int = 128
    text_layers: int = 3
    text_heads: int = 4
    text_mlp: int = 384
    seed: int = 0


def vision_dict(mc: LabModelConfig) -> dict:
    return dict(hidden_size=mc.vision_hidden, intermediate_size=mc.vision_mlp, num_hidden_layers=mc.vision_layers,
                num_attention_heads=mc.vision_heads, projection_dim=mc.vision_hidden)


def text_dict(mc: LabModelConfig) -> dict:
    return dict(hidden_size=mc.text_hidden, intermediate_size=mc.text_mlp, num_hidden_layers=mc.text_layers,
                num_attention_heads=mc.text_heads, num_key_value_heads=mc.text_heads)


def build_lab_model(mc: LabModelConfig, image_size: int, vision_tower: str | Path | None = None):
    """A fresh lab LLaVA and its processor; ``vision_tower`` loads a pretrained CLIP vision tower (stage 1)."""
    model, processor = build_llava(build_tokenizer(), vision=vision_dict(mc), text=text_dict(mc),
                                   image_size=image_size, patch_size=mc.patch_size, seed=mc.seed)
    if vision_tower:
        pretrained = CLIPVisionModel.from_pretrained(vision_tower)
        model.model.vision_tower.load_state_dict(pretrained.state_dict())
    return model, processor

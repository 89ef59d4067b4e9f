"""Load any image-text-to-text model (or audio-text-to-text: Qwen2-Audio) and its processor from a folder or hub id;
dtype, freezing, LoRA.

The vision tower and the projector are found through one table of each family's attribute names (``PARTS``), which
also keeps default LoRA targets inside the language model. For an audio model the "vision tower" is its audio
encoder: ``freeze_vision`` freezes the encoder of whatever the non-text modality is.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from operator import attrgetter
from pathlib import Path

import torch
from peft import LoraConfig, PeftModel, get_peft_model
from transformers import (
    AutoConfig,
    AutoModelForImageTextToText,
    AutoProcessor,
    PreTrainedModel,
    Qwen2AudioForConditionalGeneration,
)

from mmalign.errors import MMAlignError
from mmalign.models.processors import Qwen2_5_VLImageOnlyProcessor, Qwen2VLImageOnlyProcessor

# model_type -> (vision tower, projector), as attribute paths from the ...ForConditionalGeneration model.
# Qwen2-VL's projector (the patch merger) lives inside its vision tower.
PARTS = {
    "llava": ("model.vision_tower", "model.multi_modal_projector"),
    "llava_next": ("model.vision_tower", "model.multi_modal_projector"),
    "llava_onevision": ("model.vision_tower", "model.multi_modal_projector"),
    "qwen2_vl": ("model.visual", "model.visual.merger"),
    "qwen2_5_vl": ("model.visual", "model.visual.merger"),
    "idefics3": ("model.vision_model", "model.connector"),
    "smolvlm": ("model.vision_model", "model.connector"),
    "qwen2_audio": ("model.audio_tower", "model.multi_modal_projector"),
}
# Families outside AutoModelForImageTextToText's table.
MODEL_CLASSES = {"qwen2_audio": Qwen2AudioForConditionalGeneration}
# Families whose shipped processor needs torchvision (for video); load the image-only subclass instead.
IMAGE_ONLY_PROCESSORS = {"qwen2_vl": Qwen2VLImageOnlyProcessor, "qwen2_5_vl": Qwen2_5_VLImageOnlyProcessor}


@dataclass
class LoraSettings:
    """LoRA adapters through peft.

    ``target_modules`` as a list of module names (the default ``["q_proj", "v_proj"]``) adapts those modules in the
    language model only: the vision tower and the projector are excluded. To adapt them too, pass a str, which goes
    to peft unchanged as a regex over full module names (e.g. ``r".*\\.(q_proj|v_proj)"``).
    """
    enabled: bool = False
    r: int = 8
    alpha: int = 16
    dropout: float = 0.0
    target_modules: list[str] | str = field(default_factory=lambda: ["q_proj", "v_proj"])


@dataclass
class ModelConfig:
    path: str = ""                       # a local model folder or a hub id
    dtype: str = "float32"               # float32 | bfloat16 | float16 | auto
    attn_implementation: str = "sdpa"
    freeze_vision: bool = False
    freeze_projector: bool = False
    gradient_checkpointing: bool = False
    lora: LoraSettings = field(default_factory=LoraSettings)
    trust_remote_code: bool = False      # run Python code shipped with the model (hub models with custom classes)
    allow_pickle: bool = False           # accept pickled weights (pytorch_model.bin), which can run code when loaded


def load_model(cfg: ModelConfig):
    """``(model, processor)`` as ``cfg`` asks: weights in ``cfg.dtype``, parts frozen, LoRA applied. Weights are
    read from safetensors only unless ``cfg.allow_pickle``; code shipped with a model runs only with
    ``cfg.trust_remote_code``."""
    model_type = _model_type(cfg.path, cfg.trust_remote_code)
    dtype = cfg.dtype if cfg.dtype == "auto" else getattr(torch, cfg.dtype)
    try:
        model = MODEL_CLASSES.get(model_type, AutoModelForImageTextToText).from_pretrained(
            cfg.path, dtype=dtype, attn_implementation=cfg.attn_implementation,
            use_safetensors=None if cfg.allow_pickle else True, trust_remote_code=cfg.trust_remote_code)
    except OSError as e:
        if cfg.allow_pickle or "safetensors" not in str(e):
            raise
        raise MMAlignError(f"{cfg.path!r} has no safetensors weights; pickled weights (pytorch_model.bin) can run "
                           "code when loaded: convert them to safetensors, or set model.allow_pickle=true for a "
                           "source you trust") from None
    processor_cls = IMAGE_ONLY_PROCESSORS.get(model_type, AutoProcessor)
    processor = processor_cls.from_pretrained(cfg.path, trust_remote_code=cfg.trust_remote_code)
    if cfg.freeze_vision:
        _freeze(vision_params(model))
    if cfg.freeze_projector:
        _freeze(projector(model).parameters())
    if cfg.gradient_checkpointing:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    if cfg.lora.enabled:
        model = get_peft_model(model, lora_config(model, cfg.lora))
    return model, processor


def _model_type(path: str, trust_remote_code: bool = False) -> str:
    if not path:
        raise MMAlignError("no model given: ModelConfig.path is empty")
    looks_local = path.startswith((".", "/", "~")) or path.count("/") > 1 or "\\" in path
    if looks_local and not Path(path).expanduser().is_dir():
        raise MMAlignError(f"model folder not found: {path!r}")
    try:
        return AutoConfig.from_pretrained(path, trust_remote_code=trust_remote_code).model_type
    except (OSError, ValueError) as e:  # no config.json, unknown model type, or hub id not reachable
        reason = str(e).strip().splitlines()[0]
        if "custom code" in reason:
            reason += " It runs only with model.trust_remote_code=true, for a source you trust."
        raise MMAlignError(f"cannot load a model from {path!r}: {reason}") from None


def _base(model: PreTrainedModel) -> PreTrainedModel:
    """The transformers model under distributed (DDP, DeepSpeed), compile and peft wrappers: where ``config``
    and the model's helpers live. Forward passes still go through the wrapper."""
    from accelerate.utils import extract_model_from_parallel
    model = extract_model_from_parallel(model, keep_fp32_wrapper=True)
    return model.get_base_model() if isinstance(model, PeftModel) else model


def _parts(model: PreTrainedModel) -> tuple[str, str]:
    model_type = _base(model).config.model_type
    if model_type not in PARTS:
        raise MMAlignError(f"no vision tower/projector names known for model type {model_type!r}; "
                           f"known: {', '.join(PARTS)}")
    return PARTS[model_type]


def vision_tower(model: PreTrainedModel) -> torch.nn.Module:
    return attrgetter(_parts(model)[0])(_base(model))


def projector(model: PreTrainedModel) -> torch.nn.Module:
    return attrgetter(_parts(model)[1])(_base(model))


def vision_params(model: PreTrainedModel) -> list[torch.nn.Parameter]:
    """The vision tower's parameters without the projector's (Qwen2-VL nests the merger inside its tower)."""
    proj = {id(p) for p in projector(model).parameters()}
    return [p for p in vision_tower(model).parameters() if id(p) not in proj]


def _freeze(params) -> None:
    for p in params:
        p.requires_grad_(False)


def lora_config(model: PreTrainedModel, lora: LoraSettings) -> LoraConfig:
    targets = lora.target_modules
    if not isinstance(targets, str):  # names -> a regex that skips the vision tower and the projector
        skip = "|".join(re.escape(part) + r"\." for part in _parts(model))
        targets = rf"^(?!{skip}).*\.({'|'.join(map(re.escape, targets))})$"
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout, target_modules=targets)

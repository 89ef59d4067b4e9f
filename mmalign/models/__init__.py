"""Models: tiny random-weight builders, loading (dtype, freezing, LoRA) and turning examples into model inputs."""
from mmalign.models.inputs import IGNORE_INDEX, build_inputs
from mmalign.models.load import LoraSettings, ModelConfig, load_model, projector, vision_tower
from mmalign.models.processors import Qwen2_5_VLImageOnlyProcessor, Qwen2VLImageOnlyProcessor
from mmalign.models.tiny import FAMILIES, build_idefics3, build_llava, build_qwen2_vl

__all__ = [
    "FAMILIES",
    "IGNORE_INDEX",
    "LoraSettings",
    "ModelConfig",
    "Qwen2VLImageOnlyProcessor",
    "Qwen2_5_VLImageOnlyProcessor",
    "build_idefics3",
    "build_inputs",
    "build_llava",
    "build_qwen2_vl",
    "load_model",
    "projector",
    "vision_tower",
]

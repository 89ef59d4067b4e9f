"""Models: tiny random-weight builders, loading (dtype, freezing, LoRA) and turning examples into model inputs."""
from mmalign.models.inputs import IGNORE_INDEX, build_inputs
from mmalign.models.load import LoraSettings, ModelConfig, load_model, projector, vision_tower
from mmalign.models.processors import Qwen2_5_VLImageOnlyProcessor, Qwen2VLImageOnlyProcessor
from mmalign.models.tiny import FAMILIES, build_idefics3, build_llava, build_qwen2_vl

__all__ = [
    "IGNORE_INDEX", "build_inputs", "LoraSettings", "ModelConfig", "load_model", "projector", "vision_tower",
    "Qwen2_5_VLImageOnlyProcessor", "Qwen2VLImageOnlyProcessor", "FAMILIES", "build_idefics3", "build_llava",
    "build_qwen2_vl",
]

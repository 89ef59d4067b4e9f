"""Image-only processors for families whose shipped processor needs a video processor (and so torchvision).

``Qwen2VLProcessor`` checks its video processor's class even when it is ``None``, and that class imports torchvision,
which does not work beside the CPU torch build. These subclasses drop the video slot; everything else (image token
expansion, ``mm_token_type_ids``, saving) is the parent's.
"""
from __future__ import annotations

from transformers import Qwen2_5_VLProcessor, Qwen2VLProcessor


class Qwen2VLImageOnlyProcessor(Qwen2VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)


class Qwen2_5_VLImageOnlyProcessor(Qwen2_5_VLProcessor):
    def __init__(self, image_processor=None, tokenizer=None, chat_template=None, **kwargs):
        super().__init__(image_processor, tokenizer, None, chat_template=chat_template, **kwargs)

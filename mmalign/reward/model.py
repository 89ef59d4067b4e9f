"""A reward model ``r_phi(I, x, y)``: an image-text backbone with a scalar head (ALGORITHMS.md §3.1).

    r_phi(I, x, y) = w^T h_T,    h_T = the decoder's last hidden state (after its final norm) at position T,

where T is each row's last attended token. ``build_inputs`` lays a row out as ``prompt + response + end-of-turn``,
so T is the end-of-turn token that closes the response: the one position that has seen the whole image, prompt and
answer, and the token the policy's own "answer is over" decision is made on. T is found from the attention mask, so
the reward does not depend on the side padding is on or on the other rows of a batch.

The backbone is any ``...ForConditionalGeneration`` of transformers (LLaVA, Qwen2-VL, Idefics3, ...), optionally
wrapped in peft LoRA; its inner ``.model`` (vision tower + projector + decoder, without the LM head) gives the hidden
states, so no vocabulary-sized logits are computed. The head is a bias-free linear map (a bias cancels in
``r_w - r_l``) kept in float32 whatever the backbone's dtype.

A saved reward model is a plain model folder (the backbone's ``config.json`` and safetensors, the processor) plus
``reward_head.safetensors`` and ``reward_config.json``, which names the backbone class and describes the head. The
folder therefore also loads as a policy or value-model initialisation with ``mmalign.models.load.load_model``.
"""
from __future__ import annotations

import json
from pathlib import Path

import torch
from peft import PeftModel
from safetensors.torch import load_file, save_file

from mmalign.errors import MMAlignError
from mmalign.models.load import ModelConfig, _base, load_model

HEAD_FILE = "reward_head.safetensors"
CONFIG_FILE = "reward_config.json"
READS = "last attended token (the end-of-turn token closing the response)"


def last_token_index(attention_mask: torch.Tensor) -> torch.Tensor:
    """``(B,)`` position of each row's last attended token, left or right padding alike."""
    positions = torch.arange(attention_mask.shape[1], device=attention_mask.device)
    return (attention_mask.long() * positions).argmax(1)


def new_head(hidden_size: int, std: float, seed: int = 0) -> torch.nn.Linear:
    """``w ~ N(0, std^2)`` (the backbone's ``initializer_range``, as transformers' sequence-classification heads),
    drawn from its own seeded generator so the head does not depend on the caller's random stream."""
    head = torch.nn.Linear(hidden_size, 1, bias=False)
    with torch.no_grad():
        head.weight.normal_(0.0, std, generator=torch.Generator().manual_seed(seed))
    return head


class RewardModel(torch.nn.Module):
    """``forward(**inputs) -> (B,)`` rewards for a batch of ``build_inputs`` rows (labels not needed)."""

    def __init__(self, backbone: torch.nn.Module, head: torch.nn.Linear | None = None, seed: int = 0):
        super().__init__()
        self.backbone = backbone
        text = _base(backbone).config.get_text_config()
        self.head = head or new_head(text.hidden_size, getattr(text, "initializer_range", 0.02), seed)

    def hidden_states(self, inputs: dict) -> torch.Tensor:
        """``(B, T, H)`` last hidden states of the decoder, after its final norm."""
        inner = getattr(_base(self.backbone), "model", None)
        if inner is not None:
            return inner(**inputs).last_hidden_state
        out = self.backbone(**inputs, output_hidden_states=True, logits_to_keep=1)
        return out.hidden_states[-1]

    def forward(self, **inputs) -> torch.Tensor:
        inputs.pop("labels", None)
        hidden = self.hidden_states(inputs)
        last = last_token_index(inputs["attention_mask"])
        h_t = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
        return self.head(h_t.to(self.head.weight.dtype)).squeeze(-1)

    # ---- folders --------------------------------------------------------------------------------------------

    @classmethod
    def build(cls, cfg: ModelConfig, seed: int = 0):
        """``(reward model, processor)`` from ``cfg`` (dtype, freezing, LoRA as ``load_model`` applies them): a new
        head on a model folder, or the saved head when ``cfg.path`` is a reward-model folder."""
        backbone, processor = load_model(cfg)
        head = read_head(Path(cfg.path)) if (Path(cfg.path) / CONFIG_FILE).is_file() else None
        return cls(backbone, head, seed), processor

    @classmethod
    def from_pretrained(cls, folder: str | Path, dtype: str = "float32"):
        """``(reward model, processor)`` from a folder written by ``save_pretrained``."""
        folder = Path(folder)
        if not (folder / CONFIG_FILE).is_file():
            raise MMAlignError(f"{folder} is not a reward-model folder (no {CONFIG_FILE}; "
                               "train one with mmalign reward)")
        meta = json.loads((folder / CONFIG_FILE).read_text())
        backbone, processor = load_model(ModelConfig(path=str(folder), dtype=dtype))
        if type(backbone).__name__ != meta["backbone_class"]:
            raise MMAlignError(f"{folder}: {CONFIG_FILE} names backbone {meta['backbone_class']}, "
                               f"but the folder loads as {type(backbone).__name__}")
        return cls(backbone, read_head(folder)), processor

    def save_pretrained(self, folder: str | Path, processor=None) -> Path:
        """Write the folder (module docstring). LoRA adapters are merged into the backbone first, in place."""
        folder = Path(folder)
        if isinstance(self.backbone, PeftModel):
            self.backbone = self.backbone.merge_and_unload()
        self.backbone.save_pretrained(folder)
        if processor is not None:
            processor.save_pretrained(folder)
        weight = self.head.weight.detach().float().cpu().contiguous()
        save_file({"weight": weight}, str(folder / HEAD_FILE))
        meta = {"backbone_class": type(self.backbone).__name__, "model_type": self.backbone.config.model_type,
                "head": {"type": "linear", "in_features": weight.shape[1], "out_features": 1, "bias": False,
                         "dtype": "float32", "file": HEAD_FILE},
                "reads": READS}
        (folder / CONFIG_FILE).write_text(json.dumps(meta, indent=2) + "\n")
        return folder


def read_head(folder: Path) -> torch.nn.Linear:
    meta = json.loads((folder / CONFIG_FILE).read_text())["head"]
    if meta.get("type") != "linear" or meta.get("bias"):
        raise MMAlignError(f"{folder}: unsupported reward head {meta} (a bias-free linear head is expected)")
    head = torch.nn.Linear(meta["in_features"], 1, bias=False)
    head.load_state_dict(load_file(str(folder / meta.get("file", HEAD_FILE))))
    return head

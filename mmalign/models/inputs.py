"""Examples -> model inputs: the one place that applies the chat template, expands image tokens and builds labels.

An example is ``{"images": [PIL.Image, ...], "prompt": str | list[message], "response": str | None}``. A str prompt
is one user turn with the images first; a message list (TRL conversational format, ``{"type": "image"}`` blocks) is
used as is. Training inputs are ``prompt + response + end-of-turn`` padded on the right, with labels on the response
and the end-of-turn token only; generation inputs are the prompt alone, padded on the left.
"""
from __future__ import annotations

import torch
from transformers import BatchFeature, ProcessorMixin

from mmalign.errors import MMAlignError

IGNORE_INDEX = -100
# Per-token tensors that padding and truncation must follow; everything else is per image and is left alone.
TOKEN_KEYS = ("input_ids", "attention_mask", "mm_token_type_ids")


def prompt_messages(example: dict) -> list[dict]:
    prompt = example["prompt"]
    if isinstance(prompt, str):
        content = [{"type": "image"}] * len(example["images"]) + [{"type": "text", "text": prompt}]
        return [{"role": "user", "content": content}]
    return prompt


def prompt_text(processor: ProcessorMixin, example: dict) -> str:
    return processor.apply_chat_template(prompt_messages(example), add_generation_prompt=True, tokenize=False)


def build_inputs(processor: ProcessorMixin, examples: list[dict], *, max_length: int | None = None,
                 for_generation: bool = False) -> BatchFeature:
    """Tokenise, expand image tokens and pad a batch; training batches also get ``labels``.

    Truncation (``max_length``) drops tokens from the end of the response only; an example whose prompt (with its
    image tokens) leaves no room for a response raises ``MMAlignError``.
    """
    images = [list(ex["images"]) for ex in examples]
    images = images if any(images) else None
    prompts = [prompt_text(processor, ex) for ex in examples]
    if for_generation:
        batch = processor(images=images, text=prompts, padding=True, padding_side="left", return_tensors="pt")
        if max_length is not None:
            lengths = batch["attention_mask"].sum(1).tolist()
            _check_fits(lengths, lengths, max_length, room=0)
        return batch

    eot = processor.tokenizer.eos_token
    texts = [p + ex["response"] + eot for p, ex in zip(prompts, examples)]
    batch = processor(images=images, text=texts, padding=True, padding_side="right", return_tensors="pt")
    # The boundary is where the prompt, processed alone with the same images, ends: no string search.
    prompt_ids = processor(images=images, text=prompts)["input_ids"]
    return _with_labels(batch, prompt_ids, processor.tokenizer.pad_token_id, max_length)


def _with_labels(batch: BatchFeature, prompt_ids: list[list[int]], pad_id: int,
                 max_length: int | None) -> BatchFeature:
    ids = batch["input_ids"]
    full_len = batch["attention_mask"].sum(1)
    prompt_len = torch.tensor([len(p) for p in prompt_ids])
    for i, p in enumerate(prompt_ids):
        if ids[i, : len(p)].tolist() != list(p):
            raise MMAlignError(f"example {i}: the prompt's tokens are not a prefix of prompt + response "
                               "(the tokenizer merges across the boundary)")
    keep = full_len
    if max_length is not None:
        _check_fits(full_len.tolist(), prompt_len.tolist(), max_length, room=1)
        keep = full_len.clamp(max=max_length)
    width = int(keep.max())
    pos = torch.arange(width)[None]
    inside = pos < keep[:, None]
    out = {k: v for k, v in batch.items() if k not in TOKEN_KEYS}
    out["input_ids"] = ids[:, :width].masked_fill(~inside, pad_id)
    out["attention_mask"] = inside.long()
    if "mm_token_type_ids" in batch:
        out["mm_token_type_ids"] = batch["mm_token_type_ids"][:, :width].masked_fill(~inside, 0)
    out["labels"] = out["input_ids"].masked_fill(~inside | (pos < prompt_len[:, None]), IGNORE_INDEX)
    return BatchFeature(out)


def _check_fits(full_len: list[int], prompt_len: list[int], max_length: int, room: int) -> None:
    for i, (n, p) in enumerate(zip(full_len, prompt_len)):
        if p + room > max_length:
            raise MMAlignError(f"example {i} is {n} tokens long and its prompt alone {p} (image tokens included); "
                               f"max_length={max_length} would cut image tokens or leave no response")

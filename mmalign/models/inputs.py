"""Examples -> model inputs: the one place that applies the chat template, expands image tokens and builds labels.

An example is ``{"images": [PIL.Image, ...], "prompt": str | list[message], "response": str | None}``, and for
audio-language models also ``"audios": [1-D float array, ...]`` and their ``"sampling_rate"``. A str prompt is one
user turn with the clips first, then the images; a message list (TRL conversational format, ``{"type": "image"}`` and
``{"type": "audio"}`` blocks) is used as is. Training inputs are ``prompt + response + end-of-turn`` padded on the
right, with labels on the response and the end-of-turn token only; generation inputs are the prompt alone, padded on
the left.
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
        content = ([{"type": "audio"}] * len(example.get("audios") or ()) + [{"type": "image"}] * len(example["images"])
                   + [{"type": "text", "text": prompt}])
        return [{"role": "user", "content": content}]
    return prompt


def media(processor: ProcessorMixin, examples: list[dict]) -> dict:
    """The processor's media arguments for a batch: ``images`` (one list per example) when any example has one, and
    ``audio`` (every clip, in order) with its ``sampling_rate`` when any has a clip. A modality the processor has no
    part for, a rate other than its feature extractor's, or a clip longer than its window (which it would cut
    silently) raises ``MMAlignError`` naming the example."""
    out = {}
    images = [list(ex["images"]) for ex in examples]
    if any(images):
        if getattr(processor, "image_processor", None) is None:
            i = next(i for i, im in enumerate(images) if im)
            raise MMAlignError(f"example {i} has images, but {type(processor).__name__} takes no images")
        out["images"] = images
    if not any(ex.get("audios") for ex in examples):
        return out
    extractor = getattr(processor, "feature_extractor", None)
    for i, ex in enumerate(examples):
        if not ex.get("audios"):
            continue
        if extractor is None:
            raise MMAlignError(f"example {i} has audio clips, but {type(processor).__name__} takes no audio")
        if ex.get("sampling_rate") != extractor.sampling_rate:
            raise MMAlignError(f"example {i}: clips at {ex.get('sampling_rate')} Hz, but the feature extractor "
                               f"takes {extractor.sampling_rate} Hz (resample the clips)")
        for k, clip in enumerate(ex["audios"]):
            if len(clip) > extractor.n_samples:
                raise MMAlignError(f"example {i}: clip {k} has {len(clip)} samples, more than the feature "
                                   f"extractor's window of {extractor.n_samples} ({extractor.chunk_length} s)")
    out["audio"] = [clip for ex in examples for clip in ex.get("audios") or ()]
    out["sampling_rate"] = extractor.sampling_rate
    return out


def prompt_text(processor: ProcessorMixin, example: dict) -> str:
    return processor.apply_chat_template(prompt_messages(example), add_generation_prompt=True, tokenize=False)


def build_inputs(processor: ProcessorMixin, examples: list[dict], *, max_length: int | None = None,
                 for_generation: bool = False) -> BatchFeature:
    """Tokenise, expand image tokens and pad a batch; training batches also get ``labels``.

    Truncation (``max_length``) drops tokens from the end of the response only; an example whose prompt (with its
    image tokens) leaves no room for a response raises ``MMAlignError``.
    """
    kw = media(processor, examples)
    prompts = [prompt_text(processor, ex) for ex in examples]
    if for_generation:
        batch = processor(text=prompts, padding=True, padding_side="left", return_tensors="pt", **kw)
        if max_length is not None:
            lengths = batch["attention_mask"].sum(1).tolist()
            _check_fits(lengths, lengths, max_length, room=0)
        return batch

    eot = processor.tokenizer.eos_token
    texts = [p + ex["response"] + eot for p, ex in zip(prompts, examples)]
    batch = processor(text=texts, padding=True, padding_side="right", return_tensors="pt", **kw)
    # The boundary is where the prompt, processed alone with the same images and clips, ends: no string search.
    prompt_ids = processor(text=prompts, **kw)["input_ids"]
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

"""``build_inputs``: labels, image-token expansion, padding sides and truncation for every family."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from mmalign.errors import MMAlignError
from mmalign.models import IGNORE_INDEX, build_inputs


def expected_image_tokens(name, model, batch) -> int:
    """Tokens the processor should insert for all images of ``batch``, from the model config alone."""
    cfg = model.config
    if name == "llava":  # CLS dropped by the "default" feature strategy
        per_image = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2
        return per_image * batch["pixel_values"].shape[0]
    if name == "qwen2_vl":  # 64 px -> 56 px -> 4x4 patches -> 2x2 merged tokens
        assert batch["image_grid_thw"].tolist() == [[1, 4, 4]] * batch["image_grid_thw"].shape[0]
        return int(batch["image_grid_thw"].prod(-1).sum()) // cfg.vision_config.spatial_merge_size**2
    per_image = (cfg.vision_config.image_size // cfg.vision_config.patch_size) ** 2 // cfg.scale_factor**2
    return per_image * int(batch["pixel_attention_mask"].flatten(2).any(-1).sum())


def per_example_loss(model, batch) -> torch.Tensor:
    logits = model(**{k: v for k, v in batch.items() if k != "labels"}).logits[:, :-1]
    labels = batch["labels"][:, 1:]
    nll = F.cross_entropy(logits.transpose(1, 2), labels, ignore_index=IGNORE_INDEX, reduction="none")
    return nll.sum(1) / (labels != IGNORE_INDEX).sum(1)


def test_labels_are_the_response_and_end_of_turn(family, examples):
    _, _, processor = family
    tok = processor.tokenizer
    batch = build_inputs(processor, examples)
    for ids, labels, ex in zip(batch["input_ids"], batch["labels"], examples):
        where = (labels != IGNORE_INDEX).nonzero().flatten()
        assert torch.equal(where, torch.arange(where[0], where[-1] + 1))  # one contiguous span
        assert torch.equal(labels[where], ids[where])
        assert tok.decode(labels[where][:-1]) == ex["response"]
        assert labels[where][-1] == tok.eos_token_id
    assert batch["attention_mask"][0, -1] == 0 and batch["labels"][0, -1] == IGNORE_INDEX  # right padding


def test_image_tokens_match_the_config(family, examples):
    name, model, processor = family
    for batch in (build_inputs(processor, examples), build_inputs(processor, examples, for_generation=True)):
        n_image = int((batch["input_ids"] == model.config.image_token_id).sum())
        assert n_image == expected_image_tokens(name, model, batch)
    extras = {"llava": set(), "qwen2_vl": {"image_grid_thw", "mm_token_type_ids"}, "idefics3": {"pixel_attention_mask"}}
    assert set(batch) == {"input_ids", "attention_mask", "pixel_values"} | extras[name]


def test_message_list_prompt_matches_the_str_prompt(family, examples):
    _, _, processor = family
    ex = examples[1]
    content = [{"type": "image"}, {"type": "image"}, {"type": "text", "text": ex["prompt"]}]
    as_messages = {**ex, "prompt": [{"role": "user", "content": content}]}
    a, b = build_inputs(processor, [ex]), build_inputs(processor, [as_messages])
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_multi_turn_labels_only_the_last_response(family, examples):
    _, _, processor = family
    history = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "describe the image ."}]},
               {"role": "assistant", "content": [{"type": "text", "text": "a red circle ."}]},
               {"role": "user", "content": [{"type": "text", "text": "what colour is the circle ?"}]}]
    ex = {"images": examples[0]["images"], "prompt": history, "response": "red"}
    batch = build_inputs(processor, [ex])
    labels = batch["labels"][0]
    assert processor.tokenizer.decode(labels[labels != IGNORE_INDEX][:-1]) == "red"


def test_text_only_examples(family):
    _, model, processor = family
    batch = build_inputs(processor, [{"images": [], "prompt": "how many shapes are there ?", "response": "2"}])
    assert "pixel_values" not in batch and torch.isfinite(model(**batch).loss)


def test_loss_does_not_depend_on_batch_partners(family, examples):
    _, model, processor = family
    short, long = examples[0], {**examples[1], "response": examples[1]["response"] + " and the second image"}
    with torch.no_grad():
        alone = per_example_loss(model, build_inputs(processor, [short]))
        together = per_example_loss(model, build_inputs(processor, [short, long]))
    torch.testing.assert_close(together[0], alone[0], atol=1e-5, rtol=0)


def test_generation_does_not_depend_on_batch_partners(family, examples):
    _, model, processor = family
    kwargs = dict(max_new_tokens=3, do_sample=False, output_logits=True, return_dict_in_generate=True)
    alone = model.generate(**build_inputs(processor, examples[:1], for_generation=True), **kwargs)
    batch = build_inputs(processor, examples, for_generation=True)
    assert batch["attention_mask"][0, 0] == 0 and "labels" not in batch  # left padding, prompt only
    together = model.generate(**batch, **kwargs)
    for a, b in zip(alone.logits, together.logits):
        torch.testing.assert_close(b[0], a[0], atol=1e-5, rtol=0)
    n_new = len(alone.logits)
    assert torch.equal(together.sequences[0, -n_new:], alone.sequences[0, -n_new:])


def test_truncation_drops_the_end_of_the_response(family, examples):
    _, _, processor = family
    full = build_inputs(processor, examples)
    lengths = full["attention_mask"].sum(1)
    max_length = int(lengths[1]) - 2
    cut = build_inputs(processor, examples, max_length=max_length)
    assert cut["attention_mask"].sum(1).tolist() == [min(int(n), max_length) for n in lengths]
    assert torch.equal(cut["input_ids"][1], full["input_ids"][1, :max_length])
    n_labels = (full["labels"] != IGNORE_INDEX).sum(1)
    assert (cut["labels"] != IGNORE_INDEX).sum(1).tolist() == [int(n_labels[0]), int(n_labels[1]) - 2]
    assert all(torch.equal(cut[k], full[k]) for k in full if k not in ("input_ids", "attention_mask", "labels",
                                                                       "mm_token_type_ids"))


def test_truncation_refuses_to_cut_the_prompt(family, examples):
    _, _, processor = family
    lengths = build_inputs(processor, examples)["attention_mask"].sum(1).tolist()
    prompt_len = build_inputs(processor, examples, for_generation=True)["attention_mask"].sum(1).tolist()
    max_length = prompt_len[1] - 1  # example 1's prompt does not fit, example 0 keeps part of its response
    assert prompt_len[0] < max_length
    with pytest.raises(MMAlignError, match=rf"example 1 is {lengths[1]} tokens .*max_length={max_length} would cut "
                                           "image tokens"):
        build_inputs(processor, examples, max_length=max_length)
    with pytest.raises(MMAlignError, match="example 1"):
        build_inputs(processor, examples, max_length=max_length, for_generation=True)

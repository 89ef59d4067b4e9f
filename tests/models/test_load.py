"""``load_model``: processors per family, dtype, freezing exactly the asked parts, LoRA on the language model."""
from __future__ import annotations

import pytest
import torch

from mmalign.errors import MMAlignError
from mmalign.models import (
    LoraSettings,
    ModelConfig,
    Qwen2VLImageOnlyProcessor,
    build_inputs,
    load_model,
    projector,
    vision_tower,
)

# Parameter-name prefixes of each part, written out independently of mmalign's table.
VISION = {"llava": "model.vision_tower.", "qwen2_vl": "model.visual.", "idefics3": "model.vision_model."}
PROJECTOR = {"llava": "model.multi_modal_projector.", "qwen2_vl": "model.visual.merger.",
             "idefics3": "model.connector."}


@pytest.fixture(scope="session")
def saved(tiny_models, tmp_path_factory):
    root = tmp_path_factory.mktemp("models")
    for name, (model, processor) in tiny_models.items():
        model.save_pretrained(root / name)
        processor.save_pretrained(root / name)
    return {name: str(root / name) for name in tiny_models}


def trainable(model) -> set[str]:
    return {n for n, p in model.named_parameters() if p.requires_grad}


def part(model, name, *, vision=False, proj=False) -> set[str]:
    names = {n for n, _ in model.named_parameters()}
    in_proj = {n for n in names if n.startswith(PROJECTOR[name])}
    in_vision = {n for n in names if n.startswith(VISION[name])} - in_proj
    return (in_vision if vision else set()) | (in_proj if proj else set())


@pytest.mark.parametrize("name", list(VISION))
@pytest.mark.parametrize("freeze_vision,freeze_projector", [(False, False), (True, False), (False, True), (True, True)])
def test_freezing_leaves_exactly_the_rest_trainable(saved, name, freeze_vision, freeze_projector):
    model, _ = load_model(ModelConfig(path=saved[name], freeze_vision=freeze_vision,
                                      freeze_projector=freeze_projector))
    everything = {n for n, _ in model.named_parameters()}
    frozen = part(model, name, vision=freeze_vision, proj=freeze_projector)
    assert trainable(model) == everything - frozen
    assert part(model, name, vision=True) and part(model, name, proj=True)


@pytest.mark.parametrize("name", list(VISION))
def test_helpers_find_the_parts(saved, name):
    model, processor = load_model(ModelConfig(path=saved[name]))
    vision_names = {f"{VISION[name]}{n}" for n, _ in vision_tower(model).named_parameters()}
    assert {f"{PROJECTOR[name]}{n}" for n, _ in projector(model).named_parameters()} == part(model, name, proj=True)
    assert vision_names - part(model, name, proj=True) == part(model, name, vision=True)
    assert isinstance(processor, Qwen2VLImageOnlyProcessor) == (name == "qwen2_vl")


@pytest.mark.parametrize("name", list(VISION))
def test_lora_adapts_only_the_language_model_by_default(saved, name, examples):
    model, processor = load_model(ModelConfig(path=saved[name], lora=LoraSettings(enabled=True, r=4)))
    names = trainable(model)
    assert names and all(".lora_" in n for n in names)
    assert {n.split(".")[-4] for n in names} == {"q_proj", "v_proj"}
    assert not any(VISION[name] in n or PROJECTOR[name] in n for n in names)
    loss = model(**build_inputs(processor, examples)).loss
    loss.backward()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert vision_tower(model) is model.get_base_model().get_submodule(VISION[name].rstrip("."))


def test_lora_regex_can_reach_the_vision_tower(saved):
    lora = LoraSettings(enabled=True, target_modules=r".*\.(q_proj|v_proj)")
    names = trainable(load_model(ModelConfig(path=saved["llava"], lora=lora))[0])
    assert any(VISION["llava"] in n for n in names) and any("language_model" in n for n in names)


def test_dtype_and_gradient_checkpointing(saved):
    model, _ = load_model(ModelConfig(path=saved["llava"], dtype="bfloat16", gradient_checkpointing=True))
    assert {p.dtype for p in model.parameters()} == {torch.bfloat16}
    assert model.is_gradient_checkpointing


def test_missing_folder_is_a_user_error(tmp_path):
    missing = str(tmp_path / "no-such-model")
    with pytest.raises(MMAlignError, match="no-such-model"):
        load_model(ModelConfig(path=missing))
    with pytest.raises(MMAlignError, match="path is empty"):
        load_model(ModelConfig())

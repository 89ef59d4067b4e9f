"""The ``lmms_eval.models`` entry point (pyproject.toml): lmms-eval calls ``manifests()`` when it builds its model
registry, which makes ``--model mmalign`` resolve to ``model.MMAlignLMM`` without importing it until it is used."""
from __future__ import annotations

MODEL_ID = "mmalign"
CLASS_PATH = "mmalign.eval.lmms.model.MMAlignLMM"


def manifests() -> list:
    # only lmms-eval calls this, so it is installed
    from lmms_eval.models.registry_v2 import ModelManifest
    return [ModelManifest(model_id=MODEL_ID, simple_class_path=CLASS_PATH)]

"""Safe by default: weights come from safetensors only (pickled weights need ``model.allow_pickle``), and code
shipped with a model folder never runs unless ``model.trust_remote_code`` is set."""
from __future__ import annotations

import json
import shutil

import pytest
import torch
from safetensors.torch import load_file

from mmalign.errors import MMAlignError
from mmalign.models.load import ModelConfig, load_model


def test_pickled_weights_need_allow_pickle(base_folder, tmp_path):
    folder = tmp_path / "pickled"
    shutil.copytree(base_folder, folder)
    weights = load_file(folder / "model.safetensors")
    torch.save(weights, folder / "pytorch_model.bin")
    (folder / "model.safetensors").unlink()
    assert ModelConfig().allow_pickle is False
    with pytest.raises(MMAlignError, match="has no safetensors weights.*model.allow_pickle=true"):
        load_model(ModelConfig(path=str(folder)))
    model, _ = load_model(ModelConfig(path=str(folder), allow_pickle=True))
    state = model.state_dict()
    assert all(torch.equal(state[k], v) for k, v in weights.items() if k in state)


def test_code_in_a_model_folder_does_not_run_by_default(base_folder, tmp_path):
    folder, marker = tmp_path / "custom", tmp_path / "code-ran"
    shutil.copytree(base_folder, folder)
    (folder / "evil.py").write_text(f"open({str(marker)!r}, 'w').write('ran')\n")
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoConfig": "evil.EvilConfig", "AutoModelForImageTextToText": "evil.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    assert ModelConfig().trust_remote_code is False
    load_model(ModelConfig(path=str(folder)))                            # a known family: its own classes load
    assert not marker.exists()
    (folder / "config.json").write_text(json.dumps(config | {"model_type": "evil_vlm"}))
    with pytest.raises(MMAlignError, match="cannot load a model from .*trust_remote_code"):
        load_model(ModelConfig(path=str(folder)))                        # only the folder's code could load it
    assert not marker.exists()

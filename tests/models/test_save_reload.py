"""Saved tiny models reload with plain transformers, in a process that never imports mmalign, to the same logits."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import torch

from mmalign.models import build_inputs
from mmalign.models.inputs import prompt_text

CHILD = textwrap.dedent("""
    import json, sys, torch
    from transformers import (AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer)
    report = {}
    for name, folder in json.loads(sys.argv[1]).items():
        saved = torch.load(f"{folder}/inputs.pt", weights_only=False)
        model = AutoModelForImageTextToText.from_pretrained(folder).eval()
        if name == "qwen2_vl":  # its processor needs torchvision; check the parts it is made of
            pixels = AutoImageProcessor.from_pretrained(folder)(saved["images"], return_tensors="pt")["pixel_values"]
            tok = AutoTokenizer.from_pretrained(folder)
            same_inputs = torch.equal(pixels, saved["batch"]["pixel_values"]) and tok.chat_template is not None
        else:
            processor = AutoProcessor.from_pretrained(folder)
            again = processor(images=saved["images"], text=saved["texts"], padding=True, padding_side="right",
                              return_tensors="pt")
            same_inputs = all(torch.equal(again[k], saved["batch"][k]) for k in again)
        with torch.no_grad():
            logits = model(**saved["batch"]).logits
        report[name] = {"same_inputs": same_inputs, "max_diff": (logits - saved["logits"]).abs().max().item()}
    report["imported_mmalign"] = any(m.split(".")[0] == "mmalign" for m in sys.modules)
    print(json.dumps(report))
""")


def test_reload_without_mmalign(tiny_models, examples, tmp_path):
    folders = {}
    for name, (model, processor) in tiny_models.items():
        folder = tmp_path / name
        model.save_pretrained(folder)
        processor.save_pretrained(folder)
        batch = {k: v for k, v in build_inputs(processor, examples).items() if k != "labels"}
        with torch.no_grad():
            logits = model(**batch).logits
        texts = [prompt_text(processor, ex) + ex["response"] + processor.tokenizer.eos_token for ex in examples]
        images = [ex["images"] for ex in examples]
        torch.save({"batch": batch, "logits": logits, "texts": texts, "images": images}, folder / "inputs.pt")
        folders[name] = str(folder)
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(folders)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    report = json.loads(out.stdout.strip().splitlines()[-1])
    assert report.pop("imported_mmalign") is False
    assert report == {name: {"same_inputs": True, "max_diff": 0.0} for name in tiny_models}

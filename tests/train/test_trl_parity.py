"""Our DPO loss equals TRL 1.16 ``DPOTrainer``'s on the same tiny-LLaVA batch and weights (relative 1e-4).

Tokenisation: TRL's ``DataCollatorForVisionPreference`` tokenises the prompt (chat template with the generation
prompt) and the completion (the template's continuation, ``"<answer><|im_end|>\\n"``) separately and concatenates
them; ``build_inputs`` tokenises ``prompt + answer + <|im_end|>`` in one go and finds the boundary by tokenising the
prompt alone. With the lab's word-level tokenizer nothing merges across the boundary and the trailing newline is
whitespace (no token), so both give the same ids and the same scored positions, which the test checks row by row.
"""
from __future__ import annotations

import copy
import math

import pytest
import torch
from datasets import Dataset
from transformers import AutoModelForImageTextToText, AutoProcessor

from mmalign.data.collate import collate_preference
from mmalign.data.preference import from_hf_dataset
from mmalign.losses.preference import dpo
from mmalign.models.logprobs import preference_logps
from mmalign.models.tiny import build_llava

from .conftest import perturb

trl = pytest.importorskip("trl")

BETA = 0.5
TEXTS = [("describe the image .", "a red circle and a blue star .", "a red circle ."),
         ("is there a star in the image ?", "yes", "no"),
         ("describe the image .", "a green square .", "a green square and a yellow triangle ."),
         ("is there a circle in the image ?", "no", "yes")]


def trl_rows(images) -> list[dict]:
    return [{"images": [img],
             "prompt": [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q}]}],
             "chosen": [{"role": "assistant", "content": [{"type": "text", "text": c}]}],
             "rejected": [{"role": "assistant", "content": [{"type": "text", "text": r}]}]}
            for img, (q, c, r) in zip(images, TEXTS)]


def test_dpo_loss_matches_trl(tmp_path, lab8):
    folder = tmp_path / "tiny-llava"
    model, processor = build_llava()
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    policy = AutoModelForImageTextToText.from_pretrained(folder, dtype=torch.float32)
    processor = AutoProcessor.from_pretrained(folder)
    ref = copy.deepcopy(policy).eval()
    perturb(policy, scale=0.3)                               # so that the log-ratios are not all zero
    policy.train()

    ds = Dataset.from_list(trl_rows([r.images[0] for r in lab8[:len(TEXTS)]]))
    args = trl.DPOConfig(output_dir=str(tmp_path / "trl"), per_device_train_batch_size=len(TEXTS), report_to="none",
                         save_strategy="no", use_cpu=True, bf16=False, max_length=None, beta=BETA,
                         loss_type=["sigmoid"])
    trainer = trl.DPOTrainer(model=policy, ref_model=ref, args=args, train_dataset=ds, processing_class=processor)
    trl_batch = trainer.data_collator([dict(row) for row in ds])

    records = from_hf_dataset(ds)                            # the same rows, read as TRL-format records
    ours = collate_preference(processor, records)

    # the same token ids and the same scored positions, row by row ([chosen x B; rejected x B] in both)
    assert trl_batch["input_ids"].shape[0] == ours.labels.shape[0] == 2 * len(TEXTS)
    for row in range(2 * len(TEXTS)):
        t_keep = trl_batch["attention_mask"][row].bool()
        o_keep = ours.inputs["attention_mask"][row].bool()
        assert trl_batch["input_ids"][row][t_keep].tolist() == ours.inputs["input_ids"][row][o_keep].tolist()
        assert trl_batch["completion_mask"][row][t_keep].tolist() == (ours.labels[row][o_keep] != -100).long().tolist()
    torch.testing.assert_close(trl_batch["pixel_values"], ours.inputs["pixel_values"])

    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(policy, trl_batch))
        ref_logps = preference_logps(ref, ours)
        our_loss = float(dpo(preference_logps(policy, ours), ref_logps, beta=BETA).loss.mean())
    assert abs(our_loss - math.log(2)) > 1e-2                # a loss away from its value at init
    assert our_loss == pytest.approx(trl_loss, rel=1e-4)

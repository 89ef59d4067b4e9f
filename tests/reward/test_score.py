"""Saving and reloading a reward model, the scorer's uses (self-annotation, RL) and pairwise accuracy."""
from __future__ import annotations

import pytest
import torch

from mmalign.construct.scorers import make_scorer
from mmalign.errors import MMAlignError
from mmalign.models import FAMILIES, build_inputs
from mmalign.models.load import ModelConfig, load_model
from mmalign.reward.model import RewardModel
from mmalign.reward.score import load_reward_model, pairwise_accuracy
from mmalign.rl.rewards import reward_model_reward
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig


@torch.no_grad()
def rewards(model, processor, examples) -> list[float]:
    inputs = {k: v for k, v in build_inputs(processor, examples).items() if k != "labels"}
    return model.eval()(**inputs).tolist()


@pytest.mark.parametrize("name", list(FAMILIES))
def test_save_reload_gives_identical_rewards(tiny_families, examples, tmp_path, name):
    backbone, processor = tiny_families[name]
    model = RewardModel(backbone, seed=3)
    before = rewards(model, processor, examples)
    model.save_pretrained(tmp_path, processor)
    scorer = load_reward_model(tmp_path, device="cpu")
    assert scorer.batch(examples) == before                           # bit for bit
    assert [scorer(ex["images"], ex["prompt"], ex["response"]) for ex in examples] == pytest.approx(before, abs=1e-5)
    plain, _ = load_model(ModelConfig(path=str(tmp_path)))            # still an ordinary model folder
    assert type(plain) is type(backbone)


def test_lora_is_merged_into_the_saved_backbone(lab_folder, examples, tmp_path):
    cfg = ModelConfig(path=str(lab_folder))
    cfg.lora.enabled = True
    model, processor = RewardModel.build(cfg)
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    assert "head.weight" in trainable and all("lora_" in n for n in trainable - {"head.weight"})
    with torch.no_grad():                                              # LoRA's B starts at 0: move it off identity
        for n, p in model.named_parameters():
            if "lora_B" in n:
                p.add_(0.5 * torch.randn(p.shape, generator=torch.Generator().manual_seed(len(n))))
    adapted = rewards(model, processor, examples)
    plain = rewards(RewardModel(load_model(ModelConfig(path=str(lab_folder)))[0], model.head), processor, examples)
    assert adapted != pytest.approx(plain, abs=1e-4)                   # the adapters matter
    model.save_pretrained(tmp_path, processor)
    assert load_reward_model(tmp_path, device="cpu").batch(examples) == pytest.approx(adapted, abs=1e-5)
    continued, _ = RewardModel.build(ModelConfig(path=str(tmp_path)))  # a reward folder resumes with its head
    assert torch.equal(continued.head.weight, model.head.weight)


def test_not_a_reward_folder(lab_folder):
    with pytest.raises(MMAlignError, match="not a reward-model folder"):
        load_reward_model(lab_folder)


def test_scorer_as_annotation_scorer_and_rl_reward(tiny_families, examples, tmp_path):
    backbone, processor = tiny_families["llava"]
    RewardModel(backbone).save_pretrained(tmp_path, processor)
    scorer = load_reward_model(tmp_path, device="cpu", batch_size=2)   # batches of 2 over 3 rows
    expected = scorer.batch(examples)
    ex = examples[0]
    responses = [e["response"] for e in examples]
    annotated = make_scorer("reward_model", reward=scorer)(ex, responses).values
    assert annotated == pytest.approx(scorer.batch([dict(ex, response=r) for r in responses]), abs=1e-5)
    rl = reward_model_reward(scorer.completions)(responses, examples)
    assert rl == pytest.approx(expected, abs=1e-5) and all(isinstance(r, float) for r in rl)


def test_pairwise_accuracy_counts_ties_wrong():
    pairs = lab_pairs(WorldConfig(), LabPairsConfig(n=6, tasks={"caption": 1.0}))
    minus = sum(p.meta["kind"] == "caption_minus" for p in pairs)
    assert 0 < minus < len(pairs)
    constant = pairwise_accuracy(lambda rows: [0.0] * len(rows), pairs, batch_size=4)
    assert constant == {"accuracy": 0.0, "ties": 6, "margin": 0.0, "n": 6}
    # "longer is better": right exactly on the pairs whose rejected answer dropped an object
    longer = pairwise_accuracy(lambda rows: [float(len(r["response"].split())) for r in rows], pairs, batch_size=4)
    assert longer["accuracy"] == pytest.approx(minus / 6) and longer["ties"] == 0


def test_accuracy_by_kind_splits_the_whole():
    """"Longer is better" is right on every caption_minus pair and wrong on every caption_plus one; the split sums
    back to the whole set's figures."""
    from types import SimpleNamespace

    from mmalign.reward.train import accuracy_by_kind
    pairs = lab_pairs(WorldConfig(), LabPairsConfig(n=12))
    longer = SimpleNamespace(pairwise_accuracy=lambda rs: pairwise_accuracy(
        lambda rows: [float(len(r["response"])) for r in rows], rs, batch_size=4))
    out = accuracy_by_kind(longer, pairs)
    assert out["by_kind"]["caption_minus"]["accuracy"] == 1.0 and out["by_kind"]["caption_plus"]["accuracy"] == 0.0
    whole = longer.pairwise_accuracy(pairs)
    assert out["n"] == whole["n"] == 12 and sum(v["n"] for v in out["by_kind"].values()) == 12
    assert out["accuracy"] == pytest.approx(whole["accuracy"]) and out["margin"] == pytest.approx(whole["margin"])
    assert out["ties"] == whole["ties"]

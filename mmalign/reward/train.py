"""Training a Bradley–Terry reward model on preference pairs (``mmalign reward``).

Per step: collate the chosen and rejected rows of a batch of pairs into one padded batch (``collate_preference``),
score all ``2B`` rows in one forward (``RewardModel``), and minimise ``bradley_terry`` (``loss.py``):

    L = mean_i [ -log sigma(r_w,i - r_l,i - s * m_i) + c * (r_w,i + r_l,i)^2 ]

with ``s = loss.margin_scale`` times the record's ``reward_margin`` (off by default) and ``c = loss.center_coef``.
The shared loop (``mmalign.train.loop.train``) brings checkpoints, exact resume, the non-finite guard and the
logs: loss, pairwise accuracy, mean chosen and rejected reward and their margin each ``train.log_every`` steps, the
same on the held-out pairs (``val/...``) each ``train.eval_every`` steps. At the end the model is saved as a
reward-model folder (``<output_dir>/model``) and, on the lab, reloaded from it and scored on ``data.test_size``
pairs of the test split (``test_accuracy.json``): a tie counts as wrong.

Data: lab pairs from the world's ground truth (default; the val split is held out), or any preference file
(``mmalign.data.preference``: mmalign's or TRL's layout; its last ``data.val_size`` records are held out).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import torch

from mmalign.data.collate import collate_preference
from mmalign.data.sampling import shuffled
from mmalign.errors import ConfigError, MMAlignError
from mmalign.models.load import ModelConfig
from mmalign.reward.loss import bradley_terry
from mmalign.reward.model import RewardModel
from mmalign.reward.score import load_reward_model
from mmalign.train.loop import TrainConfig, process_state, train
from mmalign.train.preference import SHIPPED_BASE, load_records
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig


@dataclass
class RewardDataConfig:
    source: str = "lab"            # "lab": pairs from the world's ground truth; else a preference file
    lab: LabPairsConfig = field(default_factory=LabPairsConfig)
    val_size: int = 256            # held-out pairs (lab: the val split; a file: its last val_size records)
    max_length: int | None = None  # truncation cuts the response's end: the reward then reads the last kept token
    test_size: int = 1000          # lab only: test-split pairs the saved model is scored on at the end; 0 skips


@dataclass
class RewardLossConfig:
    margin_scale: float = 0.0      # m_i = margin_scale * reward_margin (Llama-2's margin); 0: plain Bradley–Terry
    center_coef: float = 0.0       # c in + c * (r_w + r_l)^2 (reward centering; MM-RLHF uses 0.01)

    def validate(self) -> None:
        if self.margin_scale < 0 or self.center_coef < 0:
            raise ConfigError(f"loss.margin_scale ({self.margin_scale}) and loss.center_coef ({self.center_coef}) "
                               "must not be negative")


@dataclass
class RewardConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(path=SHIPPED_BASE))
    data: RewardDataConfig = field(default_factory=RewardDataConfig)
    loss: RewardLossConfig = field(default_factory=RewardLossConfig)
    head_seed: int = 0             # the new head's initialisation
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        output_dir="runs/reward", max_steps=400, batch_size=16, lr=1e-4, warmup_steps=20, min_lr_ratio=0.1,
        log_every=10, eval_every=100))


class RewardStep:
    """``__call__(model, records) -> (loss, metrics)``: one concatenated forward over chosen and rejected rows."""

    def __init__(self, cfg: RewardConfig, processor):
        self.cfg, self.processor = cfg, processor

    def __call__(self, model, records):
        batch = collate_preference(self.processor, records, max_length=self.cfg.data.max_length)
        batch = batch.to(next(model.parameters()).device)
        rewards = model(**batch.inputs)
        margin = self.cfg.loss.margin_scale * batch.reward_margin if self.cfg.loss.margin_scale else None
        out = bradley_terry(rewards[batch.views["chosen"]], rewards[batch.views["rejected"]], margin,
                            self.cfg.loss.center_coef)
        return out.loss.mean(), {k: float(v.mean()) for k, v in out.metrics.items()}


def check_margins(cfg: RewardConfig, records: list) -> None:
    """A margin needs a ``reward_margin`` on every record: said before training, not at the first bad batch."""
    missing = [r.id for r in records if r.reward_margin is None]
    if cfg.loss.margin_scale and missing:
        raise MMAlignError(f"loss.margin_scale={cfg.loss.margin_scale} needs a reward_margin on every record; "
                           f"{len(missing)} have none (first: {', '.join(missing[:5])})")


@torch.no_grad()
def validate(step: RewardStep, model, records: list) -> dict:
    """The step's loss and metrics over ``records``, weighted by batch size, as ``val/...``."""
    sums: dict[str, float] = {}
    bs = step.cfg.train.batch_size
    for start in range(0, len(records), bs):
        chunk = records[start:start + bs]
        loss, metrics = step(model, chunk)
        for k, v in {"loss": float(loss), **metrics}.items():
            sums[k] = sums.get(k, 0.0) + v * len(chunk)
    return {f"val/{k}": v / len(records) for k, v in sums.items()}


def accuracy_by_kind(scorer, records: list) -> dict:
    """``scorer.pairwise_accuracy`` over ``records`` and, under ``by_kind``, over each ``meta["kind"]`` of them
    (the lab's caption_plus, caption_minus, exist_yes, exist_no), each pair scored once."""
    groups: dict[str, list] = {}
    for r in records:
        groups.setdefault(str(r.meta.get("kind", "all")), []).append(r)
    by_kind = {k: scorer.pairwise_accuracy(rs) for k, rs in sorted(groups.items())}
    n = sum(v["n"] for v in by_kind.values())
    return {"accuracy": sum(v["accuracy"] * v["n"] for v in by_kind.values()) / n,
            "ties": sum(v["ties"] for v in by_kind.values()),
            "margin": sum(v["margin"] * v["n"] for v in by_kind.values()) / n, "n": n, "by_kind": by_kind}


def train_reward_model(cfg: RewardConfig) -> dict:
    """Train, save ``<output_dir>/model``, and (lab) score the saved model on test pairs. Returns the last logged
    metrics, the folder, and the test accuracy when computed."""
    model, processor = RewardModel.build(cfg.model, cfg.head_seed)
    train_records, val_records = load_records(cfg)    # the preference trainer's: lab splits, or a file's tail
    check_margins(cfg, train_records + val_records)
    step, state, bs = RewardStep(cfg, processor), process_state(), cfg.train.batch_size
    get = shuffled(train_records, cfg.train.seed)

    def batches(start: int):
        for k in range(start, 2**62):
            yield [get((k * state.num_processes + state.process_index) * bs + i) for i in range(bs)]

    params = [p for p in model.parameters() if p.requires_grad]
    last = train(model, [{"params": params}], step, batches, cfg.train, desc="reward",
                 save_model=lambda m, folder: m.save_pretrained(folder, processor),
                 evaluate=lambda m: validate(step, m, val_records))
    out = Path(cfg.train.output_dir)
    result = {"out": str(out), "model": str(out / "model"), "last": last}
    if cfg.data.source == "lab" and cfg.data.test_size and state.is_main_process:
        test = lab_pairs(cfg.world, LabPairsConfig(n=cfg.data.test_size, split="test"), for_eval=True)
        scorer = load_reward_model(out / "model", batch_size=bs, max_length=cfg.data.max_length)
        result["test"] = accuracy_by_kind(scorer, test)
        (out / "test_accuracy.json").write_text(json.dumps(result["test"], indent=2) + "\n")
    return result

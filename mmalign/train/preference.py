"""The offline preference trainer: one loop for every loss in ``PREFERENCE_LOSSES``.

Per step: collate the views the loss needs -> policy log-probs (one concatenated forward) -> reference
log-probs (cached on disk, or live) -> the loss function -> backward. It logs the implicit rewards, margins and
accuracy, the policy's chosen and rejected log-prob changes against the reference (a collapse shows as both
falling), response lengths and a KL proxy; evaluates held-out pairs every ``train.eval_every`` steps; and stops
early when the validation metric plateaus or the chosen log-prob has fallen too far.

With ``online.fraction > 0`` part of every batch is sampled from the current policy and labelled on the fly
(online DPO, ``mmalign.train.online``); ``reference_model`` fixes pi_ref to another folder than the starting
policy (iterative DPO with the reference held at round 0's model, ``mmalign.iterate``).
"""
from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import torch

from mmalign.data.preference import read_preference_file
from mmalign.data.sampling import shuffled
from mmalign.errors import ConfigError, MMAlignError
from mmalign.losses import PREFERENCE_LOSSES, LossSpec, check_loss_settings
from mmalign.losses.state import RunningMean
from mmalign.models.inputs import build_inputs
from mmalign.models.load import ModelConfig, load_model
from mmalign.models.logprobs import weighted_nll
from mmalign.train.guards import blank_image_inputs, has_images, text_only_term
from mmalign.train.loop import TrainConfig, train
from mmalign.train.online import OnlineConfig, OnlinePairs, online_metrics, online_share
from mmalign.train.reference import (
    ReferenceCache,
    adapters_disabled,
    data_fingerprint,
    frozen_copy,
    logps_path,
    model_fingerprint,
)
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import mixed_example

SHIPPED_BASE = str(Path(__file__).resolve().parents[1] / "assets" / "lab" / "base")


@dataclass
class LossConfig:
    name: str = "dpo"
    params: dict[str, float | int | str | bool] = field(default_factory=dict)  # the loss's keyword hyperparameters
    # + nll_weight * NLL(y_w) on top of the loss: keeps the chosen likelihood up. Pure DPO at lr 2e-5 collapsed a
    # lab prototype (both log-probs fell); with this term it stays healthy. Losses with their own SFT term
    # (rpo, orpo, hadpo, mmdpo) set it to 0 in their configs.
    nll_weight: float = 1.0
    token_weight: float = 5.0      # DDPO's gamma on corrected spans (losses that need token weights)

    def validate(self) -> None:
        check_loss_settings(self.name, self.params)


@dataclass
class PreferenceDataConfig:
    source: str = "lab"            # "lab": pairs from the world's ground truth; else a preference file
    lab: LabPairsConfig = field(default_factory=LabPairsConfig)
    val_size: int = 256            # held-out pairs (lab: the val split; a file: its last val_size records)
    max_length: int | None = None
    # score y_w's end-of-turn token under the corrupted image I' too (mDPO's and Image-DPO's image term; the
    # official mDPO code does). Off: the term cannot teach the policy to stop ending its answers (collate_preference).
    corrupt_eot: bool = False
    # prefix-shared packing: [images + prompt | y_w | y_l] in one row, images and prompt run once per pair
    # (mmalign.data.pack, mmalign.models.packed); the same log-probs as the concatenated batch, to float rounding;
    # 1.6-1.9x the concatenated path and 1.9-2.1x TRL at 256 image tokens, with less memory (docs/performance.md).
    # Needs sdpa or eager attention (a float block mask); false for other attention kernels.
    packed: bool = True


@dataclass
class EarlyStopConfig:
    metric: str = "val/loss"       # any logged key; lower is better
    patience: int = 0              # evaluations without improvement before stopping; 0 disables
    min_delta: float = 0.0
    max_chosen_drop: float = 10.0  # stop when the chosen log-prob falls this many nats below the reference


@dataclass
class PreferenceConfig:
    world: WorldConfig = field(default_factory=WorldConfig)
    model: ModelConfig = field(default_factory=lambda: ModelConfig(path=SHIPPED_BASE))
    reference: Literal["copy", "adapters"] = "copy"   # a frozen copy, or the LoRA policy with adapters off
    reference_model: str = ""      # copy: a model folder to freeze as pi_ref instead of the starting policy
    ref_cache: bool = True         # precompute reference log-probs once and cache them on disk
    cache_dir: str = "~/.cache/mmalign/reference"
    loss: LossConfig = field(default_factory=LossConfig)
    data: PreferenceDataConfig = field(default_factory=PreferenceDataConfig)
    freeze_vision: bool = False    # the vision tower trains too (on the lab: CHAIR-i -16% vs -12% frozen; docs/alignment.md)
    early_stop: EarlyStopConfig = field(default_factory=EarlyStopConfig)
    eval_scenes: int = 600         # lab evaluation of the base and the aligned model afterwards; 0 skips it
    online: OnlineConfig = field(default_factory=OnlineConfig)   # pairs sampled from the policy during training
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        output_dir="runs/dpo", max_steps=600, batch_size=16, lr=5e-5, warmup_steps=10, min_lr_ratio=0.1,
        log_every=10, eval_every=100))

    def validate(self) -> None:
        if self.reference_model and self.reference == "adapters":
            raise ConfigError("reference_model names a folder to copy; it does not go with reference=adapters")
        if self.online.fraction and PREFERENCE_LOSSES[self.loss.name].needs_kl_logratio:
            raise ConfigError(f"loss '{self.loss.name}' needs a fixed mismatched partner per record (its KL view); "
                              "online pairs have none: set online.fraction=0")


def views_for(spec: LossSpec) -> tuple[str, ...]:
    views = ["chosen", "rejected"]
    if spec.needs_corrupt_image or spec.needs_noise_image:
        views.append("chosen_corrupt")
    if spec.needs_kl_logratio:
        views.append("kl")
    return tuple(views)


def collate_settings(cfg: PreferenceConfig, spec: LossSpec) -> dict:
    """How batches are collated: the same for policy batches and the reference cache (part of its key)."""
    return {"token_weight_gamma": cfg.loss.token_weight if spec.needs_token_weights else None,
            "max_length": cfg.data.max_length,
            # POVID's y_noise needs the corrupt rows to align token for token with the chosen ones
            "corrupt_eot": cfg.data.corrupt_eot or spec.needs_noise_image}


def load_records(cfg: PreferenceConfig) -> tuple[list, list]:
    if cfg.data.source == "lab":
        train_records = lab_pairs(cfg.world, cfg.data.lab)
        val = lab_pairs(cfg.world, LabPairsConfig(**{**cfg.data.lab.__dict__, "n": cfg.data.val_size, "split": "val"}))
        return train_records, val
    records = read_preference_file(cfg.data.source)
    if len(records) <= cfg.data.val_size:
        raise MMAlignError(f"{cfg.data.source}: {len(records)} records, not more than data.val_size={cfg.data.val_size}")
    return records[:-cfg.data.val_size], records[-cfg.data.val_size:]


class Step:
    """Everything one optimisation step needs; ``__call__(model, records)`` -> (loss, metrics)."""

    def __init__(self, cfg: PreferenceConfig, spec: LossSpec, processor, reference, partners: dict):
        self.cfg, self.spec, self.processor, self.reference, self.partners = cfg, spec, processor, reference, partners
        self.views, self.collate_kw = views_for(spec), collate_settings(cfg, spec)
        self.running = RunningMean() if spec.needs_reward_mean else None
        self.sft_index = 0
        self.blank = blank_image_inputs(processor)   # the vision tower's input on text-only batches

    def logps(self, model, records):
        collate, score = logps_path(self.cfg.data.packed)
        batch = collate(self.processor, records, self.views, **self.collate_kw,
                        kl_partners=[self.partners.get(r.id) for r in records])   # online pairs have none
        batch = batch.to(next(model.parameters()).device)
        policy = score(model, batch, noise=self.spec.needs_noise_image)
        ref = self.reference(batch) if self.spec.needs_reference or self.spec.needs_kl_logratio else None
        return batch, policy, ref

    def data_inputs(self, model, batch, policy, ref) -> dict:
        extra = {}
        if self.spec.needs_reward_margin:
            if batch.reward_margin is None:
                raise MMAlignError(f"loss '{self.cfg.loss.name}' needs a reward_margin on every record")
            extra["reward_margin"] = batch.reward_margin
        if self.spec.needs_kl_logratio:
            extra["kl_logratio"] = (policy.kl.sum - ref.kl.sum).detach()
        if self.spec.needs_reward_mean:
            extra["reward_mean"] = torch.tensor(self.running.mean)
        if self.spec.needs_sft_batch:
            extra["sft_nll"] = self.sft_nll(model)
        return extra

    def sft_nll(self, model):
        """HA-DPO's auxiliary LM term on the SFT data (the lab's noisy training stream)."""
        ex = [mixed_example(self.cfg.world, "train", {"caption": 1.0}, 10_000_000 + self.sft_index + i)
              for i in range(self.cfg.train.batch_size)]
        self.sft_index += len(ex)
        inputs = dict(build_inputs(self.processor, ex))
        labels = inputs.pop("labels")
        return weighted_nll(model(**inputs).logits, labels)

    def state_dict(self) -> dict:
        """What the loop checkpoints with the run: BCO's running reward mean, HA-DPO's place in the SFT stream."""
        return {"running": self.running.state_dict() if self.running else None, "sft_index": self.sft_index}

    def load_state_dict(self, state: dict) -> None:
        if self.running is not None:
            self.running.load_state_dict(state["running"])
        self.sft_index = int(state["sft_index"])

    def __call__(self, model, records):
        batch, policy, ref = self.logps(model, records)
        out = self.spec.fn(policy, ref if self.spec.needs_reference else None, **self.cfg.loss.params,
                           **self.data_inputs(model, batch, policy, ref))
        loss = out.loss.mean() + self.cfg.loss.nll_weight * policy.chosen_nll.mean()
        loss = loss + text_only_term(model, self.blank, has_images(batch.inputs))
        if self.running is not None:
            self.running.update(out.metrics["rewards"])
        return loss, self.metrics(out, policy, ref) | (online_metrics(records) if self.cfg.online.fraction else {})

    def metrics(self, out, policy, ref) -> dict:
        m = {k: float(v.float().mean()) for k, v in out.metrics.items() if k != "rewards"}
        m |= {"logp/chosen": float(policy.chosen.sum.detach().mean()),
              "logp/rejected": float(policy.rejected.sum.detach().mean()),
              "len/chosen": float(policy.chosen.count.float().mean()),
              "len/rejected": float(policy.rejected.count.float().mean())}
        if ref is not None:
            dc = policy.chosen.sum.detach() - ref.chosen.sum
            m |= {"delta/chosen": float(dc.mean()),
                  "delta/rejected": float((policy.rejected.sum.detach() - ref.rejected.sum).mean()),
                  "kl_proxy": float((dc / policy.chosen.count).mean())}   # per-token log-ratio on y_w
        return m


def make_reference(cfg: PreferenceConfig, model, processor, spec: LossSpec, records: list, partners: dict):
    """A function PreferenceBatch -> reference PreferenceLogps, or None for reference-free losses."""
    if not (spec.needs_reference or spec.needs_kl_logratio):
        return None
    if cfg.reference == "adapters":
        if not cfg.model.lora.enabled:
            raise MMAlignError("reference=adapters needs model.lora.enabled=true")
        net = model
        ctx = adapters_disabled
    else:
        net = frozen_copy(model) if not cfg.reference_model else load_model(ModelConfig(
            path=cfg.reference_model, dtype=cfg.model.dtype, attn_implementation=cfg.model.attn_implementation,
        ))[0].eval().requires_grad_(False)
        ctx = contextlib.nullcontext
    noise = spec.needs_noise_image
    score = logps_path(cfg.data.packed)[1]

    if not cfg.ref_cache or cfg.online.fraction:     # online pairs are new every step: nothing to cache ahead
        def live(batch):
            with torch.no_grad(), ctx(net) as m:
                return score(m, batch, noise=noise)
        return live
    views = views_for(spec)
    collate_kw = collate_settings(cfg, spec)
    key = f"{model_fingerprint(net)[:16]}-{data_fingerprint(records, views, {'noise': noise, **collate_kw})[:16]}"
    path = Path(os.path.expanduser(cfg.cache_dir)) / f"ref-{key}.safetensors"
    with ctx(net) as m:
        cache = ReferenceCache.load_or_compute(path, m, processor, records, views, batch_size=cfg.train.batch_size,
                                               noise=noise, packed=cfg.data.packed, **collate_kw,
                                               kl_partners=[partners[r.id] for r in records])
    return lambda batch: cache.lookup(batch.ids)


class EarlyStop:
    """``stop`` callback for the loop: the collapse guard on training logs, patience on evaluations."""

    def __init__(self, cfg: EarlyStopConfig):
        self.cfg, self.best, self.bad = cfg, float("inf"), 0

    def __call__(self, rec: dict) -> str | None:
        drop = -rec.get("delta/chosen", 0.0)
        if drop > self.cfg.max_chosen_drop:
            return (f"the chosen answer's log-prob fell {drop:.1f} nats below the reference "
                    f"(> early_stop.max_chosen_drop={self.cfg.max_chosen_drop}): the policy is collapsing")
        if not self.cfg.patience or self.cfg.metric not in rec:
            return None
        if rec[self.cfg.metric] < self.best - self.cfg.min_delta:
            self.best, self.bad = rec[self.cfg.metric], 0
            return None
        self.bad += 1
        if self.bad >= self.cfg.patience:
            return f"{self.cfg.metric} has not improved for {self.bad} evaluations (best {self.best:.4f})"
        return None


@torch.no_grad()
def validate(step: Step, model, records: list) -> dict:
    sums: dict[str, float] = {}
    bs = step.cfg.train.batch_size
    # evaluation must not feed training state: BCO's running reward mean, HA-DPO's place in the SFT stream
    running, sft_index = (step.running.state_dict() if step.running else None), step.sft_index
    for start in range(0, len(records), bs):
        loss, metrics = step(model, records[start:start + bs])
        for k, v in {"loss": float(loss), **metrics}.items():
            sums[k] = sums.get(k, 0.0) + v * len(records[start:start + bs])
    if running is not None:
        step.running.load_state_dict(running)
    step.sft_index = sft_index
    return {f"val/{k}": v / len(records) for k, v in sums.items()}


def run_preference(cfg: PreferenceConfig) -> dict:
    from mmalign.train.loop import process_state
    state = process_state()          # first, so a CPU launch forms its process group
    spec = PREFERENCE_LOSSES[cfg.loss.name]
    train_records, val_records = load_records(cfg)     # data errors before the model loads
    model, processor = load_model(replace(cfg.model, freeze_vision=cfg.freeze_vision or cfg.model.freeze_vision))
    everything = train_records + val_records
    partners = {r.id: everything[(i + 1) % len(everything)] for i, r in enumerate(everything)}
    step = Step(cfg, spec, processor, make_reference(cfg, model, processor, spec, everything, partners), partners)
    get, bs = shuffled(train_records, cfg.train.seed), cfg.train.batch_size
    online = (OnlinePairs(cfg.online, cfg.world, model, processor, cfg.train.seed,
                          log=Path(cfg.train.output_dir) / "online.jsonl") if cfg.online.fraction else None)

    def batches(start: int):
        k = start
        while True:
            g = k * state.num_processes + state.process_index
            n_online, first = online_share(g, bs, cfg.online.fraction)
            yield [get(first + i) for i in range(bs - n_online)] + (online.pairs(g, n_online) if n_online else [])
            k += 1

    def save(unwrapped, folder: Path):
        (unwrapped.merge_and_unload() if cfg.model.lora.enabled else unwrapped).save_pretrained(folder)
        processor.save_pretrained(folder)

    params = [p for p in model.parameters() if p.requires_grad]
    last = train(model, [{"params": params}], step, batches, cfg.train, desc=cfg.loss.name, save_model=save,
                 evaluate=lambda m: validate(step, m, val_records), stop=EarlyStop(cfg.early_stop))
    result = {"out": cfg.train.output_dir, "last": last}
    if cfg.eval_scenes and cfg.data.source == "lab" and state.is_main_process:
        result["report"] = str(lab_report(cfg))
    return result


def lab_report(cfg: PreferenceConfig) -> Path:
    """Held-out hallucination figures of the starting model and the aligned one, side by side."""
    from mmalign.eval.report import eval_report
    from mmalign.eval.runner import evaluate_folder
    out = Path(cfg.train.output_dir)
    kw = dict(tasks=["caption", "exist"], n_scenes=cfg.eval_scenes)
    models = {"before": evaluate_folder(cfg.model.path, cfg.world, out / "eval" / "before", **kw),
              cfg.loss.name: evaluate_folder(str(out / "model"), cfg.world, out / "eval" / cfg.loss.name, **kw)}
    return eval_report(models, out, f"{cfg.loss.name} on the lab", f"Start: `{cfg.model.path}`.")

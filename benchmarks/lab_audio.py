"""Audio blindness on the lab, and audio-contrast preference training against it.

1. A fresh tiny Qwen2-Audio (``world.audio.build_audio_lab_model``) is fine-tuned briefly on the lab's audio tasks
   (``beeps``, ``tone``) with the SFT trainer's own batches, loss and loop: the base.
2. From the base, with the same pairs (``world.audio.audio_pairs``: y_w the answer, y_l another scene's answer):
   DPO (text negative only), and mDPO, whose conditional term contrasts A with A' (the clip whose answer is y_l,
   or silence).
3. Each model answers held-out questions greedily with the clip and with silence (``audio_blindness``).

    OMP_NUM_THREADS=1 python benchmarks/lab_audio.py --out runs/lab_audio

Prints a Markdown table and writes ``results.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
from functools import partial
from pathlib import Path

from mmalign.data.preference import write_preference_file
from mmalign.models.generate import sample_responses
from mmalign.models.load import ModelConfig, load_model
from mmalign.train.loop import TrainConfig, train
from mmalign.train.preference import LossConfig, PreferenceConfig, PreferenceDataConfig, run_preference
from mmalign.train.sft import SFTConfig, batches, param_groups, sft_loss, sft_units
from mmalign.world.audio import (
    AUDIO_TASKS,
    audio_blindness,
    audio_examples,
    audio_pairs,
    build_audio_lab_model,
    make_audio_example,
    muted,
)
from mmalign.world.scenes import WorldConfig

WORLD = WorldConfig()
TASKS = tuple(AUDIO_TASKS)
SIZES = dict(audio={"d_model": 64, "encoder_layers": 2, "encoder_attention_heads": 4},
             text={"hidden_size": 96, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 4})


def sft_base(out: Path, steps: int, lr: float) -> Path:
    model, processor = build_audio_lab_model(**SIZES)
    cfg = SFTConfig(world=WORLD, train=TrainConfig(output_dir=str(out / "sft"), max_steps=steps, batch_size=16,
                                                   lr=lr, warmup_steps=20, log_every=50, threads=1))
    stream = lambda i: make_audio_example(WORLD, TASKS[i % len(TASKS)], "train", i)

    def save(unwrapped, folder: Path):
        unwrapped.save_pretrained(folder)
        processor.save_pretrained(folder)

    train(model, param_groups(model, 1.0), partial(sft_loss, blank=None),
          lambda start: batches(cfg, processor, start, records=stream), cfg.train, desc="sft", save_model=save,
          units=sft_units)
    return out / "sft" / "model"


def align(base: Path, out: Path, loss: str, pairs: Path, steps: int, lr: float) -> Path:
    cfg = PreferenceConfig(
        world=WORLD, model=ModelConfig(path=str(base)), cache_dir=str(out / "cache"), eval_scenes=0,
        loss=LossConfig(name=loss, nll_weight=1.0),
        data=PreferenceDataConfig(source=str(pairs), val_size=64, packed=False),
        train=TrainConfig(output_dir=str(out / loss), max_steps=steps, batch_size=16, lr=lr, warmup_steps=10,
                          log_every=25, eval_every=0, threads=1))
    run_preference(cfg)
    return out / loss / "model"


def evaluate(folder: Path, examples: list[dict]) -> dict:
    model, processor = load_model(ModelConfig(path=str(folder)))
    kw = dict(temperature=0, max_new_tokens=4, desc=None)
    heard = [r[0] for r in sample_responses(model, processor, examples, **kw).texts]
    silent = [r[0] for r in sample_responses(model, processor, [muted(e) for e in examples], **kw).texts]
    return {t: audio_blindness(*zip(*[(a, s, e) for a, s, e in zip(heard, silent, examples) if e["task"] == t]))
            for t in TASKS}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="runs/lab_audio")
    ap.add_argument("--sft-steps", type=int, default=300)
    ap.add_argument("--sft-lr", type=float, default=2e-3)
    ap.add_argument("--pairs", type=int, default=1024)
    ap.add_argument("--contrast", default="wrong_clip", choices=["wrong_clip", "silence"])
    ap.add_argument("--dpo-steps", type=int, default=100)
    ap.add_argument("--dpo-lr", type=float, default=5e-4)
    ap.add_argument("--n-eval", type=int, default=400)
    args = ap.parse_args()
    out = Path(args.out)
    base = sft_base(out, args.sft_steps, args.sft_lr)
    pairs = write_preference_file(audio_pairs(WORLD, "train", args.pairs, contrast=args.contrast, first=10_000_000),
                                  out / "pairs.jsonl")
    models = {"base (SFT)": base}
    for loss in ("dpo", "mdpo"):
        models[loss] = align(base, out, loss, pairs, args.dpo_steps, args.dpo_lr)
    test = audio_examples(WORLD, "test", args.n_eval)
    results = {name: evaluate(folder, test) for name, folder in models.items()}
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    print("| model | task | accuracy | accuracy, clip silenced | most-common-answer accuracy "
          "| answers unchanged by silence |")
    print("|---|---|---|---|---|---|")
    for name, per_task in results.items():
        for t, r in per_task.items():
            print(f"| {name} | {t} | {r['accuracy']:.3f} | {r['muted_accuracy']:.3f} | {r['prior_accuracy']:.3f} "
                  f"| {r['unchanged']:.3f} |")


if __name__ == "__main__":
    main()

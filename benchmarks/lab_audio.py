"""Audio blindness on the lab, and audio-contrast preference training against it.

1. A fresh tiny Qwen2-Audio (``world.audio.build_audio_lab_model``) is fine-tuned briefly on the lab's audio tasks
   (``beeps``, ``tone``) with the SFT trainer's own batches, loss and loop: the base.
2. From the base, with the same pairs (``world.audio.audio_pairs``: y_w the answer, y_l another scene's answer):
   DPO (text negative only), and mDPO, whose conditional term contrasts A with A' (the clip whose answer is y_l,
   or silence).
3. A control SFT'd from scratch for as many steps as base + preference training together.
4. Each model answers held-out questions greedily with the clip and with silence (``audio_blindness``).

    OMP_NUM_THREADS=1 python benchmarks/lab_audio.py --out runs/lab_audio --seeds 0,1,2

A seed moves the fresh model's initialisation and the order of the SFT and preference batches; the pairs and the
held-out questions are the same for every seed. Each seed's models and results are kept under
``--out/seed<k>/`` (a rerun reuses what is there). Prints a Markdown table (mean ± std over seeds) and writes
``results.json`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import statistics
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


def sft_base(out: Path, steps: int, lr: float, seed: int) -> Path:
    if (out / "sft" / "model").exists():
        return out / "sft" / "model"
    model, processor = build_audio_lab_model(**SIZES, seed=seed)
    cfg = SFTConfig(world=WORLD, train=TrainConfig(output_dir=str(out / "sft"), max_steps=steps, batch_size=16,
                                                   lr=lr, warmup_steps=20, log_every=50, threads=1, seed=seed))
    stream = lambda i: make_audio_example(WORLD, TASKS[i % len(TASKS)], "train", i)

    def save(unwrapped, folder: Path):
        unwrapped.save_pretrained(folder)
        processor.save_pretrained(folder)

    train(model, param_groups(model, 1.0), partial(sft_loss, blank=None),
          lambda start: batches(cfg, processor, start, records=stream), cfg.train, desc="sft", save_model=save,
          units=sft_units)
    return out / "sft" / "model"


def align(base: Path, out: Path, loss: str, pairs: Path, steps: int, lr: float, seed: int) -> Path:
    if (out / loss / "model").exists():
        return out / loss / "model"
    cfg = PreferenceConfig(
        world=WORLD, model=ModelConfig(path=str(base)), cache_dir=str(out / "cache"), eval_scenes=0,
        loss=LossConfig(name=loss, nll_weight=1.0),
        data=PreferenceDataConfig(source=str(pairs), val_size=64, packed=False),
        train=TrainConfig(output_dir=str(out / loss), max_steps=steps, batch_size=16, lr=lr, warmup_steps=10,
                          log_every=25, eval_every=0, threads=1, seed=seed))
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
    ap.add_argument("--seeds", default="0")
    args = ap.parse_args()
    out = Path(args.out)
    pairs = write_preference_file(audio_pairs(WORLD, "train", args.pairs, contrast=args.contrast, first=10_000_000),
                                  out / "pairs.jsonl")
    test = audio_examples(WORLD, "test", args.n_eval)
    results: dict[str, list[dict]] = {}
    for seed in [int(s) for s in args.seeds.split(",")]:
        run = out / f"seed{seed}"
        base = sft_base(run, args.sft_steps, args.sft_lr, seed)
        models = {"base (SFT)": base}
        for loss in ("dpo", "mdpo"):
            models[loss] = align(base, run, loss, pairs, args.dpo_steps, args.dpo_lr, seed)
        # the same number of steps as base + preference, all SFT: is preference training the cheaper fix?
        models[f"control: SFT for {args.sft_steps + args.dpo_steps} steps"] = sft_base(
            run / "control", args.sft_steps + args.dpo_steps, args.sft_lr, seed)
        for name, folder in models.items():
            results.setdefault(name, []).append(evaluate(folder, test))
    (out / "results.json").write_text(json.dumps({"args": vars(args), "results": results}, indent=2))
    cell = lambda v: f"{statistics.mean(v):.3f}" + (f" ± {statistics.stdev(v):.3f}" if len(v) > 1 else "")
    print("| model | task | accuracy | accuracy, clip silenced | most-common-answer accuracy "
          "| answers unchanged by silence |")
    print("|---|---|---|---|---|---|")
    for name, runs in results.items():
        for t in TASKS:
            print(f"| {name} | {t} | " + " | ".join(cell([r[t][k] for r in runs]) for k in
                                                   ("accuracy", "muted_accuracy", "prior_accuracy", "unchanged")) + " |")


if __name__ == "__main__":
    main()

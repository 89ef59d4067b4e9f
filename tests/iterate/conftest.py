"""Shared pieces of the iterative-alignment tests: a one-round (or more) run of the shipped base model at the
smallest sizes that still make pairs, each stage a second or two."""
from __future__ import annotations

from pathlib import Path


def small(out: Path, *overrides: str):
    from mmalign.config import load_config
    from mmalign.iterate.config import IterateConfig
    return load_config(IterateConfig, None, [
        f"out={out}", "rounds=1", "prompts=16", "sampling.n=3", "preference.train.max_steps=4",
        "preference.train.batch_size=2", "preference.train.threads=1", "preference.train.log_every=1",
        "preference.train.eval_every=0", "preference.data.val_size=2", f"preference.cache_dir={out}/cache",
        "eval.n_scenes=2", "eval.proxy_prompts=4", "eval.reward_pairs=4", *overrides])

"""Named data recipes: the survey's preference-data constructions, each run on the lab from one config.

``mmalign data build --recipe NAME`` writes ``pairs.jsonl`` (mmalign's layout, images beside it) and
``report.json`` (counts by reason, build time) to ``out``. Each recipe names the loss its paper trains with.

| recipe | pairs | I' | loss |
|---|---|---|---|
| ``mdpo`` | ground-truth pairs (clean vs one object added or dropped; yes/no) | random resized crop | mdpo |
| ``image_dpo`` | the same prompts; only y under I vs y under I' is used | Gaussian blur / pixelation, alternating | image_dpo |
| ``povid`` | clean caption vs an injected hallucination (co-occurring object, colour, count) | forward diffusion noise, t=500 | povid |
| ``hadpo`` | clean caption vs a style-keeping rewrite (``lab_rewriter``), DDPO spans from a word diff | – | dpo |
| ``clip_dpo`` | n sampled captions, best vs worst by the CLIP-style scorer | – | dpo |
| ``sima`` | n sampled captions, best vs worst by the policy's own judgement | – | dpo |
| ``rlaif_v`` | n sampled captions, every pair whose claim scores differ by >= 1 (the policy as labeller) | – | dpo |
| ``silkie`` | n sampled captions, every pair by a judge's 1-10 rating (the lab judge), ties dropped | – | dpo |
| ``mia_dpo`` | ground-truth pairs with a distractor image (sequence, grid, pic-in-pic); rejected = the distractor's answer | – | dpo |
| ``adpo`` | clean caption vs the policy's caption under a PGD image, under I and under I_adv | – | dpo |
| ``symdpo`` | in-context demonstrations answered by symbols; chosen = the matching demonstration's symbol, rejected = the majority symbol or the plain answer | – | dpo |

Sampling recipes keep only finished samples; every recipe ends with de-duplication and, where pairs come from
sampling, the length balance filter (LAB.md: pairs whose rejected is systematically longer teach brevity).
"""
from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tqdm.auto import tqdm

from mmalign.construct import filters
from mmalign.construct.adversarial import adversarial_image
from mmalign.construct.corrupt import corrupt
from mmalign.construct.multi_image import LAYOUTS, lab_mia_pair
from mmalign.construct.sample import SamplingConfig, self_annotate
from mmalign.construct.scorers import make_scorer, model_labeller
from mmalign.construct.symdpo import QUESTION_TASKS, REJECTED, symdpo_pair
from mmalign.construct.text import (
    INJECTIONS,
    inject_negative,
    lab_rewriter,
    rewrite_negative,
)
from mmalign.data.preference import PreferenceRecord, write_preference_file
from mmalign.errors import ConfigError
from mmalign.models.generate import sample_responses
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import make_example

SHIPPED = Path(__file__).resolve().parents[1] / "assets" / "lab"


@dataclass
class RecipeConfig:
    recipe: str = "mdpo"
    world: WorldConfig = field(default_factory=WorldConfig)
    model: str = str(SHIPPED / "base")        # the policy that samples, labels its own answers or is attacked
    scorer_model: str = str(SHIPPED / "vision")   # clip_dpo: the vision pretraining folder (its head scores)
    n: int = 2000                            # prompts, one per train scene
    seed: int = 0
    sampling: SamplingConfig = field(default_factory=SamplingConfig)
    cache_dir: str = "~/.cache/mmalign/construct"   # adpo's PGD images (keyed by image, answer, settings, weights)
    out: str = "runs/data"

    def validate(self) -> None:
        if self.recipe not in RECIPES:
            raise ConfigError(f"unknown recipe '{self.recipe}' (known: {', '.join(RECIPES)})")
        if self.n < 1:
            raise ConfigError(f"n: {self.n} is not a positive number of prompts")


@dataclass(frozen=True)
class Recipe:
    build: Callable[[RecipeConfig], tuple[list[PreferenceRecord], dict]]
    loss: str
    paper: str


# ---- ground-truth pairs and image-side negatives ----------------------------------------------------------------

def _truth(cfg: RecipeConfig) -> list[PreferenceRecord]:
    return lab_pairs(cfg.world, LabPairsConfig(n=cfg.n, seed=cfg.seed))


def _mdpo(cfg):
    records = _truth(cfg)
    return records, {"source": "ground-truth pairs", "corrupt": "crop"}


def _image_dpo(cfg):
    records = [dataclasses.replace(r, corrupt_images=[corrupt(im, kind, seed=cfg.seed) for im in r.images],
                                   meta={**r.meta, "corrupt": kind})
               for i, r in enumerate(_truth(cfg)) for kind in [("blur", "pixelate")[i % 2]]]
    return records, {"source": "ground-truth prompts and answers", "corrupt": "blur / pixelate"}


# ---- text-side negatives ------------------------------------------------------------------------------------------

def _captions(cfg: RecipeConfig) -> list[PreferenceRecord]:
    """Caption records of the first ``n`` train scenes with the clean caption as ``chosen`` (rejected empty)."""
    out = []
    for i in range(cfg.n):
        ex = make_example(cfg.world, "caption", "train", i)
        out.append(PreferenceRecord(id=ex["id"], prompt=ex["prompt"], images=ex["images"], chosen=ex["answer"],
                                    rejected="", task="caption", meta={"objects": ex["meta"]["objects"]}))
    return out


def _povid(cfg):
    kinds, records, skipped = ("insert", "colour", "count"), [], 0
    for i, r in enumerate(_captions(cfg)):
        pair = inject_negative(cfg.world, r, kinds[i % len(kinds)], seed=cfg.seed)
        if pair is None:
            skipped += 1
            continue
        noisy = [corrupt(im, "diffusion_noise", seed=cfg.seed + i, t=500) for im in pair.images]
        records.append(dataclasses.replace(pair, corrupt_images=noisy))
    return records, {"source": "injection " + "/".join(kinds), "corrupt": "diffusion t=500",
                     "no_injection": skipped}


def _hadpo(cfg):
    rewrite = lab_rewriter(cfg.world, tuple(k for k in INJECTIONS if k != "drop"), seed=cfg.seed)
    pairs = [rewrite_negative(r, rewrite) for r in _captions(cfg)]
    records = [p for p in pairs if p is not None]
    return records, {"source": "style-keeping rewrite", "unchanged": len(pairs) - len(records)}


# ---- self-annotation ----------------------------------------------------------------------------------------------

def _policy(cfg: RecipeConfig):
    from mmalign.models.load import ModelConfig, load_model
    return load_model(ModelConfig(path=cfg.model))


def _caption_examples(cfg: RecipeConfig) -> list[dict]:
    return [make_example(cfg.world, "caption", "train", i) for i in range(cfg.n)]


def _sampling(cfg: RecipeConfig) -> SamplingConfig:
    """The recipe's seed moves the samples' draws too."""
    return dataclasses.replace(cfg.sampling, seed=cfg.sampling.seed + cfg.seed)


def _annotate(cfg: RecipeConfig, scorer, *, mode: str, min_margin: float):
    model, processor = _policy(cfg)
    return self_annotate(model, processor, _caption_examples(cfg), scorer, sampling=_sampling(cfg),
                         min_margin=min_margin, mode=mode)


def _clip_dpo(cfg):
    from mmalign.train.vision import load_scorer
    return _annotate(cfg, make_scorer("clip", vision=load_scorer(cfg.scorer_model)), mode="best_worst",
                     min_margin=1e-6)


def _sima(cfg):
    model, processor = _policy(cfg)
    return self_annotate(model, processor, _caption_examples(cfg),
                         make_scorer("self_judge", model=model, processor=processor), sampling=_sampling(cfg),
                         min_margin=1e-6, mode="best_worst")


def _rlaif_v(cfg):
    model, processor = _policy(cfg)
    scorer = make_scorer("claims", labeller=model_labeller(model, processor))
    return self_annotate(model, processor, _caption_examples(cfg), scorer, sampling=_sampling(cfg),
                         min_margin=1.0, mode="all")


def _silkie(cfg):
    # the lab judge's 1-10 rating stands in for GPT-4V's
    return _annotate(cfg, make_scorer("lab_judge"), mode="all", min_margin=1e-6)


# ---- multi-image and adversarial -----------------------------------------------------------------------------------

def _mia_dpo(cfg):
    records, none = [], 0
    for i, r in enumerate(tqdm(_truth(cfg), desc="mia_dpo", unit="pair")):
        layout = LAYOUTS[i % len(LAYOUTS)]
        pair = lab_mia_pair(cfg.world, dataclasses.replace(r, corrupt_images=None), layout=layout, seed=cfg.seed)
        if pair is None:
            none += 1
        else:
            records.append(pair)
    return records, {"source": "ground-truth pairs + a distractor", "layouts": list(LAYOUTS),
                     "no_differing_distractor": none}


def _adpo(cfg):
    model, processor = _policy(cfg)
    captions = _captions(cfg)
    cache = Path(cfg.cache_dir).expanduser()
    attacked = [adversarial_image(model, processor, r.images[0], r.prompt, r.chosen, seed=cfg.seed + i, cache_dir=cache)
                for i, r in enumerate(tqdm(captions, desc="adpo: PGD", unit="image"))]
    under_adv = sample_responses(model, processor, [{"images": [a], "prompt": r.prompt}
                                                    for a, r in zip(attacked, captions)],
                                 n=1, temperature=0.0, top_p=1.0, max_new_tokens=cfg.sampling.max_new_tokens,
                                 seed=cfg.seed, batch_size=cfg.sampling.batch_size)
    records, same = [], 0
    for r, adv, texts, stopped in zip(captions, attacked, under_adv.texts, under_adv.stopped):
        y_adv = texts[0]
        if y_adv == r.chosen or not stopped[0]:
            same += 1
            continue
        base = dataclasses.replace(r, rejected=y_adv, meta={**r.meta, "y_adv": y_adv})
        # preferred-image term (y_c over y_adv, clean image) and adversarial-image term (y_c even under I_adv)
        records += [dataclasses.replace(base, id=f"{r.id}-clean"),
                    dataclasses.replace(base, id=f"{r.id}-adv", images=[adv])]
    return records, {"source": "greedy caption under a PGD image (eps 8/255, 10 steps)", "unchanged": same}


def _symdpo(cfg):
    records, none = [], 0
    for i in tqdm(range(cfg.n), desc="symdpo", unit="prompt"):
        task, rejected = QUESTION_TASKS[i % 3], REJECTED[i // 3 % 2]
        pair = symdpo_pair(cfg.world, task, i, rejected=rejected, seed=cfg.seed)
        none += pair is None
        records += [pair] if pair is not None else []
    return records, {"source": "in-context symbol demonstrations", "tasks": list(QUESTION_TASKS),
                     "rejected": list(REJECTED), "no_demonstrations": none}


RECIPES = {
    "mdpo": Recipe(_mdpo, "mdpo", "mDPO, arXiv 2406.11839"),
    "image_dpo": Recipe(_image_dpo, "image_dpo", "Image-DPO (ViLP), arXiv 2501.00569"),
    "povid": Recipe(_povid, "povid", "POVID, arXiv 2402.11411"),
    "hadpo": Recipe(_hadpo, "dpo", "HA-DPO, arXiv 2311.16839"),
    "clip_dpo": Recipe(_clip_dpo, "dpo", "CLIP-DPO, arXiv 2408.10433"),
    "sima": Recipe(_sima, "dpo", "SIMA, arXiv 2405.15973"),
    "rlaif_v": Recipe(_rlaif_v, "dpo", "RLAIF-V, arXiv 2405.17220"),
    "silkie": Recipe(_silkie, "dpo", "Silkie / VLFeedback, arXiv 2312.10665"),
    "mia_dpo": Recipe(_mia_dpo, "dpo", "MIA-DPO, arXiv 2410.17637"),
    "adpo": Recipe(_adpo, "dpo", "AdPO, arXiv 2504.01735"),
    "symdpo": Recipe(_symdpo, "dpo", "SymDPO, arXiv 2411.11909"),
}
SAMPLED = ("clip_dpo", "sima", "rlaif_v", "silkie")


def build_recipe(cfg: RecipeConfig) -> dict:
    """Run the recipe, filter (de-duplicate; length balance for sampled pairs), write pairs and report."""
    cfg.validate()
    start = time.perf_counter()
    records, report = RECIPES[cfg.recipe].build(cfg)
    records, report["dedupe"] = filters.dedupe(records)
    if cfg.recipe in SAMPLED:
        records, report["length_balance"] = filters.length_balance(records, seed=cfg.seed)
    if not records:
        raise ConfigError(f"recipe '{cfg.recipe}' made no pairs from {cfg.n} prompts: {report}")
    out = Path(cfg.out)
    path = write_preference_file(records, out / "pairs.jsonl")
    report |= {"recipe": cfg.recipe, "loss": RECIPES[cfg.recipe].loss, "paper": RECIPES[cfg.recipe].paper,
               "prompts": cfg.n, "pairs": len(records), "seconds": round(time.perf_counter() - start, 1)}
    (out / "report.json").write_text(json.dumps(report, indent=2, default=str))
    return {"file": str(path), **{k: report[k] for k in ("recipe", "loss", "pairs", "seconds")}}

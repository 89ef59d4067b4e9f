"""Official-compatible scoring of the public benchmarks (design/reference/EVALUATION.md), one module each.

``BENCHMARKS`` maps a name to a ``Benchmark``:
    load(path) -> items        reads the official files at a path the user gives (nothing is downloaded); a
                               missing or malformed file raises MMAlignError naming the file, record and field
    prompt(item) -> str        the text prompt the official protocol gives the model
    score(item, response[, judge]) -> row     one response; a reward benchmark's response is its reward pair
    aggregate(rows) -> metrics
    images(item, root) -> refs  the item's image references (``images.ImageRef``); ``root`` is the image folder
    candidates(item) -> texts  reward benchmarks only: the two responses whose rewards form the "response"
    version                    bump when a prompt or a metric changes, so numbers of two versions never mix
    needs_judge                score takes a ``judge.Judge``; its id, settings and parse failures are reported
Named variants (``pope_lmms_eval``, ``mme_lmms_eval``, ...) share the loader and differ in one parser.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path

from mmalign.errors import MMAlignError
from mmalign.eval.official import (
    alignbench,
    amber,
    chair,
    hallusion,
    llava_wild,
    mmbench,
    mme,
    mmhal,
    objhal,
    pope,
    rewardbench,
    vlguard,
)
from mmalign.eval.official.images import ImageRef
from mmalign.eval.official.judge import Judge


@dataclass(frozen=True)
class Benchmark:
    version: str
    load: Callable[[str | Path], list[dict]]
    prompt: Callable[[dict], str]
    score: Callable[..., dict]
    aggregate: Callable[[list[dict]], dict]
    images: Callable[[dict, Path | None], list[ImageRef]]
    needs_judge: bool = False
    candidates: Callable[[dict], list[str]] | None = None


def _module(m, needs_judge: bool = False, **score_kw) -> Benchmark:
    score = partial(m.score, **score_kw) if score_kw else m.score
    return Benchmark(m.VERSION, m.load, m.prompt, score, m.aggregate, m.images, needs_judge)


_rb = rewardbench
BENCHMARKS = {
    "pope": _module(pope),
    "pope_lmms_eval": _module(pope, parser="lmms_eval"),
    "pope_vlmevalkit": _module(pope, parser="vlmevalkit"),
    "chair": _module(chair),
    "amber": _module(amber),
    "object_halbench": _module(objhal, needs_judge=True),
    "mmhal_bench": _module(mmhal, needs_judge=True),
    "hallusion_bench": _module(hallusion, needs_judge=True),
    "mme": _module(mme),
    "mme_lmms_eval": _module(mme, parser="lmms_eval"),
    "mmbench": _module(mmbench),
    "vlguard": _module(vlguard),
    "vl_rewardbench": Benchmark(_rb.VERSION, _rb.load_vl, _rb.prompt_vl, _rb.score_vl, _rb.aggregate_vl,
                                _rb.images_vl, candidates=_rb.candidates_vl),
    "mm_rlhf_rewardbench": Benchmark(_rb.VERSION, _rb.load_mm_rlhf, _rb.prompt_mm_rlhf, _rb.score_mm_rlhf,
                                     _rb.aggregate_mm_rlhf, _rb.images_mm_rlhf, candidates=_rb.candidates_mm_rlhf),
    "llava_wild": _module(llava_wild, needs_judge=True),
    "mm_alignbench": _module(alignbench, needs_judge=True),
}


def evaluate(name: str, items: list[dict], responses: Sequence, judge: Judge | None = None) -> dict:
    """Score ``responses[i]`` against ``items[i]`` and aggregate: ``{benchmark, version, metrics, rows}``."""
    if name not in BENCHMARKS:
        raise MMAlignError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    bench = BENCHMARKS[name]
    if len(items) != len(responses):
        raise MMAlignError(f"{name}: {len(items)} items but {len(responses)} responses")
    if bench.needs_judge and judge is None:
        raise MMAlignError(f"{name} is judged: pass judge=Judge(fn, judge_id, settings)")
    extra = (judge,) if bench.needs_judge else ()
    rows = [bench.score(item, response, *extra) for item, response in zip(items, responses)]
    return {"benchmark": name, "version": bench.version, "metrics": bench.aggregate(rows), "rows": rows}

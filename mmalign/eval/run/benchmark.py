"""``mmalign bench``: a model folder on one official benchmark, from its official files to results and a report.

    load items -> image references (every file checked first) -> prompts -> batched greedy generation (or, for
    the reward benchmarks, the rewards of each item's two responses) cached per item in ``responses.jsonl``
    -> ``official.evaluate`` (with the judge for judged benchmarks) -> ``results.json``, ``rows.jsonl``,
    ``report.md``, ``report.html``

Batches are written to the cache as soon as they are produced; a rerun with the same out folder produces only
the items the cache lacks, and a cache from another benchmark version, model, data file, image folder or
generation setting is refused (``cache.ResponseCache``). A judge given as a ``JudgeConfig`` keeps its replies in
``out/judge_cache`` unless it names a cache folder, so an interrupted judged run does not pay twice.
"""
from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from mmalign.data.records import raise_problems
from mmalign.errors import ConfigError, MMAlignError
from mmalign.eval.official import BENCHMARKS, Benchmark, evaluate
from mmalign.eval.official.images import ImageRef, missing, open_images
from mmalign.eval.official.judge import Judge
from mmalign.eval.run import produce
from mmalign.eval.run.cache import ResponseCache, model_fingerprint
from mmalign.eval.run.judge import client_judge
from mmalign.eval.run.report import bench_report
from mmalign.judge.client import JudgeConfig
from mmalign.models.load import ModelConfig, load_model


@dataclass
class BenchConfig:
    model: str = ""                  # a model folder (or hub id)
    benchmark: str = ""              # a name in mmalign.eval.official.BENCHMARKS
    data: str = ""                   # the benchmark's official file or folder
    images: str = ""                 # the image folder (COCO val2014 for POPE and CHAIR, ...); see official.images
    out: str = "runs/bench"
    batch_size: int = 16
    max_new_tokens: int = 512
    dtype: str = "float32"
    device: str = "auto"             # auto: cuda when available, else cpu
    judge: JudgeConfig = field(default_factory=JudgeConfig)   # used by the judged benchmarks only

    def validate(self) -> None:
        if self.benchmark and self.benchmark not in BENCHMARKS:
            close = difflib.get_close_matches(self.benchmark, BENCHMARKS, n=1)
            hint = f"; did you mean '{close[0]}'?" if close else f" (known: {', '.join(BENCHMARKS)})"
            raise ConfigError(f"unknown benchmark '{self.benchmark}'{hint}")
        if self.batch_size <= 0 or self.max_new_tokens <= 0:
            raise ConfigError("batch_size and max_new_tokens must be positive")


def run_bench(cfg: BenchConfig) -> dict:
    """The CLI's entry: ``run_benchmark`` with the config's settings; returns where the results went."""
    for key in ("model", "benchmark", "data"):
        if not getattr(cfg, key):
            raise ConfigError(f"bench: set {key}=... (or --{key})")
    judge = cfg.judge if BENCHMARKS[cfg.benchmark].needs_judge else None
    result = run_benchmark(cfg.model, cfg.benchmark, cfg.data, image_root=cfg.images or None, out=cfg.out,
                           judge=judge, batch_size=cfg.batch_size, max_new_tokens=cfg.max_new_tokens,
                           dtype=cfg.dtype, device=cfg.device)
    out = Path(cfg.out)
    return {"results": str(out / "results.json"), "report": str(out / "report.md"), "metrics": result["metrics"]}


def run_benchmark(model_dir: str, name: str, data_path: str | Path, *, out: str | Path,
                  image_root: str | Path | None = None, judge: JudgeConfig | Judge | None = None,
                  reward: produce.Reward | None = None, batch_size: int = 16, max_new_tokens: int = 512,
                  dtype: str = "float32", device: str = "auto") -> dict:
    """Evaluate ``model_dir`` on benchmark ``name`` (see the module docstring); returns ``results.json``'s content.

    ``judge``: a ``JudgeConfig`` (an OpenAI-compatible endpoint) or an ``official.judge.Judge`` (any Python
    function); required by the judged benchmarks. ``reward``: the reward benchmarks' reward function; default
    the model's mean log-likelihood per token.
    """
    bench = _benchmark(name)
    if bench.needs_judge and judge is None:
        raise MMAlignError(f"{name} is judged: give a judge (judge.base_url=... judge.model=...)")
    out, root = Path(out), Path(image_root) if image_root else None
    items = bench.load(data_path)
    refs = _image_refs(name, bench, items, root)
    if isinstance(judge, JudgeConfig):
        judge = client_judge(dataclasses.replace(judge, cache_dir=judge.cache_dir or str(out / "judge_cache")), root)
    settings = _settings(bench, reward, max_new_tokens, dtype)
    local = Path(model_dir).expanduser()
    header = {"benchmark": name, "version": bench.version, "model": str(local.resolve()) if local.is_dir() else model_dir,
              "model_fingerprint": model_fingerprint(model_dir), "data": str(Path(data_path).resolve()),
              "images": str(root.resolve()) if root else None, **settings}
    cache = ResponseCache(out / "responses.jsonl", header, [item["id"] for item in items])
    prompts = [bench.prompt(item) for item in items]
    todo = sorted((i for i in range(len(items)) if i not in cache.done), key=lambda i: len(refs[i]))
    if todo:
        make = _producer(bench, model_dir, reward, max_new_tokens, batch_size, dtype, device)
        with tqdm(total=len(items), initial=len(items) - len(todo), desc=name, unit="item") as bar:
            for start in range(0, len(todo), batch_size):
                chunk = todo[start:start + batch_size]
                examples = [{"images": open_images(refs[i]), "prompt": prompts[i]} for i in chunk]
                candidates = [bench.candidates(items[i]) for i in chunk] if bench.candidates else None
                cache.add([(i, items[i]["id"], o) for i, o in zip(chunk, make(examples, candidates), strict=True)])
                bar.update(len(chunk))
    responses = [cache.done[i] for i in range(len(items))]
    scored = evaluate(name, items, responses, judge if bench.needs_judge else None)
    result = _result(header, settings, scored, len(items))
    _write(out, result, [{"id": it["id"], "prompt": p, "response": r, "score": row}
                         for it, p, r, row in zip(items, prompts, responses, scored["rows"])])
    return result


def _benchmark(name: str) -> Benchmark:
    if name not in BENCHMARKS:
        raise MMAlignError(f"unknown benchmark '{name}' (known: {', '.join(BENCHMARKS)})")
    return BENCHMARKS[name]


def _image_refs(name: str, bench: Benchmark, items: list[dict], root: Path | None) -> list[list[ImageRef]]:
    """Every item's image references; every unreadable reference and missing file of the run, listed at once."""
    refs, problems = [], []
    for item in items:
        try:
            refs.append(bench.images(item, root))
        except MMAlignError as e:
            problems.append(str(e))
            refs.append([])
    problems += [p for r in refs for p in missing(r)]
    raise_problems(problems, items, f"the images of {name} (image folder: {root})")
    return refs


def _settings(bench: Benchmark, reward: produce.Reward | None, max_new_tokens: int, dtype: str) -> dict:
    """What the cached outputs depend on besides the model and the data."""
    if bench.candidates is None:
        return {"generation": {"decoding": "greedy", "max_new_tokens": max_new_tokens, "dtype": dtype}}
    if reward is None:
        return {"reward": produce.LIKELIHOOD_REWARD_ID, "dtype": dtype}
    return {"reward": reward.reward_id}


def _producer(bench: Benchmark, model_dir: str, reward: produce.Reward | None, max_new_tokens: int,
              batch_size: int, dtype: str, device: str):
    """``make(examples, candidates) -> outputs`` for one batch; loads the model only when it is needed."""
    if bench.candidates is not None and reward is not None:
        return lambda examples, candidates: produce.custom_rewards(reward, examples, candidates)
    model, processor = load_model(ModelConfig(path=model_dir, dtype=dtype))
    model = model.to(("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device).eval()
    if bench.candidates is not None:
        return lambda examples, candidates: produce.likelihood_rewards(model, processor, examples, candidates)
    return lambda examples, _: produce.generate(model, processor, examples, max_new_tokens=max_new_tokens,
                                                batch_size=batch_size)


def _result(header: dict, settings: dict, scored: dict, n_items: int) -> dict:
    metrics = scored["metrics"]
    result = {"benchmark": header["benchmark"], "version": header["version"],
              "model": {"path": header["model"], "fingerprint": header["model_fingerprint"]},
              "data": header["data"], "images": header["images"], "n_items": n_items, **settings}
    if "judge" in metrics:
        result["judge"] = metrics["judge"] | {"n_judged": metrics["n_judged"],
                                              "n_parse_failures": metrics["n_parse_failures"]}
    return result | {"metrics": metrics}


def _write(out: Path, result: dict, records: list[dict]) -> None:
    (out / "results.json").write_text(json.dumps(result, indent=2, default=str), encoding="utf-8")
    with (out / "rows.jsonl").open("w", encoding="utf-8") as f:
        for r in records:
            f.write(json.dumps(r, default=str) + "\n")
    bench_report(result, records, out)

"""``mmalign eval``: load a model folder, evaluate it on the lab tasks and the figures built on them, write
results and a report covering the six dimensions."""
from __future__ import annotations

from pathlib import Path

from mmalign.eval.dimensions import conversation, human_preference, reward_accuracy
from mmalign.eval.lab import LabEvalConfig, evaluate_lab, lab_examples, write_results
from mmalign.models.load import ModelConfig, load_model
from mmalign.world.preference import LabPairsConfig, lab_pairs
from mmalign.world.scenes import WorldConfig
from mmalign.world.tasks import TASKS

ALIASES = {"pope": "exist", "chair": "caption"}   # the benchmarks' names for the lab tasks that mirror them


def evaluate_folder(model_dir: str, world: WorldConfig, out: str | Path, *, tasks: list[str] | None = None,
                    n_scenes: int = 600, n_per_task: int = 200, batch_size: int = 64, reward_model: str = "") -> dict:
    model, processor = load_model(ModelConfig(path=model_dir))
    cfg = LabEvalConfig(world=world, model=model_dir, tasks=list(tasks or TASKS), n_scenes=n_scenes,
                        n_per_task=n_per_task, batch_size=batch_size, out=str(out), reward_model=reward_model)
    metrics, records = evaluate_lab(model, processor, cfg)
    metrics |= pair_figures(model, processor, cfg, [r["response"] for r in records])
    write_results(metrics, records, out)
    return metrics


def pair_figures(model, processor, cfg: LabEvalConfig, responses: list[str]) -> dict:
    """The figures that need more than one response's score (``eval.dimensions``): conversation and human
    preference from the lab judge over ``responses`` (those of ``lab_examples(cfg)``, in order; each needs its
    tasks among ``cfg.tasks``), and the reward-model accuracy on ``cfg.n_per_task`` held-out lab pairs: of
    ``cfg.reward_model`` when given, else of the model's own likelihood."""
    examples = lab_examples(cfg)
    if cfg.reward_model:
        from mmalign.reward.score import load_reward_model
        pairs = lab_pairs(cfg.world, LabPairsConfig(n=cfg.n_per_task, split="test"), for_eval=True)
        reward = load_reward_model(cfg.reward_model).pairwise_accuracy(pairs) | {"reward": cfg.reward_model}
    else:
        reward = reward_accuracy(model, processor, cfg.world, cfg.n_per_task, batch_size=cfg.batch_size)
    figures = {"conversation": conversation(examples, responses),
               "preference": human_preference(cfg.world, examples, responses), "reward": reward}
    return {name: value for name, value in figures.items() if value}


def run_eval(cfg: LabEvalConfig) -> dict:
    from mmalign.errors import MMAlignError
    from mmalign.eval.report import eval_report
    if not cfg.model:
        raise MMAlignError("eval: set model=<model folder>")
    tasks = list(dict.fromkeys(ALIASES.get(t, t) for t in cfg.tasks))
    unknown = [t for t in tasks if t not in TASKS]
    if unknown:
        raise MMAlignError(f"eval: unknown task(s) {unknown} (known: {', '.join(TASKS)}; "
                           f"aliases: {', '.join(f'{a}={t}' for a, t in ALIASES.items())})")
    metrics = evaluate_folder(cfg.model, cfg.world, cfg.out, tasks=tasks, n_scenes=cfg.n_scenes,
                              n_per_task=cfg.n_per_task, batch_size=cfg.batch_size, reward_model=cfg.reward_model)
    report = eval_report({"model": metrics}, Path(cfg.out))
    return {"results": str(Path(cfg.out) / "results.json"), "report": str(report)}

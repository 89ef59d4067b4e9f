"""``mmalign <command>``: parse arguments, load the command's typed config, call one function.

Every command takes ``[--config FILE] [key.sub=value ...]``; overrides beat the file, the file beats the
defaults, and ``--key.sub VALUE`` is the override ``key.sub=VALUE``. ``mmalign data`` (convert, validate and show
data files; ``data/formats/commands.py``), ``mmalign serve`` (an OpenAI-compatible endpoint for a model folder;
``serve.py``) and ``mmalign compare`` (eval runs side by side) have arguments of their own. Errors caused by
input (a missing file, an unknown key, a bad record) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable

from mmalign.config import load_config, to_yaml
from mmalign.errors import MMAlignError


def _commands() -> dict[str, tuple[type, Callable, str]]:
    # Imported here so `mmalign --help` and config errors stay fast.
    from mmalign.eval.lab import LabEvalConfig
    from mmalign.eval.lmms.tasks import LmmsTasksConfig, export_tasks
    from mmalign.eval.run import BenchConfig, run_bench
    from mmalign.eval.runner import run_eval
    from mmalign.iterate.config import IterateConfig
    from mmalign.iterate.rounds import run_iterate
    from mmalign.judge.ask import JudgeAskConfig, ask_judge
    from mmalign.quickstart import QuickstartConfig, quickstart
    from mmalign.reward.train import RewardConfig, train_reward_model
    from mmalign.rl.config import RLConfig
    from mmalign.rl.trainer import run_rl
    from mmalign.train.base import BaseModelConfig, train_base_model
    from mmalign.train.preference import PreferenceConfig, run_preference
    from mmalign.train.sft import SFTConfig, run_sft
    from mmalign.train.vision import VisionConfig, pretrain_vision
    from mmalign.world.export import BuildConfig, build_world
    return {
        "quickstart": (QuickstartConfig, quickstart, "build the world, get the base model, evaluate, report"),
        "world": (BuildConfig, build_world, "render the lab world to a dataset folder (world build)"),
        "vision": (VisionConfig, pretrain_vision, "stage 1: pretrain the lab's vision tower"),
        "sft": (SFTConfig, run_sft, "supervised fine-tuning of an image-text model"),
        "base": (BaseModelConfig, train_base_model, "train the lab base model (vision + SFT) and its control"),
        "train": (PreferenceConfig, run_preference, "offline preference optimisation (DPO, mDPO, SimPO, ... )"),
        "iterate": (IterateConfig, run_iterate, "rounds of sample -> label -> filter -> preference training -> "
                    "evaluate (iterative DPO)"),
        "reward": (RewardConfig, train_reward_model, "train a Bradley-Terry reward model on an image-text backbone"),
        "rl": (RLConfig, run_rl, "online RL on the lab (GRPO, DAPO, RLOO, REINFORCE++, PPO)"),
        "eval": (LabEvalConfig, run_eval, "evaluate a model on the lab tasks (the six dimensions)"),
        "bench": (BenchConfig, run_bench, "run a model on an official benchmark's files (POPE, MME, ...)"),
        "lmms-tasks": (LmmsTasksConfig, export_tasks, "write the lab tasks as lmms-eval task files (--include_path)"),
        "judge": (JudgeAskConfig, ask_judge, "ask an OpenAI-compatible judge one question; prints the judgement"),
    }


def _parser(commands: dict) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="mmalign", description="Align multimodal LLMs with human preference.")
    sub = p.add_subparsers(dest="command", required=True)
    for name, (_, _, help_) in commands.items():
        c = sub.add_parser(name, help=help_, aliases=[a for a, n in ALIASES.items() if n == name])
        if name == "world":
            c.add_argument("action", choices=["build"])
        if name in ("eval", "bench"):
            c.add_argument("--model", help="shorthand for model=DIR")
        if name == "eval":
            c.add_argument("--tasks", help="comma-separated tasks, shorthand for tasks=[...]")
        if name == "bench":
            for key, what in SHORTHANDS.items():
                c.add_argument(f"--{key}", help=f"shorthand for {key}={what}")
        c.add_argument("--config", "-c", help="YAML file of settings")
        c.add_argument("--out", help="shorthand for the command's output folder setting")
        c.add_argument("overrides", nargs="*", help="key.sub=value settings that beat the file")
    sub.add_parser("data", help="build, convert, validate and show preference data (mmalign data --help)",
                   add_help=False)
    sub.add_parser("serve", help="OpenAI-compatible endpoint for a local model folder, on 127.0.0.1 by default "
                   "(mmalign serve --help)", add_help=False)
    sub.add_parser("compare", help="eval runs side by side with differences (mmalign compare RUN RUN ... --out DIR)",
                   add_help=False)
    show = sub.add_parser("config", help="print a command's resolved config")
    show.add_argument("action", choices=["show"])
    show.add_argument("target", choices=list(commands))
    show.add_argument("file", nargs="?")
    show.add_argument("overrides", nargs="*")
    return p


OUT_KEYS = {"quickstart": "out", "world": "out", "vision": "train.output_dir", "sft": "train.output_dir",
            "base": "out", "eval": "out", "bench": "out", "lmms-tasks": "out",
            "train": "train.output_dir", "iterate": "out", "reward": "train.output_dir", "rl": "train.output_dir"}
ALIASES = {"rm": "reward"}   # other names of a command
SHORTHANDS = {"benchmark": "NAME", "data": "PATH", "images": "DIR"}   # mmalign bench's, besides --model


def _dotted_flags(args: list[str]) -> list[str]:
    """``--judge.base_url URL`` and ``--judge.base_url=URL`` as the override ``judge.base_url=URL`` (before
    argparse, which would take URL for a positional)."""
    out, i = [], 0
    while i < len(args):
        key, eq, value = args[i][2:].partition("=")
        if args[i].startswith("--") and "." in key and (eq or i + 1 < len(args)):
            out.append(f"{key}={value if eq else args[i + 1]}")
            i += 1 if eq else 2
        else:
            out.append(args[i])
            i += 1
    return out


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["data"]:  # subcommands of its own, outside the config machinery
        from mmalign.data.formats.commands import main as data_main
        return data_main(argv[1:])
    if argv[:1] == ["serve"]:
        from mmalign.serve import serve_main
        return serve_main(argv[1:])
    if argv[:1] == ["compare"]:
        return _compare(argv[1:])
    commands = _commands()
    parser = _parser(commands)
    # overrides may come after --config/--out, which plain argparse cannot split into one positional list
    args, extra = parser.parse_known_args(_dotted_flags(argv))
    stray = [a for a in extra if a.startswith("-") or "=" not in a]
    if stray:
        parser.error(f"unrecognized arguments: {' '.join(stray)}")
    args.overrides = list(args.overrides) + extra
    args.command = ALIASES.get(args.command, args.command)
    if getattr(args, "out", None) and args.command not in OUT_KEYS:
        parser.error(f"mmalign {args.command} writes no output folder: --out does not apply")
    try:
        if args.command == "config":
            file, overrides = args.file, list(args.overrides)
            if file and "=" in file:  # `config show sft key=value` with no file
                file, overrides = None, [file] + overrides
            print(to_yaml(load_config(commands[args.target][0], file, overrides)), end="")
            return 0
        cls, run, _ = commands[args.command]
        overrides = list(args.overrides) + ([f"{OUT_KEYS[args.command]}={args.out}"] if args.out else [])
        if args.command in ("eval", "bench") and args.model:
            overrides.append(f"model={args.model}")
        if args.command == "eval" and args.tasks:
            overrides.append(f"tasks=[{args.tasks}]")
        if args.command == "bench":
            overrides += [f"{key}={getattr(args, key)}" for key in SHORTHANDS if getattr(args, key)]
        result = run(load_config(cls, args.config, overrides))
        if result is not None:
            print(json.dumps(result, indent=2, default=str))
        return 0
    except MMAlignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


def _compare(argv: list[str]) -> int:
    from mmalign.eval.report import compare
    p = argparse.ArgumentParser(prog="mmalign compare", description="Eval runs side by side, with differences "
                                "from the first run (Markdown, HTML and plots).")
    p.add_argument("runs", nargs="+", help="eval output folders (or their results.json)")
    p.add_argument("--out", default="runs/compare")
    args = p.parse_args(argv)
    try:
        print(compare(args.runs, args.out))
        return 0
    except MMAlignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

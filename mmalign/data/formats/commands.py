"""``mmalign data``: convert, validate and show preference-data files in the formats of ``registry.FORMATS``.

    mmalign data convert IN OUT --to FMT [--from FMT]      # --from is detected when omitted
    mmalign data validate FILE [--format FMT]              # every problem, one a line; exit 1 when any
    mmalign data show FILE [--out PAGE.html] [--limit N] [--format FMT]
    mmalign data build --recipe NAME [--config FILE] [--out DIR] [key=value ...]   # construct/recipes.py

Input errors (a missing file, an unknown format, records a format cannot hold) print one ``error:`` message and
exit 2, as the other commands do.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from mmalign.data.formats.registry import FORMATS, check_file, convert, read_records
from mmalign.data.formats.show import write_page
from mmalign.errors import MMAlignError


def parser() -> argparse.ArgumentParser:
    names = list(FORMATS)
    p = argparse.ArgumentParser(prog="mmalign data", description="Convert, validate and show preference data. "
                                f"Formats (FMT): {', '.join(names)}.")
    sub = p.add_subparsers(dest="action", required=True)
    c = sub.add_parser("convert", help="read a file in one format and write it in another")
    c.add_argument("input", type=Path)
    c.add_argument("output", type=Path, help="its suffix picks the container: .jsonl, .json or .parquet")
    c.add_argument("--from", dest="source_format", choices=names, metavar="FMT",
                   help="the input's format (default: detected)")
    c.add_argument("--to", required=True, choices=names, metavar="FMT")
    v = sub.add_parser("validate", help="list every problem of a file, with record and field")
    v.add_argument("file", type=Path)
    v.add_argument("--format", choices=names, metavar="FMT", help="default: detected")
    s = sub.add_parser("show", help="an HTML page: images, prompt, chosen beside rejected")
    s.add_argument("file", type=Path)
    s.add_argument("--out", type=Path, help="default: FILE with the suffix .html")
    s.add_argument("--limit", type=int, default=50, help="records shown (default 50)")
    s.add_argument("--format", choices=names, metavar="FMT", help="default: detected")
    b = sub.add_parser("build", help="construct lab preference pairs with a named recipe (mdpo, povid, rlaif_v, ...)")
    b.add_argument("--recipe", help="a recipe name (shorthand for recipe=NAME)")
    b.add_argument("--config", "-c", help="YAML file of RecipeConfig settings")
    b.add_argument("--out", help="output folder (shorthand for out=DIR)")
    b.add_argument("overrides", nargs="*", help="key.sub=value settings")
    return p


def main(argv: list[str]) -> int:
    args = parser().parse_args(argv)
    try:
        if args.action == "build":
            import json

            from mmalign.config import load_config
            from mmalign.construct.recipes import RecipeConfig, build_recipe
            overrides = list(args.overrides) + [f"{k}={v}" for k, v in (("recipe", args.recipe), ("out", args.out)) if v]
            print(json.dumps(build_recipe(load_config(RecipeConfig, args.config, overrides)), indent=2))
            return 0
        if args.action == "convert":
            fmt, n = convert(args.input, args.output, args.to, args.source_format)
            print(f"wrote {n} record(s) from {args.input} ({fmt}) to {args.output} ({args.to})")
            return 0
        if args.action == "validate":
            fmt, records, problems = check_file(args.file, args.format)
            for problem in problems:
                print(problem)
            print(f"{args.file} ({fmt}): {len(records)} record(s) read, {len(problems)} problem(s)")
            return 1 if problems else 0
        out = write_page(read_records(args.file, args.format), args.file.name,
                         args.out or args.file.with_suffix(".html"), args.limit)
        print(f"wrote {out}")
        return 0
    except MMAlignError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2

"""`simu-bench ladder`: the same comparison on several target sizes (see `simu_bench.pipeline.ladder`).

    simu-bench ladder --sizes tiny,small,medium --methods fo_graddiff,so_graddiff,simu,random_mask \
        --seeds 0,1,2,3,4 --out ladder

Writes one run store per size (`OUT/<size>/`) and `OUT/ladder.{json,md,png}`; rerunning the same
command skips finished runs.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from simu_bench.errors import UserError

DEFAULT_METHODS = "fo_graddiff,so_graddiff,simu,random_mask,attention_only,simu_mlp_only,simu_forget_only"


def add_parser(subparsers) -> argparse.ArgumentParser:
    from simu_bench.target_model.sizes import SIZES

    parser = subparsers.add_parser(
        "ladder", help="run the same methods on several target sizes and compare them across sizes",
        description="For each size: `run` on the embedded target of that size into OUT/<size>; then "
                    "OUT/ladder.{json,md,png} with each size's metrics and paired differences.",
    )
    parser.add_argument("--sizes", required=True, metavar="a,b,c",
                        help=f"target sizes, at least two: {', '.join(SIZES)}")
    parser.add_argument("--methods", default=DEFAULT_METHODS, metavar="a,b,c",
                        help=f"methods to run (default: {DEFAULT_METHODS})")
    parser.add_argument("--seeds", default="0,1,2,3,4", metavar="0,1,2", help="seeds (default: 0,1,2,3,4)")
    parser.add_argument("--pairs", default="", metavar="a-b,c-d",
                        help="paired differences to report besides simu-so_graddiff and simu-random_mask")
    parser.add_argument("--out", type=Path, default=Path("ladder"), metavar="DIR", help="output (default: ladder/)")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a method config key on every size (before the lr rule), repeatable")
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    parser.set_defaults(handler=main)
    return parser


def parse_pairs(text: str, methods: tuple[str, ...]) -> list[tuple[str, str]]:
    """The default pairs whose methods run, plus `a-b,...` (both methods must be among --methods)."""
    from simu_bench.leaderboard.ladder import DEFAULT_PAIRS

    pairs = [pair for pair in DEFAULT_PAIRS if set(pair) <= set(methods)]
    for item in (i.strip() for i in text.split(",") if i.strip()):
        a, sep, b = item.partition("-")
        if not sep or a not in methods or b not in methods:
            raise UserError(f"--pairs {item}: expected A-B with A and B among --methods ({', '.join(methods)})")
        if (a, b) not in pairs:
            pairs.append((a, b))
    return pairs


def main(args) -> int:
    from simu_bench.pipeline.ladder import parse_sizes, run_ladder
    from simu_bench.pipeline.plan import Plan, parse_seeds, resolve_methods

    sizes = parse_sizes(args.sizes)
    methods = resolve_methods(args.methods)
    pairs = parse_pairs(args.pairs, methods)
    words = ["simu-bench", "ladder", "--sizes", args.sizes, "--methods", args.methods, "--seeds", args.seeds]
    words += (["--pairs", args.pairs] if args.pairs else []) + ["--out", str(args.out)]
    for override in args.overrides:
        words += ["--set", override]
    plan = Plan(methods=methods, seeds=parse_seeds(args.seeds), out=args.out, overrides=tuple(args.overrides),
                quiet=args.quiet, command=shlex.join(words))
    counts, written = run_ladder(plan, sizes, pairs)
    print("runs: " + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    for path in written:
        print(f"wrote {path}")
    return 1 if counts.get("crashed") else 0

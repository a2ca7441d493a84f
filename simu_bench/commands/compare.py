"""`simu-bench compare BASELINE.json NEW_RUNS_DIR`: a metrics regression gate.

    simu-bench compare results/leaderboard.json runs/ --format md --tolerance 0.02

Exit status 0 when no metric moved beyond tolerance, 1 with a table of what moved, 2 on bad
input. The rules are in `simu_bench.leaderboard.gate`.
"""

from __future__ import annotations

import sys
from pathlib import Path

from simu_bench.errors import UserError


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "compare", help="regression gate: a leaderboard.json against a new run store",
        description="Compare each method of a new run store with a committed leaderboard.json, per metric "
                    "(final, task_aggregate, mia_score, utility, the 12 components): exact to 1e-12 when data, "
                    "model and seeds are the same, else inside the baseline's 95%% CI (or ± --tolerance for a "
                    "single seed). Exit 1 with a table of what moved, 0 when nothing did, 2 on bad input.",
    )
    parser.add_argument("baseline", type=Path, metavar="BASELINE.json",
                        help="a leaderboard.json (e.g. results/leaderboard.json)")
    parser.add_argument("run_dir", type=Path, metavar="NEW_RUNS_DIR", help="the --out folder of a new `simu-bench run`")
    parser.add_argument("--format", choices=("md", "plain"), default="md", help="table format (default: md)")
    parser.add_argument("--tolerance", type=float, default=0.02, metavar="X",
                        help="allowed absolute change where the baseline has one seed, so no CI (default: 0.02)")
    parser.set_defaults(handler=main)


def main(args) -> int:
    if not 0 <= args.tolerance < float("inf"):
        raise UserError(f"--tolerance must be a number >= 0 and finite, got {args.tolerance}")
    from simu_bench.leaderboard.gate import compare, load_baseline, load_new, report  # scipy: not for --help

    baseline = load_baseline(args.baseline)
    result = compare(baseline, load_new(args.run_dir), args.tolerance)
    sys.stdout.write(report(result, args.format))
    return 1 if result.moved else 0

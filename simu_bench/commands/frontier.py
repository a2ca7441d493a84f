"""`simu-bench frontier`: each method's best setting per forgetting level, compared on report seeds.

    simu-bench frontier --methods fo_graddiff,so_graddiff,simu,random_mask --levels 0.1,0.2,0.3 \\
        --trials 16 --dev-seeds 100,101 --seeds 0-19 --eval-rows 32 --out frontier/

Several processes with the same command and --out split the trials (an Optuna journal study);
rerunning the command resumes. See `simu_bench.pipeline.frontier`; the flags are the fields of
`simu_bench.pipeline.plan.Plan` and `simu_bench.pipeline.frontier_plan.FrontierPlan`. Exit status: 0
when done, 1 when a run crashed, 2 for bad input (an --out made with other methods, levels or
budgets included), 130 when interrupted.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex


def add_parser(subparsers) -> argparse.ArgumentParser:
    from simu_bench.pipeline.flags import add_flags
    from simu_bench.pipeline.frontier_plan import FrontierPlan
    from simu_bench.pipeline.plan import Plan

    parser = subparsers.add_parser(
        "frontier", help="compare methods at equal forgetting, each with its best setting per level (resumable)",
        description="Per method: trials on dev seeds with evaluation points; per forget level the best (setting, "
                    "step); the report seeds run each winner for exactly that many steps; frontier.md/.json/.png.",
    )
    add_flags(parser, Plan, "frontier")
    add_flags(parser, FrontierPlan, "frontier")
    parser.set_defaults(handler=main)
    return parser


def main(args) -> int:
    from simu_bench.pipeline.flags import command_words, values_from
    from simu_bench.pipeline.frontier_plan import FrontierPlan
    from simu_bench.pipeline.plan import Plan, plan_from_args

    values = values_from(FrontierPlan, args, "frontier")
    plan = plan_from_args(args, "frontier", seeds=values["dev_seeds"], out=values["out"] / "trials")
    words = command_words(Plan, args, "frontier") + command_words(FrontierPlan, args, "frontier")
    plan = dataclasses.replace(plan, command=shlex.join(["simu-bench", "frontier", *words]))
    fp = FrontierPlan(run=plan, **values)
    from simu_bench.pipeline.frontier import run_frontier  # torch: only once the flags are checked

    report = run_frontier(fp)
    if report is None:  # a helper worker: the worker that started it reports
        return 0
    crashed = [seed for row in report["table"] for seed in (row.get("per_seed") or {}).values()
               if seed["status"] == "crashed"]
    for row in report["table"]:
        if row["winner"] is None:
            print(f"{row['method']} at forget <= {row['level']:g}: no trial reached the level with its utility above "
                  "the floor")
    return 1 if crashed else 0

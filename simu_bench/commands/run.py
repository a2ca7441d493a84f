"""`simu-bench run`: the whole benchmark in one command, resumable.

    simu-bench run --methods all                         # embedded benchmark, seeds 0-4, into runs/
    simu-bench run --methods simu,so_graddiff --seeds 0,1,2 --out runs/default
    simu-bench run --methods all --set train.epochs=1 --set simu.options.t=0.3
    simu-bench run --methods all --eval-every 5 --eval-rows 32  # + trajectory.jsonl per run
    simu-bench run --methods all --seeds 0,1,2 --relearn 20    # + relearn.json per run: the relearning attack
    simu-bench run --methods all --seeds 0,1,2 --config-dir tune/tuned --out runs/tuned
    simu-bench run --methods all --data path/to/lume --model allenai/OLMo-1B-hf --utility-tasks mmlu --device cuda

The flags are the fields of `simu_bench.pipeline.plan.Plan`. `--set KEY=VALUE` applies to every
selected method; `--set METHOD.KEY=VALUE` only to METHOD. Exit status: 0 when every run finished
(ok or diverged), 1 when a run crashed (its error is in its status.json and log.txt), 2 for bad
input, 130 when interrupted.
"""

from __future__ import annotations

import argparse

from simu_bench.pipeline.plan import add_plan_flags, plan_from_args


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run", help="unlearn, evaluate and rank methods (resumable)",
        description="For each method and seed: a fresh copy of the target, unlearn, evaluate, store; then the "
                    "leaderboard. Rerunning the same command skips finished runs.",
    )
    add_plan_flags(parser, "run")
    parser.set_defaults(handler=main)
    return parser


def main(args) -> int:
    plan = plan_from_args(args, "run")
    from simu_bench.pipeline.runner import run_benchmark  # torch: only once the flags are checked

    counts = run_benchmark(plan)
    if not counts:  # a process of torchrun other than rank 0: rank 0 reports
        return 0
    print("runs: " + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    return 1 if counts.get("crashed") else 0

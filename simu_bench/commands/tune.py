"""`simu-bench tune`: the same tuning budget for every method, on dev seeds, resumable.

    simu-bench tune --methods all --trials 12 --dev-seeds 100,101 --out tune/
    simu-bench tune --methods all --trials 12 --rule retain_at_forget --forget-level 0.2 --out tune-L0.2/
    simu-bench run --methods all --seeds 0,1,2 --config-dir tune/tuned --out runs/tuned

Each method's YAML declares its space in `search:`; Optuna's TPE sampler with a fixed seed
proposes the trials from a study kept in DIR/study (see `simu_bench.pipeline.tune`), which
`--workers N` processes (default: one per core for the embedded target) or several commands on one
DIR share. The flags are the fields of `simu_bench.pipeline.plan.Plan` and `TunePlan`. Rerunning
the same command resumes: finished trials are read back, finished runs skipped. Exit status: 0
when every run finished and every method has a
winner, 1 when a run crashed or a method has none, 2 for bad input, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import sys

from simu_bench.pipeline.plan import add_plan_flags, tune_plan_from_args


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune", help="tune every method with the same budget on dev seeds (resumable)",
        description="Sample each method's search: space with Optuna (TPE, fixed seed), the same number of trials per "
                    "method, each trial an ordinary run per dev seed, the study in DIR/study shared by every worker; "
                    "write DIR/tuned/<method>.yaml, tune.md, tune.json and fronts.png. The same command resumes.",
    )
    add_plan_flags(parser, "tune")
    parser.set_defaults(handler=main)
    return parser


def main(args) -> int:
    tune = tune_plan_from_args(args)
    from simu_bench.pipeline.tune import run_tune  # torch: only once the flags are checked

    report = run_tune(tune)
    if report is None:  # a helper worker: the worker that started it reports
        return 0
    statuses = [seed["status"] for result in report["methods"].values() for trial in result["trials"]
                for seed in trial["per_seed"].values()]
    missing = [method for method, result in report["methods"].items() if result["winner"] is None]
    for method in missing:
        print(f"simu-bench tune: {method}: no winner: no trial both finished (ok) on a dev seed and met the rule "
              f"({tune.rule_text()}); no tuned config written; widen its search: space or add trials", file=sys.stderr)
    winners = [f"{m} trial {r['winner']}" for m, r in report["methods"].items() if r["winner"] is not None]
    print("winners: " + (", ".join(winners) or "none"))
    return 1 if missing or "crashed" in statuses else 0

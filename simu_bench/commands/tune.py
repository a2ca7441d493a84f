"""`simu-bench tune`: the same tuning budget for every method, on dev seeds, resumable.

    simu-bench tune --methods all --trials 12 --dev-seeds 100,101 --out tune/
    simu-bench tune --methods all --trials 12 --rule retain_at_forget --forget-level 0.2 --out tune-L0.2/
    simu-bench run --methods all --seeds 0,1,2 --config-dir tune/tuned --out runs/tuned

Each method's YAML declares its space in `search:`; Optuna's TPE sampler with a fixed seed
proposes the trials (see `simu_bench.pipeline.tune`). Rerunning the same command skips finished
runs and selects the same winners. Exit status: 0 when every run finished and every method has a
winner, 1 when a run crashed or a method has none, 2 for bad input, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from simu_bench.commands.run import add_dtype_arguments, dtype_overrides, dtype_words
from simu_bench.evaluation import BATCH_SIZE, MAX_NEW_TOKENS
from simu_bench.pipeline.plan import Plan, parse_seeds, resolve_methods


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "tune", help="tune every method with the same budget on dev seeds (resumable)",
        description="Sample each method's search: space with Optuna (TPE, fixed seed), the same number of trials per "
                    "method, each trial an ordinary run per dev seed; write DIR/tuned/<method>.yaml, tune.md, "
                    "tune.json and fronts.png. Rerunning the same command resumes.",
    )
    parser.add_argument("--methods", default="all", metavar="all|a,b,c",
                        help="methods to tune (default: all registered)")
    parser.add_argument("--trials", type=int, default=12, metavar="N", help="trials per method, the same for every "
                        "method (default: 12)")
    parser.add_argument("--dev-seeds", default="100,101", metavar="100,101", help="seeds the trials run on; must not "
                        "overlap --report-seeds (default: 100,101)")
    parser.add_argument("--report-seeds", default="0,1,2", metavar="0,1,2", help="seeds the results are reported on, "
                        "never tuned on (default: 0,1,2)")
    parser.add_argument("--rule", default="final", choices=("final", "retain_at_forget"),
                        help="final: best mean final score (default); retain_at_forget: best mean retain among "
                             "trials with mean forget <= --forget-level")
    parser.add_argument("--forget-level", type=float, default=0.2, metavar="L", help="forget level of retain_at_forget "
                        "(mean of the 6 raw forget components; default: 0.2)")
    parser.add_argument("--sampler-seed", type=int, default=0, metavar="N", help="seed of the TPE sampler (default: 0)")
    parser.add_argument("--out", type=Path, default=Path("tune"), metavar="DIR", help="output folder (default: tune/)")
    parser.add_argument("--data", type=Path, metavar="DIR", help="a LUME folder (as for run)")
    parser.add_argument("--model", metavar="NAME_OR_PATH",
                        help="a causal LM folder or hub id (default: the embedded target)")
    parser.add_argument("--utility-tasks", metavar="a,b", help="lm-eval tasks measuring utility, e.g. mmlu")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a key that is not searched, e.g. train.max_steps=10 (repeatable)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--eval-batch-size", type=int, default=BATCH_SIZE, metavar="N",
                        help=f"generation batch size (default: {BATCH_SIZE})")
    parser.add_argument("--threads", type=int, metavar="N", help="torch CPU threads (default as for run)")
    parser.add_argument("--max-new-tokens", type=int, default=MAX_NEW_TOKENS, metavar="N",
                        help=f"generation limit per row (default: {MAX_NEW_TOKENS}; lower only for quick checks)")
    add_dtype_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    parser.set_defaults(handler=main)
    return parser


def command_line(args) -> str:
    """The canonical command for these arguments (written into tune.json and the tuned configs)."""
    words = ["simu-bench", "tune", "--methods", args.methods, "--trials", str(args.trials),
             "--dev-seeds", args.dev_seeds]
    if args.report_seeds != "0,1,2":
        words += ["--report-seeds", args.report_seeds]
    words += ["--rule", args.rule]
    if args.rule == "retain_at_forget":
        words += ["--forget-level", f"{args.forget_level:g}"]
    if args.sampler_seed:
        words += ["--sampler-seed", str(args.sampler_seed)]
    for flag, value in (("--data", args.data), ("--model", args.model), ("--utility-tasks", args.utility_tasks)):
        if value is not None:
            words += [flag, str(value)]
    words += ["--out", str(args.out)]
    for override in args.overrides:
        words += ["--set", override]
    words += dtype_words(args)
    if args.device != "cpu":
        words += ["--device", args.device]
    if args.max_new_tokens != MAX_NEW_TOKENS:
        words += ["--max-new-tokens", str(args.max_new_tokens)]
    if args.eval_batch_size != BATCH_SIZE:
        words += ["--eval-batch-size", str(args.eval_batch_size)]
    return shlex.join(words)


def main(args) -> int:
    from simu_bench.errors import UserError
    from simu_bench.pipeline.tune import TunePlan, run_tune

    for flag, value in (("--eval-batch-size", args.eval_batch_size), ("--max-new-tokens", args.max_new_tokens)):
        if value < 1:
            raise UserError(f"{flag} {value}: expected a positive number, e.g. 32")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads}: expected a positive number of threads, e.g. 1")
    utility = tuple(t.strip() for t in args.utility_tasks.split(",") if t.strip()) if args.utility_tasks else None
    try:
        dev_seeds, report_seeds = parse_seeds(args.dev_seeds), parse_seeds(args.report_seeds)
    except UserError as error:
        raise UserError(str(error).replace("--seeds", "--dev-seeds/--report-seeds")) from None
    plan = Plan(
        methods=resolve_methods(args.methods), seeds=dev_seeds, out=args.out / "trials", data=args.data,
        model=args.model, utility_tasks=utility, overrides=tuple(args.overrides) + dtype_overrides(args),
        device=args.device, dtype=args.dtype, eval_dtype=args.eval_dtype,
        quiet=args.quiet, eval_batch_size=args.eval_batch_size, max_new_tokens=args.max_new_tokens,
        threads=args.threads, command=command_line(args),
    )
    tune = TunePlan(run=plan, out=args.out, trials=args.trials, report_seeds=report_seeds, rule=args.rule,
                    forget_level=args.forget_level, sampler_seed=args.sampler_seed)
    report = run_tune(tune)
    statuses = [seed["status"] for result in report["methods"].values() for trial in result["trials"]
                for seed in trial["per_seed"].values()]
    missing = [method for method, result in report["methods"].items() if result["winner"] is None]
    for method in missing:
        print(f"{method}: no trial met the rule ({tune.rule_text()}); no tuned config")
    winners = [f"{m} trial {r['winner']}" for m, r in report["methods"].items() if r["winner"] is not None]
    print("winners: " + (", ".join(winners) or "none"))
    return 1 if missing or "crashed" in statuses else 0

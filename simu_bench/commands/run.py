"""`simu-bench run`: the whole benchmark in one command, resumable.

    simu-bench run --methods all                         # embedded benchmark, seed 0, into runs/
    simu-bench run --methods simu,so_graddiff --seeds 0,1,2 --out runs/default
    simu-bench run --methods all --set train.epochs=1 --set simu.options.t=0.3
    simu-bench run --methods all --eval-every 5 --eval-rows 32  # + trajectory.jsonl per run
    simu-bench run --methods all --seeds 0,1,2 --relearn 20    # + relearn.json per run: the relearning attack
    simu-bench run --methods all --seeds 0,1,2 --config-dir tune/tuned --out runs/tuned
    simu-bench run --methods all --data ../shared/lume --model allenai/OLMo-1B-hf --utility-tasks mmlu --device cuda

`--set KEY=VALUE` applies to every selected method; `--set METHOD.KEY=VALUE` only to METHOD.
Exit status: 0 when every run finished (ok or diverged), 1 when a run crashed (its error is in
its status.json and log.txt), 2 for bad input, 130 when interrupted.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from simu_bench.evaluation import BATCH_SIZE, MAX_NEW_TOKENS
from simu_bench.pipeline.plan import Plan, parse_seeds, resolve_methods
from simu_bench.pipeline.runner import run_benchmark

DEFAULT_SEEDS = "0,1,2,3,4"


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "run", help="unlearn, evaluate and rank methods (resumable)",
        description="For each method and seed: a fresh copy of the target, unlearn, evaluate, store; then the "
                    "leaderboard. Rerunning the same command skips finished runs.",
    )
    parser.add_argument(
        "--methods", default="all", metavar="all|a,b,c", help="methods to run (default: all registered)"
    )
    # Five seeds: what the three tuned methods finish in about seven minutes on two CPU cores
    # (17-52 s a run); paired comparisons need them (one seed gives no interval at all).
    parser.add_argument("--seeds", default=DEFAULT_SEEDS, metavar="0,1,2",
                        help=f"seeds, comma-separated (default: {DEFAULT_SEEDS})")
    parser.add_argument(
        "--data",
        type=Path,
        metavar="DIR",
        help="a LUME folder; without --model the embedded "
        "target is trained on a seeded subset of it (default: the embedded synthetic data)",
    )
    parser.add_argument(
        "--model", metavar="NAME_OR_PATH", help="a causal LM folder or hub id (default: the embedded target)"
    )
    parser.add_argument(
        "--utility-tasks",
        metavar="a,b",
        help="lm-eval tasks measuring utility, e.g. mmlu (default: the world-facts set of the data folder)",
    )
    parser.add_argument("--out", type=Path, default=Path("runs"), metavar="DIR", help="run store (default: runs/)")
    parser.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a method config key, e.g. optimizer.lr=1e-5 or simu.options.t=0.3 (repeatable)",
    )
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument(
        "--eval-batch-size",
        type=int,
        default=BATCH_SIZE,
        metavar="N",
        help=f"generation batch size (default: {BATCH_SIZE})",
    )
    parser.add_argument(
        "--threads",
        type=int,
        metavar="N",
        help="torch CPU threads (default: 1 for the embedded "
        "target, whose small matrices run fastest on one thread; otherwise torch's default)",
    )
    parser.add_argument(
        "--max-new-tokens",
        type=int,
        default=MAX_NEW_TOKENS,
        metavar="N",
        help=f"generation limit per row (default: {MAX_NEW_TOKENS}, as LUME's official scorer; "
        "lower only for quick checks)",
    )
    parser.add_argument(
        "--config-dir",
        type=Path,
        metavar="DIR",
        help="load each method's config from "
        "DIR/<method>.yaml instead of the shipped YAML (e.g. the tuned/ folder of `simu-bench tune`)",
    )
    parser.add_argument(
        "--eval-every",
        type=int,
        metavar="K",
        help="also evaluate every K optimizer steps and "
        "store trajectory.jsonl per run: step 0, K, 2K, ..., final (default: off)",
    )
    parser.add_argument(
        "--eval-rows",
        type=int,
        metavar="N",
        help="with --eval-every: evaluate the points before "
        "the final one on a seeded subset of N forget and N retain rows (default: all rows)",
    )
    add_relearn_arguments(parser)
    parser.add_argument(
        "--gradient-checkpointing",
        action="store_true",
        help="recompute activations in the backward pass: less memory, about a third more time, the same numbers",
    )
    add_backend_arguments(parser)
    add_dtype_arguments(parser)
    parser.add_argument("--quiet", action="store_true", help="no progress bars, log lines only")
    parser.set_defaults(handler=main)
    return parser


def add_relearn_arguments(parser) -> None:
    """`--relearn STEPS` and `--relearn-fraction F`, shared by `run` and `eval`."""
    from simu_bench.evaluation.relearn import DEFAULT_FRACTION, LR

    parser.add_argument(
        "--relearn", type=int, metavar="STEPS",
        help=f"relearning attack: fine-tune each unlearned model STEPS AdamW steps (lr {LR:g}) on a seeded "
        "fraction of the forget documents, then score the forget rows of the others again; writes relearn.json "
        "(default: off)",
    )
    parser.add_argument(
        "--relearn-fraction", type=float, default=DEFAULT_FRACTION, metavar="F",
        help=f"with --relearn: the fraction of forget documents to fine-tune on, in (0, 1) "
        f"(default: {DEFAULT_FRACTION})",
    )


def check_relearn_arguments(args) -> None:
    from simu_bench.errors import UserError
    from simu_bench.evaluation.relearn import DEFAULT_FRACTION, check_fraction, check_steps

    if args.relearn is not None:
        check_steps(args.relearn)
        check_fraction(args.relearn_fraction)
    elif args.relearn_fraction != DEFAULT_FRACTION:
        raise UserError(
            f"--relearn-fraction {args.relearn_fraction} needs --relearn STEPS: it sets the documents the relearning "
            "attack fine-tunes on"
        )


def add_backend_arguments(parser) -> None:
    """`--backend hf|vllm` and `--strict`, shared by `run` and `eval`."""
    parser.add_argument(
        "--backend", default="hf", choices=("hf", "vllm"),
        help='generation backend (default: hf); vllm needs pip install "simu-bench[vllm]" and checks its text '
        "against hf on the first 32 rows (parity in metrics.json)",
    )
    parser.add_argument("--strict", action="store_true",
                        help="with --backend vllm: generate with hf instead when any parity row differs")


DTYPES = ("float32", "bfloat16", "float16", "auto")


def add_dtype_arguments(parser) -> None:
    """`--dtype` and `--eval-dtype`, shared by `run` and `tune`."""
    parser.add_argument(
        "--dtype", choices=DTYPES, metavar="|".join(DTYPES),
        help="train every method in this dtype (sets train.dtype; default: each config's, float32; SOUL used "
        "bfloat16) and evaluate the target in it",
    )
    parser.add_argument(
        "--eval-dtype", choices=DTYPES, metavar="|".join(DTYPES),
        help="evaluate in this dtype (default: the dtype the run trained in)",
    )


def dtype_overrides(args) -> tuple[str, ...]:
    """`--dtype D` as the override train.dtype=D for every method."""
    return (f"train.dtype={args.dtype}",) if args.dtype else ()


def dtype_words(args) -> list[str]:
    return [word for flag, value in (("--dtype", args.dtype), ("--eval-dtype", args.eval_dtype)) if value
            for word in (flag, value)]


def command_line(args) -> str:
    """The canonical command for these arguments (written into the run store and the leaderboard)."""
    words = ["simu-bench", "run", "--methods", args.methods, "--seeds", args.seeds]
    for flag, value in (("--data", args.data), ("--model", args.model), ("--utility-tasks", args.utility_tasks)):
        if value is not None:
            words += [flag, str(value)]
    words += ["--out", str(args.out)]
    if args.gradient_checkpointing:
        words += ["--gradient-checkpointing"]
    if args.backend != "hf":
        words += ["--backend", args.backend] + (["--strict"] if args.strict else [])
    if args.config_dir is not None:
        words += ["--config-dir", str(args.config_dir)]
    for override in args.overrides:
        words += ["--set", override]
    words += dtype_words(args)
    if args.device != "cpu":
        words += ["--device", args.device]
    if args.threads is not None:
        words += ["--threads", str(args.threads)]
    if args.max_new_tokens != MAX_NEW_TOKENS:
        words += ["--max-new-tokens", str(args.max_new_tokens)]
    if args.eval_batch_size != BATCH_SIZE:
        words += ["--eval-batch-size", str(args.eval_batch_size)]
    for flag, value in (("--eval-every", args.eval_every), ("--eval-rows", args.eval_rows)):
        if value is not None:
            words += [flag, str(value)]
    if args.relearn is not None:
        words += ["--relearn", str(args.relearn), "--relearn-fraction", f"{args.relearn_fraction:g}"]
    return shlex.join(words)


def main(args) -> int:
    from simu_bench.errors import UserError

    if args.eval_batch_size < 1:
        raise UserError(f"--eval-batch-size {args.eval_batch_size}: expected a positive number, e.g. 32")
    if args.threads is not None and args.threads < 1:
        raise UserError(f"--threads {args.threads}: expected a positive number of threads, e.g. 1")
    if args.max_new_tokens < 1:
        raise UserError(f"--max-new-tokens {args.max_new_tokens}: expected a positive number of tokens, e.g. 256")
    if args.eval_every is not None and args.eval_every < 1:
        raise UserError(f"--eval-every {args.eval_every}: expected a positive number of optimizer steps, e.g. 10")
    if args.eval_rows is not None and args.eval_rows < 1:
        raise UserError(f"--eval-rows {args.eval_rows}: expected a positive number of rows per split, e.g. 32")
    if args.eval_rows is not None and args.eval_every is None:
        raise UserError(
            f"--eval-rows {args.eval_rows} needs --eval-every K: it sets the rows of the points evaluated every K steps"
        )
    check_relearn_arguments(args)
    utility = tuple(t.strip() for t in args.utility_tasks.split(",") if t.strip()) if args.utility_tasks else None
    plan = Plan(
        methods=resolve_methods(args.methods),
        seeds=parse_seeds(args.seeds),
        out=args.out,
        data=args.data,
        model=args.model,
        utility_tasks=utility,
        overrides=tuple(args.overrides) + dtype_overrides(args),
        dtype=args.dtype,
        eval_dtype=args.eval_dtype,
        device=args.device,
        quiet=args.quiet,
        gradient_checkpointing=args.gradient_checkpointing,
        backend=args.backend,
        strict=args.strict,
        eval_batch_size=args.eval_batch_size,
        max_new_tokens=args.max_new_tokens,
        threads=args.threads,
        config_dir=args.config_dir,
        eval_every=args.eval_every,
        eval_rows=args.eval_rows,
        relearn=args.relearn,
        relearn_fraction=args.relearn_fraction,
        command=command_line(args),
    )
    if args.gradient_checkpointing and args.model is not None:
        from simu_bench.unlearning.distributed import check_gradient_checkpointing_of

        check_gradient_checkpointing_of(args.model)
    from simu_bench.evaluation.backends import check_backend

    check_backend(args.backend, args.strict)  # before anything is written
    counts = run_benchmark(plan)
    if not counts:  # a process of torchrun other than rank 0: rank 0 reports
        return 0
    print("runs: " + ", ".join(f"{count} {status}" for status, count in sorted(counts.items())))
    return 1 if counts.get("crashed") else 0

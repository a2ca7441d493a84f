"""`simu-bench prepare`: build (or reuse) the benchmark data and the memorised target model.

    simu-bench prepare                       # the embedded synthetic benchmark
    simu-bench prepare --size small          # the same data, a wider target (sizes: target_model/sizes.py)
    simu-bench prepare --data path/to/lume --docs-per-task 5

The result is cached under `$SIMU_BENCH_CACHE` (default `~/.cache/simu-bench`); a second call
with the same inputs reuses it in seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from simu_bench.errors import UserError
from simu_bench.target_model.settings import DEFAULT_DOCS_PER_TASK
from simu_bench.target_model.sizes import DEFAULT_SIZE, SIZES, check_memorised, describe, target_config


def add_parser(subparsers) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "prepare",
        help="build the data and the memorised target model (cached)",
        description="Build the benchmark data and fine-tune the tiny OLMo-architecture target until it has "
        "memorised forget, retain and world facts; reuse the cached result when nothing changed.",
    )
    parser.add_argument("--data", type=Path, default=None, metavar="DIR",
                        help="a LUME folder (forget/retain .jsonl or .parquet); default: the embedded synthetic data")
    parser.add_argument("--docs-per-task", type=int, default=DEFAULT_DOCS_PER_TASK, metavar="N",
                        help="with --data: documents per task and split to train on; N more per task are held out "
                        f"as non-members (default {DEFAULT_DOCS_PER_TASK})")
    parser.add_argument(
        "--seed", type=int, default=0, metavar="S", help="seed for the data and the training (default 0)"
    )
    parser.add_argument("--size", default=None, metavar="NAME",
                        help=f"target shape: {', '.join(SIZES)} (default {DEFAULT_SIZE}, the embedded target); "
                        "refused when the target does not memorise its rows")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    parser.set_defaults(handler=main)
    return parser


def main(args: argparse.Namespace) -> int:
    from simu_bench.data.lume import check_data_dir
    from simu_bench.pipeline.seeds import check_seed
    from simu_bench.target_model.cache import prepare

    if args.docs_per_task < 1:
        raise UserError(
            f"--docs-per-task is {args.docs_per_task}; expected a positive number of documents, e.g. --docs-per-task 10"
        )
    check_seed(args.seed)
    check_data_dir(args.data)
    size = args.size or DEFAULT_SIZE
    target = target_config(size)
    started = time.perf_counter()
    prepared = prepare(args.data, target=target, seed=args.seed, progress=not args.quiet,
                       docs_per_task=args.docs_per_task)
    info = prepared.info
    if args.size is not None:
        check_memorised(size, info)
    print(f"data:    {prepared.data_dir}")
    print(f"target:  {prepared.target_dir}")
    print(f"size:    {size}: {describe(size)}")
    print(
        f"model:   OlmoForCausalLM, {info.get('parameters', 0):,} parameters, vocabulary {info.get('vocab_size', 0):,}"
    )
    print(
        f"trained: {info.get('tokens_trained', 0):,} tokens on {info.get('training_rows', 0):,} rows, "
        f"{info.get('epochs', 0)} epochs, {info.get('train_seconds', 0):.1f} s when built; "
        f"{info.get('memorised_rows', 0):.0%} of rows memorised"
    )
    if info.get("memorised_rows", 0) < 0.95:
        print(
            "warning: the target has not memorised its training rows; scores on it measure little "
            "(use fewer --docs-per-task)",
            file=sys.stderr,
        )
    print(f"time:    {time.perf_counter() - started:.1f} s this call")
    return 0

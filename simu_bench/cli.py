"""The `simu-bench` command line.

Each subcommand lives in its own module with two functions, `add_parser(subparsers)` and
`main(args) -> int`; this file only lists them. A `UserError` anywhere becomes one line on
stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from simu_bench.errors import UserError
from simu_bench.target_model.pinning import pin_cpu_kernels

# (subcommand, module): one line per subcommand.
SUBCOMMANDS = [
    ("prepare", "simu_bench.commands.prepare"),
    ("run", "simu_bench.commands.run"),
    ("tune", "simu_bench.commands.tune"),
    ("ladder", "simu_bench.commands.ladder"),
    ("frontier", "simu_bench.commands.frontier"),
    ("leaderboard", "simu_bench.commands.leaderboard"),
    ("compare", "simu_bench.commands.compare"),
    ("eval", "simu_bench.commands.eval"),
    ("ls", "simu_bench.commands.ls"),
    ("validate", "simu_bench.commands.validate"),
    ("score", "simu_bench.commands.score"),
    ("tasks-path", "simu_bench.commands.tasks_path"),
]
# Commands that build or train the embedded target when no --model is given: their CPU kernels
# are pinned so that its bytes, and every metric of runs on it, are the same on any x86-64 CPU.
PINNED_COMMANDS = ("prepare", "run", "tune", "ladder", "frontier")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simu-bench",
        description="Benchmark machine unlearning on LUME: unlearn, score, and rank methods.",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for _, module in SUBCOMMANDS:
        importlib.import_module(module).add_parser(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command in PINNED_COMMANDS and getattr(args, "model", None) is None:
        pin_cpu_kernels()
    try:
        code = int(args.handler(args) or 0)
        sys.stdout.flush()  # a reader that went away shows here, where it is caught, not at exit
        return code
    except UserError as error:
        return refuse(f"simu-bench {args.command}: error: {error}")
    except KeyboardInterrupt:
        print(f"simu-bench {args.command}: interrupted; finished results are kept", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader went away (`simu-bench ls | head`): stop quietly, as other tools do
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # so the exit flush cannot fail again
        return 141


def refuse(line: str) -> int:
    """Print the one line of bad input; exit status 2.

    Under `torchrun` every rank meets the same refusal (each checks the whole plan): rank 0 alone
    prints it, and every rank leaves it in the error file torchrun reads (TORCHELASTIC_ERROR_FILE),
    so that torchrun's failure report names it instead of asking for a traceback.
    """
    if os.environ.get("RANK", "0") == "0":
        print(line, file=sys.stderr)
    error_file = os.environ.get("TORCHELASTIC_ERROR_FILE")
    if error_file:
        import json
        import time

        record = {"message": {"message": line, "extraInfo": {"py_callstack": line, "timestamp": str(int(time.time()))}}}
        try:
            with open(error_file, "w", encoding="utf-8") as handle:
                json.dump(record, handle)
        except OSError:  # torchrun then reports the exit status alone
            pass
    return 2


if __name__ == "__main__":
    sys.exit(main())

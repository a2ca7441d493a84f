"""`simu-bench leaderboard RUN_DIR`: the leaderboard of a run store, as a table and plots.

    simu-bench leaderboard runs/ --format md                  # print to stdout
    simu-bench leaderboard runs/ --output results/leaderboard.md --plots results/
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

from simu_bench.errors import UserError
from simu_bench.files import atomic_write_text, remove_temp_files
from simu_bench.leaderboard import FORMATS, floor
from simu_bench.store.runs import check_writable


def add_parser(subparsers) -> None:
    parser = subparsers.add_parser(
        "leaderboard", help="tables and plots from a run directory",
        description="Summarise the runs of a `simu-bench run --out DIR` folder: one row per method "
                    "plus the target before unlearning, mean ± 95%% CI over seeds, sorted by final score.",
    )
    parser.add_argument("run_dir", type=Path, metavar="RUN_DIR", help="the --out folder of `simu-bench run`")
    parser.add_argument("--format", choices=FORMATS, default="md", help="table format (default: md)")
    parser.add_argument("--output", type=Path, metavar="FILE", help="write the table here instead of stdout")
    parser.add_argument("--plots", type=Path, metavar="DIR", help="also write tradeoff.png and per_task.png here")
    floor.add_argument(parser)
    parser.set_defaults(handler=main)


def command_line(args) -> str:
    """The command that makes this output, written at the top of the generated file."""
    words = ["simu-bench", "leaderboard", str(args.run_dir), "--format", args.format]
    if args.output:
        words += ["--output", str(args.output)]
    if args.plots:
        words += ["--plots", str(args.plots)]
    if args.utility_floor != str(floor.DEFAULT_FRACTION):
        words += ["--utility-floor", args.utility_floor]
    return shlex.join(words)


def main(args) -> int:
    if args.output is not None and args.output.is_dir():
        raise UserError(f"--output {args.output} is a directory; expected a file to write the table to, "
                        f"e.g. --output {args.output / ('leaderboard.' + args.format)}")
    # Here, not at the top: scipy and matplotlib take seconds to import, and `--help` needs neither.
    from simu_bench.leaderboard.board import build
    from simu_bench.leaderboard.plots import write_plots
    from simu_bench.leaderboard.render import render

    board = build(args.run_dir, floor.parse_utility_floor(args.utility_floor))
    if not board.rows:
        raise UserError(f"{args.run_dir} holds no finished run; run `simu-bench run --out {args.run_dir}` first")
    for target in (args.output.parent if args.output else None, args.plots):
        if target is not None:
            check_writable(target)
    commands = [c for c in (board.meta.get("run_command"), command_line(args)) if c]
    text = render(board, args.format, commands)
    if args.output:
        remove_temp_files(args.output.parent, names=(args.output.name,))  # of a write cut short by a kill
        atomic_write_text(args.output, text)
    else:
        sys.stdout.write(text)
    if args.plots:
        for path in write_plots(board, args.plots):
            print(f"wrote {path}", file=sys.stderr)
    return 0

"""The flags of run, tune and eval come from one typed description (`Plan`, `TunePlan`)."""

import argparse
import dataclasses
import shlex
from pathlib import Path

import pytest

from simu_bench.cli import build_parser, main
from simu_bench.errors import UserError
from simu_bench.pipeline import flags, plan
from simu_bench.pipeline import seeds as seeds_module
from simu_bench.pipeline.plan import TunePlan, command_line, plan_from_args, tune_plan_from_args


def parse(command: str, *words: str) -> argparse.Namespace:
    return build_parser().parse_args([command, *words])


def flags_of(command: str) -> dict[str, str]:
    """--flag -> help of one subcommand's parser."""
    sub = build_parser()._subparsers._group_actions[0].choices[command]
    return {action.option_strings[0]: action.help for action in sub._actions
            if action.option_strings and action.help != argparse.SUPPRESS and action.dest != "help"}


def test_a_flag_is_spelled_the_same_in_every_command_that_has_it():
    run, tune, eval_ = flags_of("run"), flags_of("tune"), flags_of("eval")
    for name in ("--eval-batch-size", "--eval-dtype", "--max-new-tokens", "--device", "--utility-tasks"):
        assert name in run and name in tune and name in eval_, name
    assert "--batch-size" not in eval_ and "--dtype" not in eval_  # renamed: refused with a line (below)
    assert run["--eval-batch-size"] == tune["--eval-batch-size"] == eval_["--eval-batch-size"]
    assert run["--dtype"] == tune["--dtype"]


@pytest.mark.parametrize("old, new", [("--batch-size", "--eval-batch-size"), ("--dtype", "--eval-dtype")])
def test_evals_old_spellings_are_refused_with_the_new_name(old, new, capsys, tmp_path):
    value = "8" if old == "--batch-size" else "bfloat16"
    assert main(["eval", "--model", str(tmp_path), old, value]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"{old} is now {new}" in err and f"write {new} {value}" in err, err


def test_the_command_line_gives_back_the_same_plan():
    words = ["--methods", "fo_graddiff,simu", "--seeds", "3,1", "--set", "train.max_steps=2", "--set",
             "simu.options.t=0.3", "--dtype", "bfloat16", "--eval-every", "2", "--eval-rows", "4", "--relearn", "5",
             "--relearn-fraction", "0.5", "--max-new-tokens", "8", "--gradient-checkpointing", "--out", "somewhere"]
    plan = plan_from_args(parse("run", *words), "run")
    assert plan.methods == ("fo_graddiff", "simu") and plan.seeds == (3, 1) and plan.out == Path("somewhere")
    assert plan.overrides == ("train.max_steps=2", "simu.options.t=0.3", "train.dtype=bfloat16")
    again = shlex.split(plan.command)
    assert again[:2] == ["simu-bench", "run"]
    assert plan_from_args(parse(*again[1:]), "run") == plan
    assert "--eval-batch-size" not in again and "--threads" not in again  # defaults are left out


def test_the_run_command_line_keeps_its_form():
    """The line in run.json and at the top of the leaderboard: methods, seeds and out always."""
    seeds = plan.DEFAULT_SEEDS  # 0 in tests (conftest.py), 0,1,2,3,4 for users
    assert command_line(parse("run"), "run") == f"simu-bench run --methods all --seeds {seeds} --out runs"
    args = parse("run", "--methods", "simu", "--eval-batch-size", "8", "--data", "d d")
    assert command_line(args, "run") == (f"simu-bench run --methods simu --seeds {seeds} --data 'd d' --out runs "
                                         "--eval-batch-size 8")


def test_tune_takes_the_runs_flags_and_its_own():
    tune = tune_plan_from_args(parse("tune", "--methods", "simu", "--trials", "3", "--dev-seeds", "7",
                                     "--eval-dtype", "float32", "--out", "t"))
    assert isinstance(tune, TunePlan) and tune.trials == 3 and tune.run.seeds == (7,)
    assert tune.run.out == Path("t") / "trials" and tune.run.eval_dtype == "float32"
    assert tune.run.command == ("simu-bench tune --methods simu --eval-dtype float32 --out t --trials 3 "
                                "--dev-seeds 7 --rule final")


@pytest.mark.parametrize("command, words, message", [
    ("run", ["--eval-batch-size", "0"], "--eval-batch-size 0: expected a positive number, e.g. 32"),
    ("eval", ["--model", "m", "--eval-batch-size", "0"], "--eval-batch-size 0: expected a positive number"),
    ("tune", ["--max-new-tokens", "-1"], "--max-new-tokens -1: expected a positive number of tokens"),
    ("run", ["--threads", "0"], "--threads 0: expected a positive number of threads"),
    ("tune", ["--report-seeds", "x"], "--report-seeds 'x': expected comma-separated whole numbers"),
    ("run", ["--eval-rows", "3"], "--eval-rows 3 needs --eval-every K"),
    ("eval", ["--model", "m", "--relearn-fraction", "0.5"], "--relearn-fraction 0.5 needs --relearn STEPS"),
])
def test_each_flag_is_checked_the_same_way_in_every_command(command, words, message):
    args = parse(command, *words)
    with pytest.raises(UserError, match=message.replace("(", r"\(")):
        tune_plan_from_args(args) if command == "tune" else plan_from_args(args, command)


@dataclasses.dataclass(frozen=True)
class Toy:
    old: int = dataclasses.field(default=1, metadata=flags.flag("hashed always", identity="a.old",
                                                                identity_always=True))
    new: str | None = dataclasses.field(default=None, metadata=flags.flag("hashed when set", identity="a.new"))
    method: int = dataclasses.field(default=0, metadata=flags.flag("method runs", identity="b.m", methods_only=True))


def test_a_new_identity_flag_is_hashed_only_when_it_differs_from_its_default():
    assert flags.identity(Toy, Toy(), method_run=True) == {"a.old": 1}  # stores made before `new` keep their hash
    assert flags.identity(Toy, Toy(new="x", method=2), method_run=True) == {"a.old": 1, "a.new": "x", "b.m": 2}
    assert flags.identity(Toy, Toy(method=2), method_run=False) == {"a.old": 1}


@pytest.mark.parametrize(("text", "seeds"), [("0,1,2", (0, 1, 2)), ("0-3", (0, 1, 2, 3)), ("0-2,7,1", (0, 1, 2, 7))])
def test_seeds_take_lists_and_ranges_in_every_command(text, seeds):
    assert seeds_module.parse_seeds(text) == seeds


@pytest.mark.parametrize(("text", "message"), [
    ("3-1", "the range 3-1 must run upwards"),
    ("0-20000", "name at most 10,000 seeds"),
    ("-1", "expected one or more non-negative whole numbers"),
    ("0-x", "expected comma-separated whole numbers or ranges"),
])
def test_bad_seed_ranges_are_refused_with_one_line(text, message):
    with pytest.raises(UserError, match=message):
        seeds_module.parse_seeds(text)

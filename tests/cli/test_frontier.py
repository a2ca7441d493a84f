"""`simu-bench frontier`: bad input, the shared journal study, and a tiny frontier end to end.

The end-to-end test runs on the tiny target with two optimizer steps per run and 8 new tokens
per row: what is tested is the orchestration (trials, winners as (setting, step), report runs
stopped at that step, resume), not the quality of the winners.
"""

import json

import pytest

from simu_bench.cli import main
from simu_bench.pipeline import study
from simu_bench.pipeline.frontier_plan import MANIFEST

QUICK = ["--set", "train.max_steps=2", "--max-new-tokens", "8", "--eval-rows", "6", "--quiet"]


@pytest.fixture(scope="module")
def inputs(tiny_target):
    return ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]


@pytest.mark.parametrize("args, message", [
    (["--levels", "0,0.2"], "outside (0, 1)"),
    (["--levels", "0.2,1.5"], "outside (0, 1)"),
    (["--levels", ","], "no level given"),
    (["--levels", "low"], "expected comma-separated forget levels"),
    (["--utility-floor", "1.5"], "must lie in [0, 1]"),
    (["--utility-floor", "abs:"], "expected a number in [0, 1] or abs:VALUE"),
    (["--dev-seeds", "0,1", "--seeds", "1-3"], "overlaps"),
    (["--trials", "0"], "--trials 0"),
    (["--seeds", "5-2"], "must run upwards"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys):
    code = main(["frontier", "--methods", "fo_graddiff", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []


def test_a_folder_made_with_other_levels_or_another_optuna_is_refused(inputs, tmp_path, capsys):
    out = tmp_path / "frontier"
    out.mkdir()
    command = ["frontier", "--methods", "fo_graddiff", "--levels", "0.2", "--trials", "1", "--dev-seeds", "100",
               "--seeds", "0", "--out", str(out), *inputs, *QUICK]
    import optuna

    (out / MANIFEST).write_text(json.dumps({"levels": [0.1], "optuna": optuna.__version__}))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "levels [0.1] (this command: [0.2])" in err and "never a mix" in err
    (out / MANIFEST).write_text(json.dumps({"levels": [0.2], "optuna": "0.0.1"}))
    assert main(command) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Optuna 0.0.1" in err
    assert sorted(p.name for p in out.iterdir()) == [MANIFEST]


def test_the_journal_study_holds_the_budget_and_hands_over_a_dead_workers_trial(tmp_path):
    """Budget 2: two trials are asked, the third call gets none; a RUNNING trial whose claim is
    free (its worker died) is handed to the next worker with its own parameters."""
    from optuna.distributions import FloatDistribution

    space = {"x": FloatDistribution(0.0, 1.0)}
    shared = study.open_study(tmp_path, "m", 0, 1)
    first = study.next_trial(shared, tmp_path, "m", 2, space, dict)
    second = study.next_trial(shared, tmp_path, "m", 2, space, dict)
    assert (first.number, second.number) == (0, 1) and not first.resumed
    assert study.next_trial(shared, tmp_path, "m", 2, space, dict) is None  # both held by live claims
    shared.tell(0, 0.5)
    first.claim.release()
    second.claim.release()  # the worker of trial 1 "dies": its claim is gone, the trial still RUNNING
    again = study.open_study(tmp_path, "m", 0, 1)  # another process reading the journal back
    taken = study.next_trial(again, tmp_path, "m", 2, space, dict)
    assert taken.number == 1 and taken.resumed and taken.params == second.params
    assert [t.number for t in study.finished(again)] == [0] and study.running(again) == 1


def test_a_tiny_frontier_end_to_end_and_resumed(inputs, tmp_path, capsys):
    out = tmp_path / "frontier"
    command = ["frontier", "--methods", "fo_graddiff", "--levels", "0.5,0.99", "--trials", "2", "--dev-seeds", "100",
               "--seeds", "0,1", "--out", str(out), *inputs, *QUICK]
    assert main(command) == 0
    report = json.loads((out / "frontier.json").read_text())
    assert (out / "frontier.md").read_text().startswith("# Methods at equal forgetting")
    assert (out / "frontier.png").read_bytes()[:4] == b"\x89PNG"
    assert report["plan"]["trials"] == 2 and len(report["methods"]["fo_graddiff"]["trials"]) == 2
    for row in report["table"]:
        if row["winner"] is None:
            continue
        trial, step = row["winner"]["trial"], row["winner"]["step"]
        points = [json.loads(line) for line in
                  (out / "trials" / "fo_graddiff" / f"trial{trial}" / "seed100" / "trajectory.jsonl").open()]
        assert any(p["step"] == step and p["forget"] <= row["level"] for p in points)
        for seed in (0, 1):
            unlearn = json.loads((out / "report" / "fo_graddiff" / f"trial{trial}-step{step}" / f"seed{seed}" /
                                  "unlearn.json").read_text())
            assert unlearn["steps"] == step
    capsys.readouterr()
    assert main(command) == 0  # resumed: nothing is run again
    said = capsys.readouterr().out
    assert "already done" in said and "trial 2" not in said


def test_a_run_another_worker_holds_is_waited_for_then_taken_over(tmp_path):
    """Worker A holds the run's claim; B waits (one 'waiting' line), and when A lets go without
    finishing (a dead worker), B does the run itself, exactly once."""
    from simu_bench.pipeline.trial_runs import run_claimed
    from simu_bench.store import claims
    from simu_bench.store.runs import Run

    run = Run(tmp_path / "trial0" / "seed0", "fo_graddiff", 0)
    held = claims.claim(claims.claim_path(run.path.parent, run.method, run.seed), "A")
    said, done = [], []

    def say(line):
        said.append(line)
        held.release()  # A stops

    run_claimed(run, lambda: done.append(1), "fo_graddiff trial 0 seed 0", say, wait_s=0.0)
    assert done == [1] and len(said) == 1 and "another worker runs it" in said[0]


def test_the_frontier_command_its_workers_repeat_parses_back(monkeypatch, tmp_path):
    """`--workers N` starts helpers that run the canonical command with `--workers 1 --quiet
    --threads 1` appended (`pipeline.workers.start_helpers`): frontier must accept those flags and
    the command must give back the same plan."""
    import shlex

    import simu_bench.pipeline.frontier
    from simu_bench.cli import build_parser

    seen = []
    monkeypatch.setattr(simu_bench.pipeline.frontier, "run_frontier", lambda fp: seen.append(fp))
    assert main(["frontier", "--methods", "fo_graddiff", "--levels", "0.2", "--trials", "3",
                 "--out", str(tmp_path / "f"), "--workers", "2"]) == 0
    words = shlex.split(seen[0].run.command)[1:] + ["--workers", "1", "--quiet", "--threads", "1"]
    args = build_parser().parse_args(words)
    assert (args.workers, args.trials, args.out) == ("1", 3, tmp_path / "f")

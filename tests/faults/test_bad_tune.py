"""`simu-bench tune` under faults: a trial that never finished cannot win, two workers on one --out
split the runs instead of doing each twice, and --forget-level is refused where it would be ignored."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from simu_bench.cli import main
from simu_bench.target_model.cache import prepare

from conftest import MICRO_DATA, MICRO_TARGET

QUICK = ["--set", "train.max_steps=1", "--max-new-tokens", "4", "--quiet"]


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


def tune(micro, out: Path, *extra) -> list[str]:
    return ["tune", "--methods", "fo_graddiff", "--out", str(out), "--data", str(micro.data_dir),
            "--model", str(micro.target_dir), *QUICK, *map(str, extra)]


def test_forget_level_under_rule_final_is_refused(micro, tmp_path, capsys):
    out = tmp_path / "tune"
    assert main(tune(micro, out, "--forget-level", "0.3")) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--forget-level 0.3 is the level of --rule retain_at_forget; under --rule final " \
        "it would be ignored: add --rule retain_at_forget, or leave --forget-level out" in err, err
    assert not out.exists()


@pytest.mark.slow  # runs simu-bench end to end
def test_a_trial_that_diverged_on_every_dev_seed_never_wins(micro, tmp_path, capsys, monkeypatch):
    """Every step diverges: every trial scores final 0 and the earliest used to win the tie."""
    from simu_bench.unlearning import loop

    monkeypatch.setattr(loop.Session, "step", lambda self, group: "non-finite loss (nan) at step 1; simulated")
    out = tmp_path / "tune"
    assert main(tune(micro, out, "--trials", "2", "--dev-seeds", "100")) == 1
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith("simu-bench tune: fo_graddiff: no winner: no trial both finished (ok) on a dev seed and "
                           "met the rule (best mean final score over the dev seeds"), line
    assert line.endswith("; no tuned config written; widen its search: space or add trials"), line
    assert "winners: none" in captured.out
    assert not (out / "tuned").exists()
    report = json.loads((out / "tune.json").read_text())["methods"]["fo_graddiff"]
    assert report["winner"] is None and [t["feasible"] for t in report["trials"]] == [False, False]


def test_score_lets_a_trial_win_only_when_a_dev_seed_finished():
    from simu_bench.pipeline.tune import score

    diverged = {"final": 0.0, "forget": 1.0, "retain": 0.0, "per_seed": {"100": {"status": "diverged"}}}
    one_ok = {"final": 0.3, "forget": 0.1, "retain": 0.5,
              "per_seed": {"100": {"status": "diverged"}, "101": {"status": "ok"}}}
    assert score(diverged, "final", 0.2) == (0.0, False)
    assert score(diverged, "retain_at_forget", 1.0) == (-1.0, False)  # within the level, yet never finished
    assert score(one_ok, "final", 0.2) == (0.3, True) and score(one_ok, "retain_at_forget", 0.2) == (0.5, True)


@pytest.mark.slow  # runs simu-bench end to end
def test_two_tune_workers_on_one_out_split_the_runs(micro, tmp_path):
    """2 trials x 2 dev seeds = 4 runs: each is done by exactly one of two workers started together,
    and both workers report the same trials and winner."""
    out = tmp_path / "tune"
    command = [sys.executable, "-m", "simu_bench", *tune(micro, out, "--trials", "2", "--dev-seeds", "100,101")]
    workers = [subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
               for _ in range(2)]
    outputs = [worker.communicate(timeout=900) for worker in workers]
    assert [worker.returncode for worker in workers] == [0, 0], outputs
    started = re.compile(r"fo_graddiff trial (\d) \(of 2\)(?: resumed)? seed (\d+): ")
    done = [match for text, _ in outputs for match in started.findall(text)]
    assert sorted(done) == [("0", "100"), ("0", "101"), ("1", "100"), ("1", "101")], outputs
    winners = {line for text, _ in outputs for line in text.splitlines() if line.startswith("winners:")}
    assert len(winners) == 1, outputs


@pytest.mark.slow  # runs simu-bench end to end
def test_tune_workers_2_splits_the_trials_in_one_command(micro, tmp_path):
    """`--workers 2`: the command and its helper share the study, so each of the 4 runs (2 trials x 2
    dev seeds) is done once, and one report with both trials is written."""
    out = tmp_path / "tune"
    command = [sys.executable, "-m", "simu_bench", *tune(micro, out, "--trials", "2", "--dev-seeds", "100,101",
                                                         "--workers", "2")]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, timeout=900)
    assert done.returncode == 0, done.stderr
    started = re.compile(r"fo_graddiff trial (\d) \(of 2\)(?: resumed)? seed (\d+): ")
    assert sorted(started.findall(done.stdout)) == [("0", "100"), ("0", "101"), ("1", "100"), ("1", "101")]
    assert done.stdout.count("winners:") == 1
    report = json.loads((out / "tune.json").read_text())
    assert [t["trial"] for t in report["methods"]["fo_graddiff"]["trials"]] == [0, 1]

"""A run store edited into the wrong shape, read back by `leaderboard` and `compare`; and `compare`'s
own rule that a gate which compared nothing, or compared a NaN, has not passed.

Every file `run` writes is read back through a checked reader: a bad value gives one line that
names the file (and line) and the run folder to delete, exit status 2. The stores are written by
hand (`store_helpers.make_store`: the target and fo_graddiff seeds 0-2, final 0.50/0.52/0.54).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from fault_helpers import one_line

from simu_bench.cli import main

from store_helpers import make_store

POINT = {"step": 0, "forget": 0.9, "retain": 0.9, "utility": 0.7, "mia": 0.8, "task_aggregate": 0.5, "final": 0.6,
         "seconds": 0.1, "rows": "all"}


@pytest.fixture
def store(tmp_path) -> Path:
    return make_store(tmp_path / "runs")


def trajectory(store: Path, *points) -> None:
    (store / "fo_graddiff" / "seed0" / "trajectory.jsonl").write_text("".join(json.dumps(p) + "\n" for p in points))


def point_without_step(store):
    trajectory(store, POINT, {k: v for k, v in POINT.items() if k != "step"})


def step_is_a_word(store):
    trajectory(store, POINT, {**POINT, "step": "five"})


def forget_is_a_string(store):
    trajectory(store, POINT, {**POINT, "step": 5, "forget": "0.1"})


def relearn_is_a_list(store):
    (store / "fo_graddiff" / "seed0" / "relearn.json").write_text("[]")


def relearn_score_is_a_word(store):
    (store / "fo_graddiff" / "seed0" / "relearn.json").write_text(json.dumps({"forget_after": "high"}))


def final_is_a_string(store):
    path = store / "fo_graddiff" / "seed0" / "metrics.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), "task_aggregate": "0.8"}))


@pytest.mark.parametrize("breaks, needles", [
    (point_without_step, ["trajectory.jsonl:2: no 'step'"]),
    (step_is_a_word, ["trajectory.jsonl:2: 'step' is \"five\", not a whole number >= 0"]),
    (forget_is_a_string, ["trajectory.jsonl:2: 'forget' is \"0.1\", not a number"]),
    (relearn_is_a_list, ["relearn.json: expected a JSON object, found array"]),
    (relearn_score_is_a_word, ["relearn.json: 'forget_after' is \"high\", not a number"]),
    (final_is_a_string, ["metrics.json: task_aggregate is \"0.8\", not a number"]),
], ids=lambda value: getattr(value, "__name__", ""))
@pytest.mark.parametrize("command", ["leaderboard", "compare"])
def test_store_file_of_the_wrong_shape_names_the_run_to_delete(breaks, needles, command, store, tmp_path, capsys):
    baseline = tmp_path / "baseline.json"
    assert main(["leaderboard", str(store), "--format", "json", "--output", str(baseline)]) == 0
    breaks(store)
    argv = ["leaderboard", store] if command == "leaderboard" else ["compare", baseline, store]
    one_line(capsys, argv, *needles, f"delete {store / 'fo_graddiff' / 'seed0'} to redo the run", stdout_empty=True)


def test_a_checked_trajectory_still_reads_in_order_of_step(store):
    from simu_bench.store.runs import read_trajectory

    trajectory(store, {**POINT, "step": 5, "rows": 32}, POINT)
    assert [p["step"] for p in read_trajectory(store / "fo_graddiff" / "seed0")] == [0, 5]


# -- compare: the baseline's values, NaN on either side, nothing compared ------------------------------


@pytest.fixture
def baseline(tmp_path) -> Path:
    path = tmp_path / "baseline.json"
    assert main(["leaderboard", str(make_store(tmp_path / "base")), "--format", "json", "--output", str(path)]) == 0
    return path


def edit_baseline(path: Path, method: str, key: str, mean) -> None:
    board = json.loads(path.read_text())
    row = next(row for row in board["rows"] if row["method"] == method)
    row["metrics"][key]["mean"] = mean
    path.write_text(json.dumps(board))


def test_a_baseline_mean_that_is_a_string_is_refused(baseline, store, capsys):
    edit_baseline(baseline, "fo_graddiff", "final", "0.5")
    one_line(capsys, ["compare", baseline, store],
             f"baseline {baseline}: rows[", "(fo_graddiff) metric 'final' has mean \"0.5\", expected a number or null")


def nan_in(store: Path, key: str) -> None:
    """`key` of fo_graddiff seed 0's metrics.json set to NaN (json writes it as the bare word NaN)."""
    path = store / "fo_graddiff" / "seed0" / "metrics.json"
    metrics = json.loads(path.read_text())
    if key == "final":
        metrics["final"] = float("nan")
    else:
        metrics["components"]["retain"]["Task2"]["knowledge"] = float("nan")
    path.write_text(json.dumps(metrics))


@pytest.mark.parametrize("side, key", [("new", "final"), ("new", "retain/Task2/knowledge"), ("baseline", "final")])
def test_nan_on_either_side_fails_the_gate(side, key, baseline, store, capsys):
    """NaN compares false with everything, so |new - baseline| > band never held for it: it passed."""
    if side == "new":
        nan_in(store, key)
    else:
        edit_baseline(baseline, "fo_graddiff", key, float("nan"))
    code = main(["compare", str(baseline), str(store), "--format", "plain"])
    out, err = capsys.readouterr()
    assert code == 1, (out, err)
    [moved] = [line.split() for line in out.splitlines() if line.startswith("fo_graddiff")]
    assert moved[:2] == ["fo_graddiff", key] and "nan" in moved[2:4], out
    assert " ".join(moved[-6:]) == "a finite number on both sides", out


def test_a_store_of_the_target_alone_compares_nothing(baseline, store, capsys):
    import shutil

    shutil.rmtree(store / "fo_graddiff")
    one_line(capsys, ["compare", baseline, store], "holds only the target's reference row, no run of a method",
             "nothing to compare, which is not a pass")


def test_methods_without_baseline_values_compare_nothing(baseline, store, capsys):
    board = json.loads(baseline.read_text())
    for row in board["rows"]:
        row["metrics"] = {}
    baseline.write_text(json.dumps(board))
    one_line(capsys, ["compare", baseline, store], "has a baseline value: nothing compared, which is not a pass")

"""One forget/retain split score, computed by `leaderboard.values.split_score`, read the same by
the trajectory points, the tuning objective and the console summary."""

import pytest

from simu_bench.leaderboard.values import split_score, split_scores
from simu_bench.pipeline import trajectory, tune
from simu_bench.pipeline.steps import summary_line
from simu_bench.store.runs import Run


def metrics_with_a_missing_component() -> dict:
    """Forget: Task1 0.2/0.4, Task2 0.6/None, Task3 0.1/0.5; retain: all six 0.9 except Task3's knowledge 0.3."""
    forget = {"Task1": {"regurgitation": 0.2, "knowledge": 0.4}, "Task2": {"regurgitation": 0.6, "knowledge": None},
              "Task3": {"regurgitation": 0.1, "knowledge": 0.5}}
    retain = {task: {"regurgitation": 0.9, "knowledge": 0.9} for task in ("Task1", "Task2", "Task3")}
    retain["Task3"]["knowledge"] = 0.3
    return {"components": {"forget": forget, "retain": retain}, "final": 0.5, "task_aggregate": 0.6,
            "mia": {"score": 0.7}, "utility": {"name": "world_facts", "value": 0.8}}


def test_the_split_score_is_the_mean_of_the_measured_components():
    metrics = metrics_with_a_missing_component()
    # forget: (0.2 + 0.4 + 0.6 + 0.1 + 0.5) / 5 = 0.36, not the mean of the kind means
    # ((0.2 + 0.6 + 0.1) / 3 + (0.4 + 0.5) / 2) / 2 = 0.375; retain: (5 * 0.9 + 0.3) / 6 = 0.8
    assert split_score(metrics, "forget") == pytest.approx(0.36)
    assert split_scores(metrics) == pytest.approx({"forget": 0.36, "retain": 0.8})
    assert split_score({"components": {}}, "forget") is None


def test_trajectory_tuning_and_summary_give_the_same_value(tmp_path):
    metrics = metrics_with_a_missing_component()
    point = trajectory.point(3, metrics, 1.0)
    assert (point["forget"], point["retain"]) == pytest.approx((0.36, 0.8))
    run = Run(tmp_path / "seed0", "m", 0)
    run.path.mkdir()
    run.write_json("metrics.json", metrics)
    run.finish("ok")
    outcome = tune.outcome([run])
    assert (outcome["forget"], outcome["retain"], outcome["final"]) == pytest.approx((0.36, 0.8, 0.5))
    assert "forget 0.360 ↓ retain 0.800 ↑" in summary_line(run, metrics, {"evaluate": 1.0})

"""`simu-bench run --eval-every K`: trajectory.jsonl, and that evaluating along the way changes nothing.

The end-to-end tests drive the CLI in-process on the tiny target (3 optimizer steps, 8 new tokens
per row); the callback's schedule is checked on a fake loop state, without a model.
"""

import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from simu_bench.cli import main
from simu_bench.pipeline.trajectory import FILE, Trajectory, point, read_trajectory, subset
from simu_bench.unlearning import registry

from eval_helpers import uniform_components

QUICK = ["--set", "train.max_steps=3", "--max-new-tokens", "8", "--quiet"]
# One method per way of training: AdamW, SophiaG, SophiaG under a mask, a frozen reference model,
# and no steps at all. The callback sits in the shared loop, so these cover every method; all 14
# methods twice would make this file most of the suite's time.
METHODS = ["fo_graddiff", "so_graddiff", "simu", "npo", "selective_pruning"]


@pytest.fixture(scope="module")
def inputs(tiny_target):
    return ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]


@pytest.fixture(scope="module")
def stores(inputs, tmp_path_factory):
    """The same runs of every method without and with `--eval-every 2` (the second store reuses
    the first one's reference row: its config does not change with the flag)."""
    plain, traced = tmp_path_factory.mktemp("plain"), tmp_path_factory.mktemp("traced")
    methods = ["--methods", ",".join(METHODS)]
    assert main(["run", *methods, "--out", str(plain), *inputs, *QUICK]) == 0
    shutil.copytree(plain / "target", traced / "target")
    assert main(["run", *methods, "--out", str(traced), *inputs, *QUICK, "--eval-every", "2"]) == 0
    return plain, traced


@pytest.mark.parametrize("method", METHODS)
def test_evaluating_along_the_way_changes_no_result(stores, method):
    plain, traced = (store / method / "seed0" for store in stores)
    assert (traced / "metrics.json").read_bytes() == (plain / "metrics.json").read_bytes()
    assert (traced / "generations.jsonl").read_bytes() == (plain / "generations.jsonl").read_bytes()
    losses = [json.loads((run / "unlearn.json").read_text())["losses"] for run in (plain, traced)]
    assert losses[0] == losses[1] and len(losses[0]) == (3 if registry.get(method).trains else 0)
    assert read_trajectory(plain) is None and not (plain / FILE).exists()


def test_a_method_without_steps_has_one_point_its_final_evaluation(stores):
    """Selective Pruning changes the model in `prepare` and runs no step: its trajectory is the
    final evaluation at step 0 (the pruned model, not the target)."""
    plain, traced = stores
    (only,) = read_trajectory(traced / "selective_pruning" / "seed0")
    metrics = json.loads((traced / "selective_pruning" / "seed0" / "metrics.json").read_text())
    assert {k: v for k, v in only.items() if k != "seconds"} == {
        k: v for k, v in point(0, metrics, 0.0).items() if k != "seconds"}


@pytest.mark.parametrize("method", [name for name in METHODS if registry.get(name).trains])
def test_trajectory_rows(stores, method):
    plain, traced = stores
    points = read_trajectory(traced / method / "seed0")
    # every 2 steps from step 0; the last step (3) is the run's final evaluation, not a repeat
    assert [p["step"] for p in points] == [0, 2, 3]
    assert all(p["rows"] == "all" and p["seconds"] > 0 for p in points)
    target = json.loads((traced / "target" / "metrics.json").read_text())
    metrics = json.loads((traced / method / "seed0" / "metrics.json").read_text())
    first, last = points[0], points[-1]
    # step 0 is the target itself: its forget and retain scores (mean of 6 components each)
    expected = point(0, target, 0.0)
    for key in ("forget", "retain", "utility", "mia", "task_aggregate", "final"):
        assert first[key] == expected[key], key
    assert first["forget"] > 0.5 and first["mia"] is not None and first["utility"] is not None
    assert {k: v for k, v in last.items() if k != "seconds"} == {
        k: v for k, v in point(3, metrics, 0.0).items() if k != "seconds"}
    forget = [v for task in metrics["components"]["forget"].values() for v in task.values()]
    assert len(forget) == 6 and last["forget"] == pytest.approx(sum(forget) / 6)


def test_config_has_the_flags_only_when_set(stores):
    plain, traced = stores
    configs = [json.loads((store / "fo_graddiff" / "seed0" / "config.json").read_text()) for store in stores]
    assert "trajectory" not in configs[0]["config"]
    assert configs[1]["config"]["trajectory"] == {"eval_every": 2, "eval_rows": None}
    assert configs[0]["hash"] != configs[1]["hash"]
    target = json.loads((plain / "target" / "config.json").read_text())
    assert "trajectory" not in target["config"]  # the reference row is not redone for a trajectory
    assert "--eval-every 2" in (traced / "leaderboard.md").read_text()
    assert "trajectory" in json.loads((traced / "fo_graddiff" / "seed0" / "timings.json").read_text())


def test_eval_rows_uses_a_subset_before_the_final_point(stores, inputs, tmp_path):
    shutil.copytree(stores[0] / "target", tmp_path / "target")
    args = ["run", "--methods", "fo_graddiff", "--out", str(tmp_path), *inputs, *QUICK, "--set", "train.max_steps=2",
            "--eval-every", "1", "--eval-rows", "6"]
    assert main(args) == 0
    points = read_trajectory(tmp_path / "fo_graddiff" / "seed0")
    assert [(p["step"], p["rows"]) for p in points] == [(0, 6), (1, 6), (2, "all")]
    config = json.loads((tmp_path / "fo_graddiff" / "seed0" / "config.json").read_text())["config"]
    assert config["trajectory"] == {"eval_every": 1, "eval_rows": 6}


def test_subset_is_seeded_and_keeps_every_cell(tiny_target):
    data = tiny_target.data
    small = subset(data, 6)
    assert len(small.forget) == len(small.retain) == 6
    for split in ("forget", "retain"):
        cells = {(e.task, e.kind) for e in data.split(split)}
        assert len(cells) == 6 and {(e.task, e.kind) for e in small.split(split)} == cells
    assert subset(data, 6) == small and subset(data, 6, seed=1) != small
    assert subset(data, 1000) == data
    assert small.member == data.member and small.utility == data.utility


class FakeModel(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a, self.b = torch.nn.Linear(2, 2), torch.nn.Linear(2, 2)


def metrics_with(forget: float) -> dict:
    return {"components": uniform_components(forget, 1.0), "task_aggregate": 0.5}


@pytest.mark.parametrize("every, total, steps", [(2, 5, [0, 2, 4, 5]), (2, 4, [0, 2, 4]), (1, 2, [0, 1, 2]),
                                                 (10, 3, [0, 3])])
def test_callback_schedule_and_model_state(every, total, steps):
    model = FakeModel().train()
    model.a.requires_grad_(False)  # as a method that trains part of the model leaves it

    calls = []

    def measure(model, tokenizer):  # an evaluation that leaves the model changed must not leak
        calls.append(state.step)
        model.eval().requires_grad_(True)
        return metrics_with(state.step / 10)

    state = SimpleNamespace(model=model, tokenizer=None, step=0, total_steps=total)
    trajectory = Trajectory(every, measure)
    trajectory.on_train_start(state)
    for step in range(1, total + 1):
        state.step = step
        trajectory.after_step(state)
        assert model.training and not model.a.weight.requires_grad and model.b.weight.requires_grad
    assert calls == steps[:-1]  # the last step is the run's own final evaluation: never measured here
    points = trajectory.finish(total, metrics_with(0.9), 1.0)
    assert [p["step"] for p in points] == steps
    assert [p["forget"] for p in points] == pytest.approx([s / 10 for s in steps[:-1]] + [0.9])
    assert points[-1]["seconds"] == 1.0 and points[0]["utility"] is None and points[0]["mia"] is None


@pytest.mark.parametrize("every, log, total, steps", [
    (None, True, 10, [0, 1, 2, 4, 8, 10]), (3, True, 10, [0, 1, 2, 3, 4, 6, 8, 9, 10]),
    (None, True, 8, [0, 1, 2, 4, 8]),
])
def test_eval_at_log_is_dense_early_and_joins_eval_every(every, log, total, steps):
    state = SimpleNamespace(model=FakeModel(), tokenizer=None, step=0, total_steps=total, stop=False)
    trajectory = Trajectory(every, lambda model, tokenizer: metrics_with(0.5), log=log)
    trajectory.on_train_start(state)
    for step in range(1, total + 1):
        state.step = step
        trajectory.after_step(state)
    assert [p["step"] for p in trajectory.finish(total, metrics_with(0.5), 1.0)] == steps


def test_stop_at_forget_stops_at_the_first_point_at_or_below_the_level():
    """forget = 1 - step/10 at points 0, 1, 2, 4, 8: the first <= 0.7 is step 4 (0.6), not 3 (no point)."""
    state = SimpleNamespace(model=FakeModel(), tokenizer=None, step=0, total_steps=20, stop=False)
    trajectory = Trajectory(None, lambda model, tokenizer: metrics_with(1 - state.step / 10), log=True,
                            stop_at_forget=0.7)
    trajectory.on_train_start(state)
    while not state.stop and state.step < 20:
        state.step += 1
        trajectory.after_step(state)
    assert state.step == 4 and trajectory.stopped_at == 4
    assert trajectory.stop_record(4) == {"level": 0.7, "reached": True, "step": 4}
    never = Trajectory(None, lambda model, tokenizer: metrics_with(0.9), log=True, stop_at_forget=0.1)
    assert never.stop_record(20) == {"level": 0.1, "reached": False, "step": 20}


def test_eval_at_log_and_stop_at_forget_end_to_end(inputs, tmp_path):
    """3 steps with --eval-at log: points 0, 1, 2 and the final 3; a level above the target's
    forget score stops at step 0 (counted as reached, 0 steps)."""
    out = tmp_path / "runs"
    assert main(["run", "--methods", "fo_graddiff", "--seeds", "0", "--out", str(out), *inputs, *QUICK,
                 "--eval-at", "log", "--eval-rows", "6"]) == 0
    assert [p["step"] for p in read_trajectory(out / "fo_graddiff" / "seed0")] == [0, 1, 2, 3]
    first = read_trajectory(out / "fo_graddiff" / "seed0")[0]["forget"]
    stopped = tmp_path / "stopped"
    assert main(["run", "--methods", "fo_graddiff", "--seeds", "0", "--out", str(stopped), *inputs, *QUICK,
                 "--eval-at", "log", "--eval-rows", "6", "--stop-at-forget", f"{min(first + 0.01, 0.99)}"]) == 0
    unlearn = json.loads((stopped / "fo_graddiff" / "seed0" / "unlearn.json").read_text())
    assert unlearn["steps"] == 0 and unlearn["stop_at_forget"]["reached"] is True


@pytest.mark.parametrize("args, message", [
    (["--stop-at-forget", "0.2"], "needs evaluation points"),
    (["--stop-at-forget", "1.5", "--eval-at", "log"], "expected a forget level in (0, 1)"),
    (["--set", "train.stop_at_forget=0.2"], "needs evaluation points"),
    (["--eval-every", "0"], "--eval-every 0: expected a positive"),
    (["--eval-every", "-3"], "--eval-every -3: expected a positive"),
    (["--eval-every", "2", "--eval-rows", "0"], "--eval-rows 0: expected a positive"),
    (["--eval-rows", "4"], "needs --eval-every"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys):
    code = main(["run", "--methods", "fo_graddiff", "--out", str(tmp_path / "out"), *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert list(tmp_path.iterdir()) == []

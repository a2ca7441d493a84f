"""Records that say what happened: trajectory points record the rows they were measured on, float16
training on a CPU is refused up front with its real cause (not blamed on the learning rate), and a
data folder without retain rows runs the methods that have no retain term and refuses the others
with one line naming the method."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fault_helpers import one_line

from simu_bench.cli import main
from simu_bench.target_model.cache import prepare

from conftest import MICRO_DATA, MICRO_TARGET

QUICK = ["--set", "train.max_steps=2", "--max-new-tokens", "4", "--quiet"]


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


def run(micro, out: Path, *extra, data: Path | None = None, methods: str = "fo_graddiff") -> list[str]:
    return ["run", "--methods", methods, "--out", str(out), "--data", str(data or micro.data_dir),
            "--model", str(micro.target_dir), *QUICK, *map(str, extra)]


def rows_in(path: Path) -> int:
    return sum(1 for line in path.read_text().splitlines() if line.strip())


@pytest.mark.slow  # runs simu-bench end to end
def test_trajectory_points_record_the_rows_they_were_measured_on(micro, tmp_path, capsys):
    """--eval-rows 100000 on data of a few rows per split: each subset point measured every row of
    the larger split, and says so; the final point is the whole evaluation ("all")."""
    out = tmp_path / "runs"
    assert main(run(micro, out, "--eval-every", "1", "--eval-rows", "100000")) == 0
    capsys.readouterr()
    path = out / "fo_graddiff" / "seed0" / "trajectory.jsonl"
    points = [json.loads(line) for line in path.read_text().splitlines()]
    largest = max(rows_in(micro.data_dir / "forget.jsonl"), rows_in(micro.data_dir / "retain.jsonl"))
    assert largest < 100
    assert [(p["step"], p["rows"]) for p in points] == [(0, largest), (1, largest), (2, "all")]


@pytest.mark.parametrize("how", [["--dtype", "float16"], ["--set", "train.dtype=float16"]], ids=["dtype", "set"])
def test_float16_training_on_cpu_is_refused_up_front_with_its_cause(how, micro, tmp_path, capsys):
    err = one_line(capsys, run(micro, tmp_path / "out", *how), "fo_graddiff: train.dtype float16 on cpu",
                   "AdamW's eps (1e-8) rounds to 0", "whatever the learning rate", "train in bfloat16")
    assert "lower optimizer.lr" not in err
    assert not (tmp_path / "out").exists()


def test_a_float16_divergence_names_float16_not_the_learning_rate(tokenizer, data):
    """Where float16 training is allowed (not on a CPU), a run that diverges in it says why."""
    import torch

    from simu_bench.unlearning import loop, registry

    from unlearn_helpers import tiny_model

    model = tiny_model(tokenizer).to(dtype=torch.float16)
    unlearner = registry.create("fo_graddiff", ["train.epochs=2", "train.batch_size=1", "train.dtype=float16"])
    result = loop.run(unlearner, model, tokenizer, data, seed=0, progress=False)
    assert result.status == "diverged" and "float16 has no loss scaling" in result.message
    assert "lower optimizer.lr" not in result.message


@pytest.fixture
def no_retain(micro, tmp_path, request) -> Path:
    data = Path(shutil.copytree(micro.data_dir, tmp_path / "data"))
    if request.param == "absent":
        (data / "retain.jsonl").unlink()
    else:
        (data / "retain.jsonl").write_text("\n")
    return data


@pytest.mark.slow  # runs simu-bench end to end
@pytest.mark.parametrize("no_retain", ["absent", "empty"], indirect=True)
def test_a_method_without_a_retain_term_runs_without_retain_rows(no_retain, micro, tmp_path, capsys):
    out = tmp_path / "runs"
    assert main(run(micro, out, data=no_retain, methods="grad_ascent")) == 0, capsys.readouterr().err
    capsys.readouterr()
    assert json.loads((out / "grad_ascent" / "seed0" / "status.json").read_text())["status"] == "ok"
    metrics = json.loads((out / "grad_ascent" / "seed0" / "metrics.json").read_text())
    assert set(metrics["components"]) == {"forget"}  # nothing is made up for the retain split


@pytest.mark.parametrize("no_retain", ["absent"], indirect=True)
def test_methods_with_a_retain_term_are_refused_by_name(no_retain, micro, tmp_path, capsys):
    one_line(capsys, run(micro, tmp_path / "out", data=no_retain, methods="grad_ascent,fo_graddiff,npo"),
             "fo_graddiff needs a retain set (its loss has a retain term) (so do npo)",
             f"{no_retain} has no retain rows (retain.jsonl empty or absent)", "without a retain term (grad_ascent")
    assert not (tmp_path / "out").exists()

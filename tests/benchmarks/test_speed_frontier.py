"""Cost of dense evaluation points (`--eval-at log`), the price of checkpoints as candidates (pytest-benchmark).

Measure with:
    pytest tests/benchmarks/test_speed_frontier.py --benchmark-enable --benchmark-columns=mean,median,stddev

Group "a run with and without evaluation points": one FO-GradDiff run on the tiny target (8
optimizer steps, 16 new tokens per row) without points, and the same run with `--eval-at log`
(points at steps 0, 1, 2, 4 and the end, the points before the end on 6 + 6 rows). The ratio of
the two means is the dense-evaluation overhead a frontier trial pays; its trials report it per run
too (timings.json: `trajectory` next to `unlearn` and `evaluate`). Without --benchmark-enable each
benchmark runs once as a plain test.
"""

import itertools
import json
import shutil

import pytest

from simu_bench.cli import main

QUICK = ["--methods", "fo_graddiff", "--seeds", "0", "--set", "train.max_steps=8", "--max-new-tokens", "16", "--quiet"]
POINTS = ["--eval-at", "log", "--eval-rows", "6"]


@pytest.fixture(scope="module")
def inputs(tiny_target):
    return ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]


@pytest.fixture(scope="module")
def evaluated_target(inputs, tmp_path_factory):
    """A store holding only the target's reference row, copied into each timed store: the timed
    work is the method's run alone (the reference row is the same with or without points)."""
    out = tmp_path_factory.mktemp("target")
    assert main(["run", *QUICK, *inputs, "--out", str(out)]) == 0
    return out / "target"


@pytest.mark.benchmark(group="a run with and without evaluation points")
@pytest.mark.parametrize("points", [[], POINTS], ids=["without points", "eval-at log"])
def test_speed_run_with_and_without_evaluation_points(benchmark, inputs, evaluated_target, tmp_path, points):
    fresh = itertools.count()

    def store():
        out = tmp_path / f"runs{next(fresh)}"
        shutil.copytree(evaluated_target, out / "target")
        return (out,), {}

    def one_run(out):
        assert main(["run", *QUICK, *inputs, "--out", str(out), *points]) == 0
        return out

    out = benchmark.pedantic(one_run, setup=store, rounds=3, iterations=1, warmup_rounds=1)
    timings = json.loads((out / "fo_graddiff" / "seed0" / "timings.json").read_text())
    assert ("trajectory" in timings) == bool(points)

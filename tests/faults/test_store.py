"""The run store: atomic writes, the completion marker, config hashes, writable checks."""

import json
import os

import pytest

from simu_bench.errors import UserError
from simu_bench.files import atomic_write_json
from simu_bench.store.runs import Run, check_writable, config_hash, load_runs


def test_atomic_write_leaves_no_temporary_file_and_replaces_whole(tmp_path):
    path = tmp_path / "a" / "x.json"
    atomic_write_json(path, {"v": 1})
    atomic_write_json(path, {"v": 2})
    assert json.loads(path.read_text()) == {"v": 2}
    assert os.listdir(path.parent) == ["x.json"]
    umask = os.umask(0)
    os.umask(umask)
    assert path.stat().st_mode & 0o777 == 0o666 & ~umask  # as open() makes it, not mkstemp's 0600


def test_atomic_write_failure_keeps_old_file(tmp_path):
    path = tmp_path / "x.json"
    atomic_write_json(path, {"v": 1})
    with pytest.raises(TypeError):
        atomic_write_json(path, {"v": object()})  # not JSON-serialisable: fails before the rename
    assert json.loads(path.read_text()) == {"v": 1}
    assert os.listdir(tmp_path) == ["x.json"]


def test_config_hash_is_order_independent_and_value_sensitive():
    assert config_hash({"a": 1, "b": {"c": 2}}) == config_hash({"b": {"c": 2}, "a": 1})
    assert config_hash({"a": 1}) != config_hash({"a": 2})


def test_status_is_the_completion_marker(tmp_path):
    run = Run.at(tmp_path, "fo_graddiff", 0)
    assert run.path == tmp_path / "fo_graddiff" / "seed0"
    run.begin({"lr": 1}, {"device": "cpu"})
    assert run.status() is None and not run.is_done()  # interrupted: redone on a rerun
    assert load_runs(tmp_path) == []
    run.write_json("metrics.json", {"final": 0.5})
    run.finish("ok")
    assert run.is_done()
    [stored] = load_runs(tmp_path)
    assert (stored.method, stored.seed, stored.status, stored.metrics) == ("fo_graddiff", 0, "ok", {"final": 0.5})


def test_crashed_runs_are_retried_diverged_are_final(tmp_path):
    crashed, diverged = Run.at(tmp_path, "a", 0), Run.at(tmp_path, "b", 0)
    for run, status in ((crashed, "crashed"), (diverged, "diverged")):
        run.begin({}, {})
        run.finish(status, error="boom")
    assert not crashed.is_done() and diverged.is_done()
    assert {r.status: r.error for r in load_runs(tmp_path)} == {"crashed": "boom", "diverged": "boom"}


def test_begin_clears_stale_outputs_of_an_interrupted_run(tmp_path):
    run = Run.at(tmp_path, "a", 1)
    run.begin({"x": 1}, {})
    run.write_json("metrics.json", {"final": 0.1})
    (run.path / ".timings.json.1234.tmp").write_text("{")  # a write cut short by a kill
    run.begin({"x": 1}, {})
    assert sorted(p.name for p in run.path.iterdir()) == ["config.json", "environment.json"]


def test_another_config_is_refused_once_the_run_finished(tmp_path):
    run = Run.at(tmp_path, "a", 0)
    run.begin({"lr": 1}, {})
    run.check_config({"lr": 2})  # interrupted: nothing to protect, it is redone with the new config
    run.finish("crashed", error="boom")
    run.check_config({"lr": 1})
    with pytest.raises(UserError, match="another config"):
        run.check_config({"lr": 2})


def test_reference_run_has_no_seed_folder(tmp_path):
    assert Run.at(tmp_path, "target", None).path == tmp_path / "target"


def test_check_writable_creates_nothing(tmp_path):
    check_writable(tmp_path / "new" / "deeper")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "file").write_text("x")
    with pytest.raises(UserError, match="is a file"):
        check_writable(tmp_path / "file" / "runs")


def test_config_hash_ignores_paths():
    assert config_hash({"a": 1, "paths": {"data": "/x"}}) == config_hash({"a": 1, "paths": {"data": "/y"}})

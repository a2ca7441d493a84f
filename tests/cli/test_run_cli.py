"""`simu-bench run` end to end on the tiny target: run store, resume, failures, bad input.

All in-process through `simu_bench.cli.main`. The methods train one optimizer step and generate
at most 16 tokens per row, so the whole module stays fast; the orchestration is what is tested.
"""

import json

import pytest

from simu_bench.cli import main
from simu_bench.pipeline import execute
from simu_bench.store.runs import Run
from simu_bench.unlearning import loop, registry

from eval_helpers import uniform_components

QUICK = ["--set", "train.max_steps=1", "--max-new-tokens", "16", "--quiet"]
RUN_FILES = {"config.json", "environment.json", "log.txt", "unlearn.json", "metrics.json",
             "generations.jsonl", "timings.json", "status.json"}


@pytest.fixture(scope="module")
def inputs(tiny_target):
    return ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]


@pytest.fixture(scope="module")
def finished(inputs, tmp_path_factory):
    """One complete `run --methods all` into a fresh folder (shared by the tests below)."""
    out = tmp_path_factory.mktemp("runs")
    assert main(["run", "--methods", "all", "--seeds", "0", "--out", str(out), *inputs, *QUICK]) == 0
    return out


def test_run_stores_every_run_and_the_leaderboard(finished, tiny_target):
    methods = registry.names()
    assert {p.name for p in (finished / "target").iterdir()} == RUN_FILES - {"unlearn.json"}
    for method in methods:
        files = {p.name for p in (finished / method / "seed0").iterdir()}
        assert RUN_FILES <= files, method
        masked = registry.get(method) is registry.get("simu") and method != "attention_only"  # SIMU's masks
        assert ("mask.safetensors" in files) == masked == ("mask.json" in files), method
        status = json.loads((finished / method / "seed0" / "status.json").read_text())
        assert status["status"] == "ok", status
        timings = json.loads((finished / method / "seed0" / "timings.json").read_text())
        assert {"load", "unlearn", "evaluate", "total"} <= set(timings)
        rows = (finished / method / "seed0" / "generations.jsonl").read_text().splitlines()
        data = tiny_target.data
        assert len(rows) == len(data.forget) + len(data.retain) + len(data.utility)
    assert "prepare" in json.loads((finished / "target" / "timings.json").read_text())
    # SIMU's attribution (forget, retain, the stability check's two halves) computed once for
    # every method that takes SIMU's mask, not once per method
    masks = [m for m in methods if registry.get(m) is registry.get("simu") and m != "attention_only"]
    cached = list((finished / ".cache" / "attribution").glob("*.safetensors"))
    assert len(masks) > 1 and 4 <= len(cached) < 4 * len(masks)
    board = (finished / "leaderboard.md").read_text()
    assert "target (before unlearning)" in board and all(f"| {m} " in board for m in methods)
    assert board.count("simu-bench run --methods all") == 1  # the command that made it, at the top
    assert (finished / "tradeoff.png").exists() and (finished / "per_task.png").exists()


def test_rerun_skips_complete_runs_and_redoes_interrupted_ones(finished, inputs, capsys):
    stamps = {p: p.stat().st_mtime_ns for p in finished.glob("*/seed0/metrics.json")}
    (finished / "simu" / "seed0" / "status.json").unlink()  # as if killed before it finished
    assert main(["run", "--methods", "all", "--seeds", "0", "--out", str(finished), *inputs, *QUICK]) == 0
    out = capsys.readouterr().out
    assert "simu seed 0: final" in out and "fo_graddiff seed 0: already done (ok), skipped" in out
    for path, stamp in stamps.items():
        assert (path.stat().st_mtime_ns == stamp) == (path.parent.parent.name != "simu"), path
    assert Run.at(finished, "simu", 0).is_done()


def test_another_config_in_an_existing_run_dir_is_refused(finished, inputs, capsys):
    before = sorted(p.relative_to(finished) for p in finished.rglob("*"))
    code = main(["run", "--methods", "fo_graddiff", "--out", str(finished), *inputs, *QUICK,
                 "--set", "optimizer.lr=1e-3"])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "another config" in err and "fo_graddiff/seed0" in err
    assert sorted(p.relative_to(finished) for p in finished.rglob("*")) == before


def test_eval_matches_the_reference_row(finished, tiny_target, capsys):
    assert main(["eval", "--model", str(tiny_target.target_dir), "--data", str(tiny_target.data_dir),
                 "--max-new-tokens", "16"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert metrics == json.loads((finished / "target" / "metrics.json").read_text())


def fake_evaluate(model, tokenizer, data, plan, **kwargs):
    """A fast stand-in for `evaluate` (these tests are about what the orchestrator records)."""
    from simu_bench.evaluation.evaluator import EvalResult

    return EvalResult(uniform_components(0.5, 0.5), 0.5, {"auc": 0.5, "score": 1.0},
                      {"name": "world_facts", "value": 0.5}, 2 / 3, samples=[{"id": "x"}])


def test_crashed_and_diverged_methods_are_recorded_and_the_others_go_on(inputs, tmp_path, monkeypatch, capsys):
    real_run, calls = loop.run, []

    def flaky(unlearner, model, tokenizer, data, **kwargs):
        calls.append(unlearner.name)
        if unlearner.name == "fo_graddiff":
            raise RuntimeError("CUDA out of memory (simulated)")
        if unlearner.name == "so_graddiff":
            return loop.UnlearnResult(unlearner.name, "diverged", "so_graddiff: non-finite loss (nan) at step 1")
        return real_run(unlearner, model, tokenizer, data, **kwargs)

    monkeypatch.setattr(loop, "run", flaky)
    monkeypatch.setattr(execute, "evaluate_model", fake_evaluate)
    args = ["run", "--methods", "all", "--out", str(tmp_path), *inputs, *QUICK]
    assert main(args) == 1  # a crash makes the exit status 1; the other runs finished
    status = {m: json.loads((tmp_path / m / "seed0" / "status.json").read_text()) for m in registry.names()}
    assert status["fo_graddiff"]["status"] == "crashed" and "out of memory" in status["fo_graddiff"]["error"]
    diverged = {"status": "diverged", "error": "so_graddiff: non-finite loss (nan) at step 1"}
    assert status["so_graddiff"] == {**status["so_graddiff"], **diverged}
    assert status["simu"]["status"] == "ok"
    assert "Traceback" in (tmp_path / "fo_graddiff" / "seed0" / "log.txt").read_text()
    assert not (tmp_path / "so_graddiff" / "seed0" / "metrics.json").exists()
    board = (tmp_path / "leaderboard.md").read_text()
    assert "| fo_graddiff " in board and "0/1 (1 crashed)" in board and "0/1 (1 diverged)" in board
    calls.clear()
    assert main(args) == 1  # crashed runs are retried, diverged ones are final
    assert calls == ["fo_graddiff"]
    capsys.readouterr()


def test_interrupt_keeps_finished_runs(inputs, tmp_path, monkeypatch, capsys):
    def interrupted(unlearner, *args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(execute, "evaluate_model", fake_evaluate)
    monkeypatch.setattr(loop, "run", interrupted)
    args = ["run", "--methods", "fo_graddiff", "--out", str(tmp_path), *inputs, *QUICK]
    assert main(args) == 130
    assert "interrupted" in capsys.readouterr().err
    assert Run.at(tmp_path, "target", None).is_done()  # finished before the interrupt: kept
    assert not (tmp_path / "fo_graddiff" / "seed0" / "status.json").exists()  # redone next time


@pytest.mark.parametrize("args, message", [
    (["--methods", "fo_grad"], "did you mean 'fo_graddiff'"),
    (["--methods", "fo_graddiff", "--set", "optimizer.lr"], "not KEY=VALUE"),
    (["--methods", "fo_graddiff", "--set", "optimizer.lrr=1"], "unknown key"),
    (["--methods", "fo_graddiff", "--set", "optimizer.lr=fast"], "expected a number"),
    (["--data", "{tmp}/no-such-data"], "no such directory"),
    (["--model", "{tmp}/no-such-model"], "no such model folder"),
    (["--out", "{tmp}/file/runs"], "is a file, not a directory"),
    (["--seeds", "0,x"], "--seeds"),
    (["--methods", "wagle", "--set", "options.mu=0"], "options.mu: got 0, expected a value > 0"),
    (["--methods", "rmu", "--set", "options.params=attn"], "options.params: got 'attn', expected one of down_proj"),
    (["--methods", "rmu", "--set", "options.steering_coeff=0"], "options.steering_coeff: got 0, expected a value > 0"),
    (["--methods", "rmu", "--set", "options.c_relative=-1"], "options.c_relative: got -1, expected a value > 0"),
])
def test_bad_input_is_one_line_exit_2_and_writes_nothing(args, message, tmp_path, capsys):
    (tmp_path / "file").write_text("not a folder")
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    out = tmp_path / "out"
    code = main(["run", "--out", str(out), *args] if "--out" not in args else ["run", *args])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and message in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]


def test_ls_lists_methods_with_papers_and_tasks(capsys):
    assert main(["ls"]) == 0
    out = capsys.readouterr().out
    for name in registry.names():
        assert name in out and registry.get(name).paper in out
    assert "lume_forget_task1_regurgitation" in out and "lume_world_facts" in out


def test_validate(tmp_path, capsys):
    assert main(["validate", "so_graddiff", "--set", "optimizer.lr=1e-5"]) == 0
    assert json.loads(capsys.readouterr().out.split("\n", 1)[1])["optimizer"]["lr"] == 1e-5
    bad = tmp_path / "bad.yaml"
    bad.write_text("method: so_graddiff\noptimizer:\n  lr: -1\n  nope: 2\n")
    assert main(["validate", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "optimizer.lr" in err and "optimizer.nope" in err

"""`simu-bench ladder`: sizes checked, the declared lr rule, and the report from run stores."""

import json
import math
import shlex

import pytest

from simu_bench.cli import main
from simu_bench.leaderboard import ladder
from simu_bench.pipeline.ladder import lr_factor, lr_overrides, parse_sizes, size_plans
from simu_bench.pipeline.plan import Plan
from simu_bench.unlearning import registry


@pytest.mark.parametrize("argv, message", [
    (["ladder", "--sizes", "tiny"], "a ladder needs at least two sizes"),
    (["ladder", "--sizes", "tiny,tiny"], "a size is listed twice"),
    (["ladder", "--sizes", "tiny,smal"], "'smal' is not a target size (did you mean 'small'?)"),
    (["ladder", "--sizes", "tiny,small", "--methods", "simu", "--pairs", "simu-npo"], "expected A-B with A and B"),
])
def test_bad_ladders_are_refused_in_one_line(argv, message, capsys, tmp_path):
    assert main([*argv, "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_the_lr_rule_scales_every_method_by_the_width_alike(tmp_path):
    """sqrt(64 / 128) = 0.70711 on small, sqrt(64 / 256) = 0.5 on medium, 1 (no override) on tiny."""
    assert lr_factor("tiny") == 1 and lr_factor("small") == pytest.approx(math.sqrt(0.5)) and lr_factor("medium") == 0.5
    methods = ("so_graddiff", "simu")
    lrs = {m: registry.load_config(m).optimizer.lr for m in methods}
    assert lr_overrides(methods, "tiny") == ()
    assert lr_overrides(methods, "medium") == tuple(f"{m}.optimizer.lr={lrs[m] / 2:.6g}" for m in methods)
    plans = size_plans(Plan(methods=methods, seeds=(0,), out=tmp_path, overrides=("train.epochs=2",)),
                       parse_sizes("tiny,medium"))
    assert [(p.size, p.out) for p in plans] == [("tiny", tmp_path / "tiny"), ("medium", tmp_path / "medium")]
    assert plans[1].overrides == ("train.epochs=2", *lr_overrides(methods, "medium"))


def test_each_size_runs_as_the_run_command_its_workers_repeat(tmp_path):
    """A size's worker processes re-run the plan's command with `--workers 1 --threads 1`, flags only
    `run` has: the command must be the `simu-bench run` of that size, which parses back to its plan."""
    from simu_bench.cli import build_parser
    from simu_bench.pipeline.plan import plan_from_args

    base = Plan(methods=("so_graddiff", "simu"), seeds=(0, 3), out=tmp_path, overrides=("train.epochs=2",),
                command="simu-bench ladder --sizes tiny,small")
    small = size_plans(base, ["tiny", "small"])[1]
    words = shlex.split(small.command)
    assert words[:2] == ["simu-bench", "run"]
    again = plan_from_args(build_parser().parse_args([*words[1:], "--workers", "1", "--threads", "1"]), "run")
    assert (again.methods, again.seeds, again.size) == (base.methods, base.seeds, "small")
    assert again.out == tmp_path / "small"
    assert again.overrides == small.overrides


def _store(root, finals: dict[str, list]) -> None:
    """A run store with one run per (method, seed); None marks a diverged run."""
    for method, values in finals.items():
        for seed, final in enumerate(values):
            folder = root / method / f"seed{seed}"
            folder.mkdir(parents=True)
            status = {"status": "ok" if final is not None else "diverged", "method": method, "seed": seed}
            (folder / "status.json").write_text(json.dumps(status))
            if final is not None:
                (folder / "metrics.json").write_text(json.dumps({"final": final, "utility": {"value": 0.5}}))


def test_the_report_pairs_methods_by_seed_on_every_size(tmp_path):
    """tiny: simu 0.50 0.60 0.70, so_graddiff 0.40 0.45 0.65: differences 0.10 0.15 0.05, mean 0.10,
    sd 0.05, half-width t(0.975, 2) * 0.05 / sqrt(3) = 4.3027 * 0.028868 = 0.12421.
    small: simu's seed 2 diverged, so the pair has seeds 0 and 1: differences 0.2 and 0.1, mean 0.15."""
    _store(tmp_path / "tiny", {"simu": [0.50, 0.60, 0.70], "so_graddiff": [0.40, 0.45, 0.65]})
    _store(tmp_path / "small", {"simu": [0.60, 0.50, None], "so_graddiff": [0.40, 0.40, 0.40],
                                "random_mask": [0.5, 0.5, 0.5]})
    written = ladder.write(tmp_path, ["tiny", "small"], rule="a rule")
    assert [p.name for p in written] == ["ladder.json", "ladder.md", "ladder.png"]
    report = json.loads((tmp_path / "ladder.json").read_text())
    tiny = next(e for e in report["per_size"]["tiny"]["paired"] if e["metric"] == "final")
    assert (tiny["a"], tiny["b"], tiny["n"]) == ("simu", "so_graddiff", 3) and tiny["diff"] == pytest.approx(0.10)
    assert tiny["ci_high"] - tiny["diff"] == pytest.approx(0.12421, abs=1e-5)
    small = [e for e in report["per_size"]["small"]["paired"] if e["metric"] == "final"]
    found = [(e["b"], e["n"], round(e["diff"], 10)) for e in small]
    assert found == [("so_graddiff", 2, 0.15), ("random_mask", 2, 0.05)]
    assert report["per_size"]["small"]["methods"]["simu"]["final"]["n"] == 2
    markdown = (tmp_path / "ladder.md").read_text()
    (line,) = [row for row in markdown.splitlines() if "simu - so_graddiff" in row and "final score" in row]
    assert "+0.100 [-0.024, +0.224] (n=3)" in line and "+0.150 [" in line


def test_the_report_shows_each_sizes_mask_diagnostics(tmp_path):
    """simu on tiny: causal forget rises 0.4 and 0.6 (mean 0.5, half-width t(0.975, 1) * 0.1414 / sqrt(2)
    = 12.706 * 0.1 = 1.271); so_graddiff writes no mask and gets no row."""
    _store(tmp_path / "tiny", {"simu": [0.5, 0.6], "so_graddiff": [0.4, 0.5]})
    _store(tmp_path / "small", {"simu": [0.5, 0.6], "so_graddiff": [0.4, 0.5]})
    for seed, rise in enumerate([0.4, 0.6]):
        record = {"counts": {"selected": 10}, "causal_check": {"forget_nll_increase": rise,
                                                               "random_forget_nll_increase": 0.01}}
        (tmp_path / "tiny" / "simu" / f"seed{seed}" / "mask.json").write_text(json.dumps(record))
    ladder.write(tmp_path, ["tiny", "small"], rule="a rule")
    report = json.loads((tmp_path / "ladder.json").read_text())
    rise = report["per_size"]["tiny"]["masks"]["simu"]["forget NLL rise, mask zeroed"]
    assert rise["mean"] == pytest.approx(0.5) and rise["ci95"] == pytest.approx(1.2706, abs=1e-3) and rise["n"] == 2
    assert report["per_size"]["small"]["masks"] == {}
    rows = [r for r in (tmp_path / "ladder.md").read_text().splitlines() if r.startswith("| simu ") and "tiny" in r]
    assert len(rows) == 1 and "0.500 ± 1.271" in rows[0]


def test_the_command_runs_every_size_into_its_own_store_then_writes_the_report(tmp_path, monkeypatch, capsys):
    import simu_bench.pipeline.runner

    seen = []

    def fake_run(plan, say=print):
        seen.append((plan.size, plan.out, plan.methods, plan.seeds))
        _store(plan.out, {"simu": [0.5, 0.6], "so_graddiff": [0.4, 0.4]})
        return {"ok": 4}

    monkeypatch.setattr(simu_bench.pipeline.runner, "run_benchmark", fake_run)
    out = tmp_path / "ladder"
    argv = ["ladder", "--sizes", "tiny,small", "--methods", "simu,so_graddiff", "--seeds", "0,1", "--out", str(out)]
    assert main(argv) == 0
    assert seen == [(s, out / s, ("simu", "so_graddiff"), (0, 1)) for s in ("tiny", "small")]
    report = json.loads((out / "ladder.json").read_text())
    assert report["pairs"] == [["simu", "so_graddiff"]] and report["lr_rule"].startswith("lr(size) = lr(YAML")
    assert report["commands"] == ["simu-bench " + " ".join(argv)]
    assert "runs: 8 ok" in capsys.readouterr().out

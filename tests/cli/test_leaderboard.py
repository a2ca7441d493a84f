"""Leaderboard tables and plots from hand-made metrics files (no model needed)."""

import csv
import io
import json
import math

import pytest

from simu_bench.cli import main
from simu_bench.leaderboard.board import build
from simu_bench.leaderboard.plots import write_plots
from simu_bench.leaderboard.render import render
from simu_bench.leaderboard.values import REFERENCE_LABEL
from simu_bench.store.runs import Run

from eval_helpers import uniform_components


def metrics(final, forget=0.1, retain=0.9, aggregate=0.8, mia=0.7, utility=0.6):
    """A metrics JSON in the shared schema with every forget/retain component set to one value."""
    return {"components": uniform_components(forget, retain), "task_aggregate": aggregate,
            "mia": {"auc": 0.5, "score": mia}, "utility": {"name": "world_facts", "value": utility}, "final": final}


def store(out, method, seed, status="ok", **values):
    run = Run.at(out, method, seed)
    run.begin({"method": method, "seed": seed}, {"device": "cpu"})
    if status == "ok":
        run.write_json("metrics.json", metrics(**values))
    run.finish(status, error=None if status == "ok" else "loss became nan at step 3")


@pytest.fixture
def runs(tmp_path):
    out = tmp_path / "runs"
    store(out, "target", None, final=0.2, forget=1.0, retain=1.0, aggregate=0.0)
    for seed, final in enumerate((0.1, 0.2, 0.3)):
        store(out, "simu", seed, final=final, forget=0.05 * seed)
    store(out, "so_graddiff", 0, final=0.5)
    store(out, "so_graddiff", 1, status="diverged")
    store(out, "fo_graddiff", 0, status="crashed")
    return out


def test_mean_and_t_interval_over_seeds(runs):
    """simu finals 0.1, 0.2, 0.3: mean 0.2, s = 0.1, h = t(0.975, 2) * s / sqrt(3) = 4.3027 * 0.0577 = 0.2484."""
    row = next(r for r in build(runs).rows if r.method == "simu")
    assert row.stats["final"].mean == pytest.approx(0.2)
    assert row.stats["final"].ci95 == pytest.approx(4.302652729749464 * 0.1 / math.sqrt(3))
    assert row.cell("final") == "0.200 ± 0.248"
    # forget regurgitation = mean over the three tasks, then over seeds: (0 + 0.05 + 0.1) / 3
    assert row.stats["forget/regurgitation"].mean == pytest.approx(0.05)


def test_rows_sorted_by_final_with_reference_and_failures(runs):
    board = build(runs)
    assert [r.label for r in board.rows] == ["so_graddiff", "target (before unlearning)", "simu", "fo_graddiff"]
    so = board.rows[0]
    assert so.stats["final"].values == (0.5,)  # the diverged seed is not averaged in as a zero
    assert so.runs_text() == "1/2 (1 diverged)"
    crashed = board.rows[-1]
    assert crashed.cell("final") == "crashed" and crashed.runs_text() == "0/1 (1 crashed)"


def test_markdown_has_both_tables_orientation_and_utility_name(runs):
    text = render(build(runs), "md", ["simu-bench run --methods all"])
    assert "`simu-bench run --methods all`" in text.splitlines()[2]
    assert "utility (world_facts) ↑" in text and "forget regurgitation ↓" in text
    assert REFERENCE_LABEL in text and "## The 12 components" in text
    assert "forget Task2 knowledge ↓" in text and "retain Task3 regurgitation ↑" in text
    assert "0.500" in text and "1.000" in text  # numbers are not re-parsed by tabulate


def test_csv_json_latex_html(runs):
    board = build(runs)
    rows = list(csv.DictReader(io.StringIO(render(board, "csv"))))
    simu = next(r for r in rows if r["method"] == "simu")
    assert float(simu["final_mean"]) == pytest.approx(0.2) and float(simu["final_ci95"]) > 0
    assert next(r for r in rows if r["method"] == "fo_graddiff")["final_mean"] == ""
    data = json.loads(render(board, "json"))
    simu = next(r for r in data["rows"] if r["method"] == "simu")
    assert simu["metrics"]["final"]["values"] == [0.1, 0.2, 0.3]
    assert any(c["key"] == "forget/regurgitation" and not c["higher_is_better"] for c in data["columns"])
    latex = render(board, "latex")
    assert r"$\pm$" in latex and r"so\_graddiff" in latex and r"$\uparrow$" in latex
    html = render(board, "html")
    assert html.count("<table>") == 3 and "<h2>Paired differences against the best method</h2>" in html and "±" in html


def test_plots_are_png(runs, tmp_path):
    paths = write_plots(build(runs), tmp_path / "plots")
    assert [p.name for p in paths] == ["tradeoff.png", "per_task.png"]
    for path in paths:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_leaderboard_command_writes_file_and_plots(runs, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(["leaderboard", str(runs), "--output", str(out / "lb.md"), "--plots", str(out)]) == 0
    assert "simu-bench leaderboard" in (out / "lb.md").read_text()
    assert (out / "tradeoff.png").exists() and (out / "per_task.png").exists()
    assert main(["leaderboard", str(runs), "--format", "csv"]) == 0
    assert capsys.readouterr().out.startswith("method,runs,final_mean")


def test_leaderboard_of_missing_dir_is_one_line_exit_2(tmp_path, capsys):
    assert main(["leaderboard", str(tmp_path / "nope")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "does not exist" in err


def test_the_utility_floor_keeps_a_method_on_the_board_but_out_of_the_ranks(tmp_path, capsys):
    """Target utility 0.8; floor 0.75 -> 0.6. broken has the best final (0.9) with utility 0.1:
    shown, counted, not ranked, not "best"; kept (0.7) ranks first. abs:0.05 lets broken back in."""
    out = tmp_path / "runs"
    store(out, "target", None, final=0.5, utility=0.8)
    for seed in (0, 1):
        store(out, "broken", seed, final=0.9 + 0.01 * seed, utility=0.1)
        store(out, "kept", seed, final=0.7 + 0.01 * seed, utility=0.7)
    assert main(["leaderboard", str(out), "--format", "json"]) == 0
    board = json.loads(capsys.readouterr().out)
    assert board["utility_floor"]["threshold"] == pytest.approx(0.6)
    assert board["ranks"] == {"kept": 1}
    rows = {row["method"]: row for row in board["rows"]}
    assert rows["broken"]["utility_floor"] == {"passed": False, "runs": {"0": False, "1": False}}
    assert rows["broken"]["runs"] == "2; 2 below the utility floor"
    assert [row["method"] for row in board["rows"]] == ["kept", "target", "broken"]  # the discarded last
    assert main(["leaderboard", str(out), "--utility-floor", "abs:0.05"]) == 0
    assert "| 1      | broken" in capsys.readouterr().out
    assert main(["leaderboard", str(out), "--utility-floor", "abs:1.2"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


@pytest.mark.parametrize("command", ["run", "tune", "frontier"])
def test_a_bad_utility_floor_is_one_line_before_anything_is_written(command, tmp_path, capsys):
    out = tmp_path / "out"
    assert main([command, "--methods", "fo_graddiff", "--out", str(out), "--utility-floor", "abs:1.5"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--utility-floor 'abs:1.5'" in err and not out.exists()

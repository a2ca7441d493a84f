"""The leaderboard's paired table, ranks, matched-forgetting table and trajectory plot.

The run store is the golden test's hand-written one, plus hand-written trajectories: the
matched values below are worked out by hand, the paired statistics against scipy's paired t-test.
"""

import json
import math
import statistics

import pytest
from scipy import stats as scipy_stats

from simu_bench.leaderboard.board import build
from simu_bench.leaderboard.floor import UtilityFloor
from simu_bench.leaderboard.plots import write_plots
from simu_bench.leaderboard.render import render, to_dict

from golden_store import make_store

# The paired statistics of every method, simu included: its utility (0.55) is below the default
# floor, which would leave it out of the comparisons (tests/cli/test_leaderboard_golden.py pins that).
NO_FLOOR = UtilityFloor(0)


def _trajectory(folder, points):
    rows = [{"step": 5 * i, "forget": f, "retain": r, "utility": u, "rows": "all"}
            for i, (f, r, u) in enumerate(points)]
    (folder / "trajectory.jsonl").write_text("".join(json.dumps(row) + "\n" for row in rows))


@pytest.fixture
def store(tmp_path):
    out = make_store(tmp_path / "runs")
    for seed in (0, 1, 2):
        # forget 0.9 -> 0.5 -> 0.1 while retain goes 1.0 -> 0.9 -> 0.7 - 0.1 * seed.
        _trajectory(out / "fo_graddiff" / f"seed{seed}",
                    [(0.9, 1.0, 0.9), (0.5, 0.9, 0.8), (0.1, 0.7 - 0.1 * seed, 0.6)])
        # so_graddiff never forgets below 0.4.
        _trajectory(out / "so_graddiff" / f"seed{seed}", [(0.9, 1.0, 0.9), (0.4, 0.95, 0.85)])
    return out


def test_retain_and_utility_at_matched_forgetting(store):
    matched = to_dict(build(store))["matched"]
    fo = matched["fo_graddiff"]
    # L = 0.3 lies halfway from forget 0.5 to 0.1: retain 0.9 + 0.5 * ((0.7 - 0.1 s) - 0.9) = 0.8 - 0.05 s.
    assert fo["retain@forget<=0.3"]["values"] == pytest.approx({"0": 0.8, "1": 0.75, "2": 0.7})
    half = scipy_stats.t.ppf(0.975, 2) * 0.05 / math.sqrt(3)
    assert fo["retain@forget<=0.3"]["mean"] == pytest.approx(0.75)
    assert fo["retain@forget<=0.3"]["ci95"] == pytest.approx(half)
    # L = 0.2: three quarters of the way; utility 0.8 + 0.75 * (0.6 - 0.8) = 0.65 on every seed.
    assert fo["utility@forget<=0.2"]["values"] == pytest.approx({"0": 0.65, "1": 0.65, "2": 0.65})
    assert fo["retain@forget<=0.1"]["values"] == pytest.approx({"0": 0.7, "1": 0.6, "2": 0.5})
    so = matched["so_graddiff"]
    assert so["retain@forget<=0.3"]["reached"] == 0 and so["retain@forget<=0.3"]["seeds"] == 3
    assert "simu" not in matched  # no trajectory stored: no row, not zeros


def test_markdown_shows_matched_values_and_not_reached(store):
    text = render(build(store), "md")
    section = text.split("## Retain and utility where each run first crosses")[1].split("## The 12 components")[0]
    fo = next(line for line in section.splitlines() if line.startswith("| fo_graddiff"))
    so = next(line for line in section.splitlines() if line.startswith("| so_graddiff"))
    assert f"0.750 ± {scipy_stats.t.ppf(0.975, 2) * 0.05 / math.sqrt(3):.3f}" in fo
    assert so.count("not reached") == 6


def test_paired_differences_match_scipy_paired_t(store):
    board = build(store, NO_FLOOR)
    data = to_dict(board)
    finals = {row["method"]: row["metrics"]["final"]["values"] for row in data["rows"]}
    entry = next(e for e in data["paired"] if (e["a"], e["b"], e["metric"]) == ("so_graddiff", "fo_graddiff", "final"))
    a, b = finals["so_graddiff"], finals["fo_graddiff"]
    test = scipy_stats.ttest_rel(a, b)
    interval = test.confidence_interval(0.95)
    assert entry["n"] == 3
    assert entry["diff"] == pytest.approx(statistics.fmean(x - y for x, y in zip(a, b)))
    assert entry["p_value"] == pytest.approx(test.pvalue)
    assert (entry["ci_low"], entry["ci_high"]) == pytest.approx((interval.low, interval.high))
    # simu finished seeds 0 and 1 only: its pairs use those two.
    assert {e["n"] for e in data["paired"] if "simu" in (e["a"], e["b"]) and e["metric"] == "final"} == {2}
    table = render(board, "md").split("## Paired differences against the best method")[1]
    assert "| fo_graddiff" in table and f"p={test.pvalue:.3g}" in table


def test_methods_not_significantly_apart_share_a_rank(store):
    board = build(store, NO_FLOOR)
    data = to_dict(board)
    ordered = [row["method"] for row in data["rows"] if row["method"] != "target"]
    pvalue = {(e["a"], e["b"]): e["p_value"] for e in data["paired"] if e["metric"] == "final"}
    expected = {}
    for position, method in enumerate(ordered):
        above = ordered[position - 1] if position else None
        tied = above is not None and not pvalue[(above, method)] < 0.05
        expected[method] = expected[above] if tied else position + 1
    assert data["ranks"] == expected
    # Make simu and fo_graddiff indistinguishable: per-seed finals that differ by -0.01 and +0.012.
    for seed, offset in ((0, -0.01), (1, 0.012)):
        fo = json.loads((store / "fo_graddiff" / f"seed{seed}" / "metrics.json").read_text())
        path = store / "simu" / f"seed{seed}" / "metrics.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), "final": fo["final"] + offset}))
    ranks = to_dict(build(store, NO_FLOOR))["ranks"]
    assert ranks["simu"] == ranks["fo_graddiff"]


def test_trajectory_plot_only_when_runs_have_trajectories(store, tmp_path):
    written = [p.name for p in write_plots(build(store), tmp_path / "with")]
    assert "trajectory.png" in written and (tmp_path / "with" / "trajectory.png").read_bytes()[:4] == b"\x89PNG"
    bare = make_store(tmp_path / "bare")
    assert "trajectory.png" not in [p.name for p in write_plots(build(bare), tmp_path / "without")]
    assert not (tmp_path / "without" / "trajectory.png").exists()

"""The leaderboard's attack columns (worst-case MIA score, forget after relearning) and the plots'
intervals clipped to [0, 1], on a run store written by hand."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from simu_bench.leaderboard import plots
from simu_bench.leaderboard.board import Stat, build
from simu_bench.leaderboard.render import render

from eval_helpers import uniform_components


def _write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))


def _store(root: Path, attacks: bool = True, relearn: bool = True) -> Path:
    """target + fo_graddiff seeds 0, 1, 2; MIA scores per attack and relearn.json by hand."""
    runs = {("target", None): 1.0, **{("fo_graddiff", seed): 0.2 for seed in (0, 1, 2)}}
    for (method, seed), forget in runs.items():
        folder = root / method / ("" if seed is None else f"seed{seed}")
        metrics = {"components": uniform_components(forget, 0.9), "task_aggregate": 0.5,
                   "mia": {"auc": 0.7, "score": 0.6}, "utility": {"name": "world_facts", "value": 0.8}, "final": 0.6}
        if attacks:  # the worst of these: min_k, 0.1 * (seed + 1); the target's 0.05
            worst = 0.05 if seed is None else 0.1 * (seed + 1)
            metrics["mia_attacks"] = {"loss": {"auc": 0.7, "score": 0.6}, "zlib": {"auc": 0.6, "score": 0.8},
                                      "min_k": {"auc": 1 - worst / 2, "score": worst}}
        _write(folder / "metrics.json", metrics)
        if relearn and seed is not None:  # forget after relearning 0.3, 0.4, 0.5
            _write(folder / "relearn.json", {"forget_before": 0.2, "forget_after": 0.3 + 0.1 * seed})
        _write(folder / "status.json", {"status": "ok", "method": method, "seed": seed})
    return root


def test_attack_columns_hold_the_worst_mia_score_and_forget_after_relearning_with_cis(tmp_path):
    board = build(_store(tmp_path / "runs"))
    keys = [c.key for c in board.columns]
    # Each next to the column it qualifies.
    assert keys[keys.index("mia_score") + 1] == "mia_worst_score"
    assert keys[keys.index("forget/knowledge") + 1] == "relearn_forget"
    rows = {row.method: row for row in board.rows}
    # Worst-case MIA: min over attacks per run (0.1, 0.2, 0.3), then mean +- t(0.975, 2) * 0.1 / sqrt(3).
    worst = rows["fo_graddiff"].stats["mia_worst_score"]
    assert worst.values == pytest.approx((0.1, 0.2, 0.3)) and worst.mean == pytest.approx(0.2)
    assert worst.ci95 == pytest.approx(4.302653 * 0.1 / 3 ** 0.5, rel=1e-5)
    relearned = rows["fo_graddiff"].stats["relearn_forget"]
    assert relearned.values == pytest.approx((0.3, 0.4, 0.5)) and relearned.ci95 == pytest.approx(worst.ci95)
    assert rows["target"].stats["mia_worst_score"].values == (0.05,)
    assert rows["target"].stats["relearn_forget"].n == 0  # the target is not attacked: "—"
    md = render(board, "md")
    assert "worst-case MIA score ↑" in md and "forget after relearning ↓" in md and "0.400 ± 0.248" in md
    assert "Forget after relearning: the mean raw forget score" in md
    csv_header = render(board, "csv").splitlines()[0]
    assert "mia_worst_score_mean" in csv_header and "relearn_forget_ci95" in csv_header
    metrics = json.loads(render(board, "json"))["rows"][0]["metrics"]
    assert {"mia_worst_score", "relearn_forget"} <= set(metrics)


@pytest.mark.parametrize("attacks, relearn, shown", [
    (False, False, []), (True, False, ["mia_worst_score"]), (False, True, ["relearn_forget"]),
])
def test_attack_columns_appear_only_with_their_numbers(tmp_path, attacks, relearn, shown):
    board = build(_store(tmp_path / "runs", attacks, relearn))
    assert [c.key for c in board.attack_columns] == shown
    hidden = {"mia_worst_score", "relearn_forget"} - set(shown)
    assert not hidden & {c.key for c in board.columns}
    assert not hidden & set(json.loads(render(board, "json"))["rows"][0]["metrics"])
    assert ("Worst-case MIA score" in render(board, "md")) == bool(shown)


def test_clipped_errors_keep_every_interval_inside_0_1():
    """Stat((0.9, 1.0)): mean 0.95, half-width t(0.975, 1) * sd / sqrt(2) = 12.706 * 0.0707 / 1.414
    = 0.635: drawn 0.635 below, 0.05 above. Stat((0.0, 0.2)): mean 0.1, half-width 1.271: 0.1
    below, 0.9 above. One value has no interval: no bar."""
    wide = Stat((0.9, 1.0))
    assert wide.ci95 == pytest.approx(0.635, abs=1e-3)
    below, above = plots.clipped_errors([wide, Stat((0.5,))])
    assert below == pytest.approx([wide.ci95, 0.0]) and above == pytest.approx([0.05, 0.0])
    low = Stat((0.0, 0.2))
    assert low.ci95 == pytest.approx(1.271, abs=1e-3)
    assert plots.clipped_errors([low]) == [[pytest.approx(0.1)], [pytest.approx(0.9)]]
    assert plots.clipped_errors([Stat(())]) == [[0.0], [0.0]]


def test_per_task_bars_stay_inside_0_1(tmp_path, monkeypatch):
    """Seeds whose retain components are 0.9 and 1.0: a 95% t-interval of 0.95 +- 0.635, which
    today's plot clips to [0.315, 1.0]: no bar reaches past 1 or below 0."""
    root = tmp_path / "runs"
    for seed, retain in ((0, 0.9), (1, 1.0)):
        folder = root / "fo_graddiff" / f"seed{seed}"
        _write(folder / "metrics.json", {"components": uniform_components(0.0, retain), "task_aggregate": 0.5})
        _write(folder / "status.json", {"status": "ok", "method": "fo_graddiff", "seed": seed})
    drawn = []
    from matplotlib.axes import Axes

    real_bar = Axes.bar

    def bar(self, x, height, *args, yerr=None, **kwargs):
        drawn.append((list(height), yerr))
        return real_bar(self, x, height, *args, yerr=yerr, **kwargs)

    monkeypatch.setattr(Axes, "bar", bar)
    plots.plot_per_task(build(root), tmp_path / "per_task.png")
    assert len(drawn) == 2 and (tmp_path / "per_task.png").exists()  # forget, retain
    for heights, (below, above) in drawn:
        assert all(h - b >= -1e-12 and h + a <= 1 + 1e-12 for h, b, a in zip(heights, below, above))
    retain_heights, (retain_below, retain_above) = drawn[1]
    assert retain_heights[0] == pytest.approx(0.95) and retain_above[0] == pytest.approx(0.05)
    assert retain_below[0] == pytest.approx(0.635, abs=1e-3)

"""Leaderboard plots and tune's fronts.png (PNG, matplotlib's Agg backend, no screen needed).

- `tradeoff.png`: forget score (mean of the 6 raw forget components; lower = more forgotten)
  against retain score (mean of the 6 retain components; higher = better kept), one small dot
  per seed and the mean with its 95% t-interval per method. Best is the top-left corner.
- `per_task.png`: per-task bars for forget (lower is better) and retain (higher is better),
  regurgitation and knowledge, per method, with 95% t-intervals over seeds.
  Scores lie in [0, 1], so every interval drawn is clipped to [0, 1] (`clipped_errors`).
- `trajectory.png` (runs made with `--eval-every K`): the path of each run through the same
  forget/retain plane during unlearning, one thin line per seed, a dot where it ended, and the
  matched-forgetting levels as dotted vertical lines. Paths compare methods at equal forgetting.
"""

from __future__ import annotations

import io
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure  # no pyplot: no backend or window state, PNGs through Agg

from simu_bench.data.lume import KINDS, TASKS
from simu_bench.files import atomic_write_bytes, remove_temp_files
from simu_bench.leaderboard.board import Board, Stat
from simu_bench.leaderboard.paired import LEVELS
from simu_bench.leaderboard.values import split_scores
from simu_bench.store.runs import REFERENCE, read_trajectory


def _save(fig, path: Path) -> None:
    buffer = io.BytesIO()
    # Fixed metadata keeps the PNG bytes the same for the same numbers.
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def _tab10() -> list:
    return list(matplotlib.colormaps["tab10"].colors)


def method_colors(board: Board) -> dict[str, str]:
    """One color per method, the same in every plot; the reference row is gray."""
    palette = [c for i, c in enumerate(_tab10()) if i != 7]  # 7 is gray
    methods = sorted(row.method for row in board.rows if row.method != REFERENCE)
    colors = {method: palette[i % len(palette)] for i, method in enumerate(methods)}
    return {**colors, REFERENCE: "#7f7f7f"}


def clipped_errors(stats: list[Stat], low: float = 0.0, high: float = 1.0) -> list[list[float]]:
    """Error bars of the 95% t-intervals clipped to [low, high], as matplotlib's asymmetric
    `yerr` takes them: [[below each mean], [above each mean]]. E.g. mean 0.95 ± 0.2 draws
    0.75 .. 1.0: 0.2 below and 0.05 above. A stat without a mean or an interval draws none."""
    below, above = [], []
    for stat in stats:
        half = stat.ci95 if stat.ci95 is not None and stat.mean is not None else 0.0
        below.append(min(half, max(stat.mean - low, 0.0)) if half else 0.0)
        above.append(min(half, max(high - stat.mean, 0.0)) if half else 0.0)
    return [below, above]


def plot_tradeoff(board: Board, path: Path) -> Path:
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    colors = method_colors(board)
    for row in board.rows:
        points = [(s["forget"], s["retain"]) for s in (split_scores(r.metrics) for r in row.ok)]
        points = [(x, y) for x, y in points if x is not None and y is not None]
        if not points:
            continue
        color = colors[row.method]
        xs, ys = [p[0] for p in points], [p[1] for p in points]
        ax.scatter(xs, ys, s=14, alpha=0.45, color=color)
        x, y = Stat(tuple(xs)), Stat(tuple(ys))
        ax.errorbar(x.mean, y.mean, xerr=clipped_errors([x]), yerr=clipped_errors([y]),
                    fmt="*" if row.method == REFERENCE else "o",
                    markersize=10, capsize=3, color=color, label=f"{row.label} (n={len(points)})")
    ax.set_xlabel("forget score, mean of 6 raw components (← lower = more forgotten)")
    ax.set_ylabel("retain score, mean of 6 components (↑ higher = better kept)")
    ax.set_title("Forget vs retain trade-off (best: top left)\ndots = seeds, bars = 95% CI over seeds", fontsize=10)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    _legend_or_note(ax, lambda: ax.legend(fontsize=8, loc="lower right"))
    _save(fig, path)
    return path


def _legend_or_note(ax, legend) -> None:
    """Draw the legend, or, when no run finished ok (every run crashed), say so on the plot."""
    if ax.get_legend_handles_labels()[0]:
        legend()
    else:
        ax.text(0.5, 0.5, "no run finished ok: nothing to plot", ha="center", va="center", transform=ax.transAxes)


def plot_per_task(board: Board, path: Path) -> Path:
    rows = [row for row in board.rows if row.ok]
    colors = method_colors(board)
    groups = [(task, kind) for task in TASKS for kind in KINDS]
    fig = Figure(figsize=(12, 4.2))
    axes = fig.subplots(1, 2, sharey=True)
    width = 0.8 / max(len(rows), 1)
    for ax, split, better in zip(axes, ("forget", "retain"), ("lower is better", "higher is better")):
        for index, row in enumerate(rows):
            stats = [row.stats[f"{split}/{task}/{kind}"] for task, kind in groups]
            xs = [g + (index - (len(rows) - 1) / 2) * width for g in range(len(groups))]
            ax.bar(xs, [s.mean or 0 for s in stats], width, yerr=clipped_errors(stats),
                   capsize=2, label=row.label, color=colors[row.method])
        ax.set_xticks(range(len(groups)))
        ax.set_xticklabels([f"{task}\n{kind}" for task, kind in groups], fontsize=8)
        ax.set_title(f"{split} ({better})")
        ax.set_ylim(0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("score (ROUGE-L recall / exact match)")
    handles, labels = axes[0].get_legend_handles_labels()
    _legend_or_note(axes[0], lambda: fig.legend(handles, labels, loc="lower center", ncol=min(len(rows), 4),
                                                fontsize=8, bbox_to_anchor=(0.5, -0.06)))
    _save(fig, path)
    return path


def _paths(board: Board) -> dict[str, list[list[tuple[float, float]]]]:
    """method -> one (forget, retain) path per run that stored a trajectory."""
    paths = {}
    for row in board.rows:
        for run in row.ok:
            points = read_trajectory(run.path) or []
            path = [(p["forget"], p["retain"]) for p in points if p.get("forget") is not None
                    and p.get("retain") is not None]
            if len(path) >= 2:
                paths.setdefault(row.method, []).append(path)
    return paths


def plot_trajectories(board: Board, path: Path) -> Path | None:
    """The trajectory plot, or None (nothing written) when no run stored a trajectory."""
    paths = _paths(board)
    if not paths:
        return None
    fig = Figure(figsize=(6.4, 4.8))
    ax = fig.subplots()
    colors = method_colors(board)
    for level in LEVELS:
        ax.axvline(level, color="#999999", linestyle=":", linewidth=0.8)
    for method, runs in paths.items():
        for index, run in enumerate(runs):
            xs, ys = [p[0] for p in run], [p[1] for p in run]
            label = f"{method} (n={len(runs)})" if index == 0 else None
            ax.plot(xs, ys, linewidth=0.9, alpha=0.55, color=colors[method], label=label)
            ax.scatter(xs[-1:], ys[-1:], s=16, color=colors[method])
    reference = next((row for row in board.rows if row.method == REFERENCE and row.ok), None)
    if reference is not None:
        scores = split_scores(reference.ok[0].metrics)
        ax.scatter([scores["forget"]], [scores["retain"]], marker="*", s=120,
                   color=colors[REFERENCE], label=reference.label, zorder=3)
    ax.set_xlabel("forget score, mean of 6 raw components (← lower = more forgotten)")
    ax.set_ylabel("retain score, mean of 6 components (↑ higher = better kept)")
    ax.set_title("Unlearning paths: forget vs retain during unlearning\nlines = seeds, dots = end, "
                 f"dotted = matched-forgetting levels {', '.join(f'{level:g}' for level in LEVELS)}", fontsize=10)
    ax.set_xlim(-0.03, 1.03)
    ax.set_ylim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    _save(fig, path)
    return path


def write_plots(board: Board, directory: Path) -> list[Path]:
    """Write the plots into `directory` and return their paths (trajectory.png only when runs have one)."""
    directory = Path(directory)
    remove_temp_files(directory, names=("tradeoff.png", "per_task.png", "trajectory.png"))  # a write cut short
    written = [plot_tradeoff(board, directory / "tradeoff.png"), plot_per_task(board, directory / "per_task.png")]
    trajectory = plot_trajectories(board, directory / "trajectory.png")
    return written + ([trajectory] if trajectory is not None else [])


def write_fronts(report: dict, path: Path) -> Path:
    """One panel per method: forget (x, lower is better) against retain (y) of every trial."""
    methods = list(report["methods"])
    fig = Figure(figsize=(4 * len(methods), 3.6))
    axes = fig.subplots(1, len(methods), squeeze=False, sharey=True)
    for ax, method in zip(axes[0], methods):
        result = report["methods"][method]
        trials = result["trials"]
        ax.scatter([t["forget"] for t in trials], [t["retain"] for t in trials], color="0.6", s=18, label="trial")
        best = sorted((t for t in trials if t["trial"] in result["front"]), key=lambda t: t["forget"])
        ax.plot([t["forget"] for t in best], [t["retain"] for t in best], "o-", color="C0", label="front")
        if result["winner"] is not None:
            win = next(t for t in trials if t["trial"] == result["winner"])
            ax.scatter([win["forget"]], [win["retain"]], marker="*", s=160, color="C3", zorder=3, label="winner")
        if report["rule"]["forget_level"] is not None:
            ax.axvline(report["rule"]["forget_level"], color="0.3", linestyle="--", linewidth=1)
        ax.set(title=method, xlabel="forget ↓ (mean of 6)", xlim=(-0.05, 1.05), ylim=(-0.05, 1.05))
    axes[0][0].set_ylabel("retain ↑ (mean of 6)")
    axes[0][0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=120)
    atomic_write_bytes(path, buffer.getvalue())
    return path

"""Leaderboard plots (PNG, matplotlib's Agg backend, no screen needed).

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

from pathlib import Path

from simu_bench.data.lume import KINDS, TASKS
from simu_bench.files import atomic_write_bytes, remove_temp_files
from simu_bench.leaderboard.board import Board, Stat, run_values
from simu_bench.leaderboard.paired import LEVELS
from simu_bench.store.runs import REFERENCE, read_trajectory


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    import io

    buffer = io.BytesIO()
    # Fixed metadata keeps the PNG bytes the same for the same numbers.
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight", metadata={"Software": None})
    atomic_write_bytes(path, buffer.getvalue())


def _tab10() -> list:
    import matplotlib

    return list(matplotlib.colormaps["tab10"].colors)


def method_colors(board: Board) -> dict[str, str]:
    """One color per method, the same in every plot; the reference row is gray."""
    palette = [c for i, c in enumerate(_tab10()) if i != 7]  # 7 is gray
    methods = sorted(row.method for row in board.rows if row.method != REFERENCE)
    colors = {method: palette[i % len(palette)] for i, method in enumerate(methods)}
    return {**colors, REFERENCE: "#7f7f7f"}


def _split_mean(values: dict, split: str) -> float | None:
    parts = [values[f"{split}/{kind}"] for kind in KINDS if values[f"{split}/{kind}"] is not None]
    return sum(parts) / len(parts) if parts else None


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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
    colors = method_colors(board)
    for row in board.rows:
        points = [(_split_mean(v, "forget"), _split_mean(v, "retain")) for v in (run_values(r.metrics) for r in row.ok)]
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
    plt.close(fig)
    return path


def _legend_or_note(ax, legend) -> None:
    """Draw the legend, or, when no run finished ok (every run crashed), say so on the plot."""
    if ax.get_legend_handles_labels()[0]:
        legend()
    else:
        ax.text(0.5, 0.5, "no run finished ok: nothing to plot", ha="center", va="center", transform=ax.transAxes)


def plot_per_task(board: Board, path: Path) -> Path:
    plt = _pyplot()
    rows = [row for row in board.rows if row.ok]
    colors = method_colors(board)
    groups = [(task, kind) for task in TASKS for kind in KINDS]
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.2), sharey=True)
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
    plt.close(fig)
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
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.8))
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
        values = run_values(reference.ok[0].metrics)
        ax.scatter([_split_mean(values, "forget")], [_split_mean(values, "retain")], marker="*", s=120,
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
    plt.close(fig)
    return path


def write_plots(board: Board, directory: Path) -> list[Path]:
    """Write the plots into `directory` and return their paths (trajectory.png only when runs have one)."""
    directory = Path(directory)
    remove_temp_files(directory, names=("tradeoff.png", "per_task.png", "trajectory.png"))  # a write cut short
    written = [plot_tradeoff(board, directory / "tradeoff.png"), plot_per_task(board, directory / "per_task.png")]
    trajectory = plot_trajectories(board, directory / "trajectory.png")
    return written + ([trajectory] if trajectory is not None else [])

"""The ladder report: the same comparison on every target size, and how it changes with size.

Reads one run store per size (`OUT/<size>/`, written by `simu-bench ladder`) and writes
`ladder.json`, `ladder.md` and `ladder.png` into OUT:
- per size, each metric per method: mean over its finished runs ± the 95% Student-t half-width;
- per size, each asked-for pair a - b (by default SIMU - SO-GradDiff and SIMU - random_mask):
  the mean paired difference over the seeds both finished, with its 95% paired-t interval
  (`stats.paired_difference`); the utility floor of the leaderboard is not applied here, so a
  pair is compared whatever its utility;
- the paired differences side by side across sizes (the table and the plot);
- per size, the mask diagnostics of each method with a mask (`mask.json`, see
  `simu_bench.leaderboard.mask_section`): whether attribution finds units that carry the forget
  set, and how that changes with size.
"""

from __future__ import annotations

import json
from pathlib import Path

from matplotlib.figure import Figure  # no pyplot: no backend or window state, PNGs through Agg
from tabulate import tabulate

from simu_bench.files import atomic_write_text
from simu_bench.leaderboard.mask_section import COLUMNS as MASK_COLUMNS
from simu_bench.leaderboard.mask_section import MASK_FILE, value_at
from simu_bench.leaderboard.stats import mean_ci, paired_difference
from simu_bench.leaderboard.values import run_values
from simu_bench.store.runs import load_runs

METRICS = (
    ("final", "final score"), ("task_aggregate", "Task Aggregate"), ("utility", "utility"),
    ("mia_score", "MIA score"), ("forget/regurgitation", "forget regurgitation"),
    ("forget/knowledge", "forget knowledge"), ("retain/regurgitation", "retain regurgitation"),
    ("retain/knowledge", "retain knowledge"),
)
DEFAULT_PAIRS = (("simu", "so_graddiff"), ("simu", "random_mask"))
PLOTTED = ("final", "forget/regurgitation", "retain/regurgitation")
MASK_SHOWN = ("selected units", "share of trained weights", "stability (Jaccard of halves)",
              "forget NLL rise, mask zeroed", "forget NLL rise, random units", "retain NLL rise, mask zeroed")


def per_seed(store: Path) -> dict[str, dict[str, dict[int, float | None]]]:
    """method -> metric -> seed -> value, over the finished runs of one size's run store."""
    values: dict[str, dict[str, dict]] = {}
    for run in load_runs(store):
        if run.status != "ok":
            continue
        flat = run_values(run.metrics)
        for key, _ in METRICS:
            values.setdefault(run.method, {}).setdefault(key, {})[run.seed] = flat.get(key)
    return values


def mask_stats(store: Path) -> dict[str, dict[str, dict]]:
    """method -> mask column -> {mean, ci95, n} over the finished runs that wrote a `mask.json`."""
    records: dict[str, list[dict]] = {}
    for run in load_runs(store):
        path = Path(run.path) / MASK_FILE
        if run.status == "ok" and path.is_file():
            records.setdefault(run.method, []).append(json.loads(path.read_text(encoding="utf-8")))
    stats = {}
    for method, found in records.items():
        stats[method] = {}
        for header, key in MASK_COLUMNS:
            present = [v for v in (value_at(r, key) for r in found) if v is not None]
            mean, half = mean_ci(present)
            stats[method][header] = {"mean": mean, "ci95": half, "n": len(present)}
    return stats


def size_report(store: Path, pairs) -> dict:
    """One size: each method's metrics (mean, ci95, n) and each pair's paired differences."""
    values = per_seed(store)
    methods = {}
    for method, metrics in values.items():
        methods[method] = {}
        for key, by_seed in metrics.items():
            present = [v for v in by_seed.values() if v is not None]
            mean, half = mean_ci(present)
            methods[method][key] = {"mean": mean, "ci95": half, "n": len(present)}
    compared = []
    for a, b in pairs:
        if a not in values or b not in values:
            continue
        for key, _ in METRICS:
            result = paired_difference(values[a][key], values[b][key])
            compared.append({"a": a, "b": b, "metric": key, "diff": result.diff, "ci_low": result.ci_low,
                             "ci_high": result.ci_high, "p_value": result.p_value, "n": result.n})
    return {"methods": methods, "paired": compared, "masks": mask_stats(store)}


def build(out: Path, sizes: list[str], pairs=DEFAULT_PAIRS, rule: str = "") -> dict:
    """The ladder of `out` (one run store per size under `out/<size>`)."""
    return {"sizes": list(sizes), "lr_rule": rule, "pairs": [list(p) for p in pairs],
            "per_size": {size: size_report(Path(out) / size, pairs) for size in sizes}}


def _cell(stat: dict) -> str:
    if stat["mean"] is None:
        return "—"
    return f"{stat['mean']:.3f}" if stat["ci95"] is None else f"{stat['mean']:.3f} ± {stat['ci95']:.3f}"


def _difference(entry: dict | None) -> str:
    if entry is None or entry["diff"] is None:
        return "—"
    if entry["ci_low"] is None:
        return f"{entry['diff']:+.3f} (n={entry['n']})"
    return f"{entry['diff']:+.3f} [{entry['ci_low']:+.3f}, {entry['ci_high']:+.3f}] (n={entry['n']})"


def _find(report: dict, a: str, b: str, metric: str) -> dict | None:
    return next((e for e in report["paired"] if (e["a"], e["b"], e["metric"]) == (a, b, metric)), None)


def render_md(ladder: dict, commands: list[str] = ()) -> str:
    lines = ["# simu-bench ladder", "", *(f"Command: `{c}`" for c in commands),
             f"Learning rate across sizes: {ladder['lr_rule']}", "",
             "## Paired differences by size", "",
             "Mean paired difference a - b over the seeds both finished, [95% paired-t interval] (n seeds).", ""]
    sizes = ladder["sizes"]
    rows = [[f"{a} - {b}", label] + [_difference(_find(ladder["per_size"][s], a, b, key)) for s in sizes]
            for a, b in ladder["pairs"] for key, label in METRICS]
    lines += [tabulate(rows, ["pair", "metric", *sizes], tablefmt="github", disable_numparse=True), ""]
    lines += _mask_lines(ladder)
    for size in sizes:
        methods = ladder["per_size"][size]["methods"]
        table = [[m] + [_cell(methods[m][key]) if key in methods[m] else "—" for key, _ in METRICS]
                 for m in sorted(methods)]
        lines += [f"## {size}", "", "Mean over finished runs ± 95% t half-width.", "",
                  tabulate(table, ["method", *(label for _, label in METRICS)], tablefmt="github",
                           disable_numparse=True), ""]
    return "\n".join(lines)


def _mask_lines(ladder: dict) -> list[str]:
    """The masks by size: one row per (method with a mask, size)."""
    rows = [[method, size] + [_cell(stats[header]) for header in MASK_SHOWN]
            for method in sorted({m for s in ladder["sizes"] for m in ladder["per_size"][s].get("masks", {})})
            for size in ladder["sizes"] if (stats := ladder["per_size"][size].get("masks", {}).get(method))]
    if not rows:
        return []
    return ["## Masks by size", "",
            "Mean over the runs that wrote a mask.json ± 95% t half-width. The causal check, on the model before "
            "unlearning: the forget NLL increase when the mask's units are zeroed, when as many random units per "
            "layer are zeroed (mean of 10 draws), and the retain NLL increase when the mask's units are zeroed.", "",
            tabulate(rows, ["method", "size", *MASK_SHOWN], tablefmt="github", disable_numparse=True), ""]


def write_plot(ladder: dict, path: Path) -> Path:
    """ladder.png: per plotted metric, each pair's paired difference (with its interval) by size."""
    sizes = ladder["sizes"]
    figure = Figure(figsize=(4.5 * len(PLOTTED), 3.6))
    axes = figure.subplots(1, len(PLOTTED), squeeze=False)
    for axis, metric in zip(axes[0], PLOTTED):
        for a, b in ladder["pairs"]:
            entries = [_find(ladder["per_size"][s], a, b, metric) for s in sizes]
            shown = [(i, e) for i, e in enumerate(entries) if e and e["diff"] is not None]
            ys = [e["diff"] for _, e in shown]
            low = [e["diff"] - (e["diff"] if e["ci_low"] is None else e["ci_low"]) for _, e in shown]
            high = [(e["diff"] if e["ci_high"] is None else e["ci_high"]) - e["diff"] for _, e in shown]
            axis.errorbar([i for i, _ in shown], ys, yerr=[low, high], marker="o", capsize=3, label=f"{a} - {b}")
        axis.axhline(0, color="grey", linewidth=0.8)
        axis.set_xticks(range(len(sizes)), sizes)
        axis.set_title(metric)
    axes[0][0].set_ylabel("paired difference (95% CI)")
    axes[0][-1].legend(fontsize="small")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    return path


def write(out: Path, sizes: list[str], pairs=DEFAULT_PAIRS, rule: str = "", commands: list[str] = ()) -> list[Path]:
    """Write ladder.json, ladder.md and ladder.png into `out`; returns their paths."""
    ladder = build(out, sizes, pairs, rule)
    out = Path(out)
    atomic_write_text(out / "ladder.json", json.dumps({**ladder, "commands": list(commands)}, indent=2) + "\n")
    atomic_write_text(out / "ladder.md", render_md(ladder, list(commands)))
    return [out / "ladder.json", out / "ladder.md", write_plot(ladder, out / "ladder.png")]

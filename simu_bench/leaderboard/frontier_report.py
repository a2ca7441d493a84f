"""frontier.json, frontier.md and frontier.png: methods at equal forgetting (`simu-bench frontier`).

Per method and level L: the winning setting and step (chosen on the dev seeds), then over the
report seeds forget, retain, utility, MIA score and final as mean ± the half-width of the 95%
t-interval (n - 1 degrees of freedom), and how many report seeds are at or below L: a winner
chosen on dev seeds need not reach L on every other seed, and "not reached" is counted, never
imputed. Per level, every two methods are paired seed by seed (`stats.paired_difference`:
mean difference a - b, 95% paired-t interval, two-sided p, n shared seeds) on retain, utility,
final and forget. The plot shows each method's retain and utility against forget at its winners.
"""

from __future__ import annotations

from pathlib import Path

from matplotlib.figure import Figure  # no pyplot, as the leaderboard's plots
from tabulate import tabulate

from simu_bench.files import atomic_write_json, atomic_write_text
from simu_bench.leaderboard.plots import _save
from simu_bench.leaderboard.stats import mean_ci, paired_difference

MEASURES = ("forget", "retain", "utility", "mia", "final")
PAIRED = ("retain", "utility", "final", "forget")
RULE = ("per level L, the trial whose best evaluation point (dev-mean forget <= L, utility above the floor) has "
        "the highest dev-mean retain (ties: utility); that setting, stopped at that step, on the report seeds")


def _cell(values: list[float]) -> dict:
    mean, half = mean_ci(values) if values else (None, None)
    return {"mean": mean, "ci95": half, "n": len(values), "values": values}


def level_row(method: str, level: str, winner: dict | None, runs: list[dict]) -> dict:
    """One row of the frontier table (a method that met no level has a row without numbers)."""
    if winner is None:
        return {"method": method, "level": float(level), "winner": None}
    ok = [run for run in runs if run["status"] == "ok"]
    cells = {key: _cell([run[key] for run in ok if run.get(key) is not None]) for key in MEASURES}
    reached = sum(1 for run in ok if run["forget"] is not None and run["forget"] <= float(level))
    return {"method": method, "level": float(level), "winner": {k: winner[k] for k in ("trial", "step", "params")},
            "dev": winner["dev"], "report": cells, "reached": reached, "ok": len(ok), "seeds": len(runs),
            "per_seed": {str(run["seed"]): {key: run.get(key) for key in ("status", *MEASURES)} for run in runs}}


def paired_rows(table: list[dict]) -> list[dict]:
    """Every two methods at every level, on the seeds both finished."""
    rows = []
    for level in sorted({row["level"] for row in table}):
        here = [row for row in table if row["level"] == level and row["winner"] is not None]
        for i, a in enumerate(here):
            for b in here[i + 1:]:
                for key in PAIRED:
                    pa = {seed: v[key] for seed, v in a["per_seed"].items() if v["status"] == "ok"}
                    pb = {seed: v[key] for seed, v in b["per_seed"].items() if v["status"] == "ok"}
                    result = paired_difference(pa, pb)
                    rows.append({"level": level, "a": a["method"], "b": b["method"], "metric": key,
                                 "diff": result.diff, "ci_low": result.ci_low, "ci_high": result.ci_high,
                                 "p_value": result.p_value, "n": result.n})
    return rows


def build_report(fp, methods: dict, target_utility: float | None, env: dict) -> dict:
    table = [level_row(method, level, result["winners"][level], result["report"].get(level, []))
             for method, result in methods.items() for level in result["winners"]]
    return {"command": fp.run.command, "date": env.get("date"), "plan": fp.manifest(), "rule": RULE,
            "utility_floor": fp.floor.to_dict(target_utility), "levels": list(fp.levels),
            "methods": methods, "table": table, "paired": paired_rows(table)}


def write_reports(report: dict, out: Path) -> list[Path]:
    atomic_write_json(out / "frontier.json", report)
    atomic_write_text(out / "frontier.md", markdown(report))
    return [out / "frontier.json", out / "frontier.md", write_plot(report, out / "frontier.png")]


def _num(value, digits: int = 3, sign: bool = False) -> str:
    return "—" if value is None else f"{value:{'+' if sign else ''}.{digits}f}"


def _stat(cell: dict) -> str:
    if cell["mean"] is None:
        return "—"
    return _num(cell["mean"]) + ("" if cell["ci95"] is None else f" ± {_num(cell['ci95'])}")


def markdown(report: dict) -> str:
    plan = report["plan"]
    floor = report["utility_floor"]
    lines = ["# Methods at equal forgetting (frontier)", "", f"`{report['command']}`", "",
             f"Budget: {plan['trials']} trials per method (Optuna TPE, sampler seed {plan['sampler_seed']}, pruner "
             f"{plan['pruner']}), each on dev seeds {', '.join(map(str, plan['dev_seeds']))} with evaluation points "
             f"{plan['eval_at'] or ''}{' every ' + str(plan['eval_every']) if plan['eval_every'] else ''}; report "
             f"seeds {', '.join(map(str, plan['report_seeds']))}. Utility floor {floor['spec']} "
             f"(threshold {_num(floor['threshold'])}).", "", f"Rule: {report['rule']}.", "",
             "Forget and retain: the mean of the 6 raw components (forget lower is better). Report values: mean ± "
             "95% t half-width over the report seeds; 'reached': report seeds at or below the level.", ""]
    headers = ["level", "method", "setting", "step", "forget ↓", "retain ↑", "utility ↑", "MIA ↑", "final ↑",
               "reached"]
    rows = []
    for row in sorted(report["table"], key=lambda r: (r["level"], r["method"])):
        if row["winner"] is None:
            rows.append([f"{row['level']:g}", row["method"], "no trial reached it above the utility floor", *[""] * 7])
            continue
        setting = ", ".join(f"{k}={v}" for k, v in row["winner"]["params"].items())
        rows.append([f"{row['level']:g}", row["method"], setting, row["winner"]["step"],
                     *(_stat(row["report"][k]) for k in MEASURES), f"{row['reached']}/{row['seeds']}"])
    lines += [tabulate(rows, headers, tablefmt="github", disable_numparse=True), "", "## Paired differences", "",
              "a minus b over the report seeds both finished: mean [95% CI], p, n.", ""]
    paired = [[f"{p['level']:g}", p["a"], p["b"], p["metric"],
               f"{_num(p['diff'], sign=True)} [{_num(p['ci_low'], sign=True)}, {_num(p['ci_high'], sign=True)}]",
               "—" if p["p_value"] is None else f"{p['p_value']:.3g}", p["n"]] for p in report["paired"]]
    lines += [tabulate(paired, ["level", "a", "b", "metric", "difference", "p", "n"], tablefmt="github",
                       disable_numparse=True), ""]
    return "\n".join(lines)


def write_plot(report: dict, path: Path) -> Path:
    """Retain (left) and utility (right) against forget at each method's winners, with intervals."""
    fig = Figure(figsize=(9, 3.8))
    axes = fig.subplots(1, 2, squeeze=False)
    methods = sorted({row["method"] for row in report["table"]})
    for index, method in enumerate(methods):
        rows = sorted((r for r in report["table"] if r["method"] == method and r["winner"] is not None),
                      key=lambda r: r["level"])
        for ax, measure in zip(axes[0], ("retain", "utility")):
            xs = [r["report"]["forget"]["mean"] for r in rows]
            ys = [r["report"][measure]["mean"] for r in rows]
            if not rows or None in xs or None in ys:
                continue
            ax.errorbar(xs, ys, xerr=[r["report"]["forget"]["ci95"] or 0 for r in rows],
                        yerr=[r["report"][measure]["ci95"] or 0 for r in rows], fmt="o-", color=f"C{index}",
                        capsize=3, label=method)
    for ax, measure in zip(axes[0], ("retain", "utility")):
        for level in report["levels"]:
            ax.axvline(level, color="0.8", linestyle="--", linewidth=1)
        ax.set(xlabel="forget ↓ (mean of 6)", ylabel=f"{measure} ↑", xlim=(-0.02, max(report["levels"]) + 0.1))
    axes[0][0].legend(fontsize=8)
    fig.tight_layout()
    _save(fig, path)
    return path

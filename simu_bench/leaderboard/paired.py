"""Methods compared as the benchmark's seeds allow: paired, and at matched forgetting.

Every method runs on the same seeds, so two methods are compared seed by seed
(`stats.paired_difference`: mean paired difference, 95% paired-t interval, two-sided p-value,
and a percentile bootstrap over seeds from 5 seeds on). Compared are the headline metrics (final
score, Task Aggregate, MIA score, utility) and the values at matched forgetting.

Matched forgetting (runs made with `--eval-every K`, which store `trajectory.jsonl`): for each
level L in LEVELS, the retain score and the utility at the first evaluation where the forget
score (mean of the 6 raw forget components, as in `tradeoff.png`) drops to L or below,
interpolated linearly between evaluations (`stats.matched_value`). A seed that never gets there
has no value: the cell counts the seeds that reached L ("2/3 reached") and reads "not reached"
when none did. These are the numbers for the question "which method keeps more at the same
forgetting?", which a table of end points cannot answer when methods forget by different amounts.

Ranks follow the final score; a method whose paired difference in final score to the method
just above it is not significant (p >= ALPHA, or fewer than 2 shared seeds) shares its rank.
"""

from __future__ import annotations

from dataclasses import dataclass

from simu_bench.leaderboard.stats import Paired, matched_value, mean_ci, paired_difference, shared_ranks
from simu_bench.store.runs import REFERENCE, read_trajectory

LEVELS = (0.1, 0.2, 0.3)
ALPHA = 0.05
BOOTSTRAP = 2000  # resamples of the percentile bootstrap (from 5 shared seeds on)
HEADLINE = (("final", "final score"), ("task_aggregate", "Task Aggregate"), ("mia_score", "MIA score"),
            ("utility", "utility"))


def matched_key(measure: str, level: float) -> str:
    """E.g. 'retain@forget<=0.2' (a key of leaderboard.json's matched and paired entries)."""
    return f"{measure}@forget<={level:g}"


MATCHED = tuple((matched_key(m, level), f"{m} @ forget<={level:g}") for level in LEVELS for m in ("retain", "utility"))


@dataclass
class Comparison:
    """Per-seed values of every compared metric, the pairs against each other, and the ranks."""

    per_seed: dict[str, dict[str, dict[int, float | None]]]  # method -> metric -> seed -> value
    trajectories: dict[str, int]  # method -> runs with a trajectory
    paired: list[dict]
    ranks: dict[str, int]
    best: str | None

    def matched_cell(self, method: str, key: str) -> tuple[list[float], int]:
        """The values of the seeds that reached the level, and how many seeds had a trajectory."""
        values = self.per_seed.get(method, {}).get(key, {})
        return [v for v in values.values() if v is not None], len(values)


def per_seed_values(rows, run_values) -> tuple[dict, dict]:
    """method -> metric -> seed -> value, from each finished run's metrics and trajectory."""
    per_seed, trajectories = {}, {}
    for row in rows:
        if row.method == REFERENCE:
            continue
        metrics: dict[str, dict] = {key: {} for key, _ in HEADLINE}
        for run in row.ok:
            values = run_values(run.metrics)
            for key, _ in HEADLINE:
                metrics[key][run.seed] = values[key]
            points = read_trajectory(run.path)
            if points is None:
                continue
            trajectories[row.method] = trajectories.get(row.method, 0) + 1
            for level in LEVELS:
                for measure in ("retain", "utility"):
                    usable = [p for p in points if measure == "retain" or p.get("utility") is not None]
                    value = matched_value(usable, level, y=measure)
                    metrics.setdefault(matched_key(measure, level), {})[run.seed] = value
        per_seed[row.method] = metrics
    return per_seed, trajectories


def _entry(a: str, b: str, metric: str, result: Paired) -> dict:
    return {"a": a, "b": b, "metric": metric, "diff": result.diff, "ci_low": result.ci_low,
            "ci_high": result.ci_high, "p_value": result.p_value, "n": result.n,
            "bootstrap_low": result.boot_low, "bootstrap_high": result.boot_high}


def compare(rows, run_values) -> Comparison:
    """Pair every two methods (in leaderboard order) on every compared metric; rank by final."""
    per_seed, trajectories = per_seed_values(rows, run_values)
    ordered = [row.method for row in rows if row.method in per_seed and row.ok]
    paired, final_pairs = [], {}
    keys = [key for key, _ in HEADLINE] + [key for key, _ in MATCHED]
    for i, a in enumerate(ordered):
        for b in ordered[i + 1:]:
            for key in keys:
                if key not in per_seed[a] or key not in per_seed[b]:
                    continue
                result = paired_difference(per_seed[a][key], per_seed[b][key], bootstrap=BOOTSTRAP)
                if result.n:
                    paired.append(_entry(a, b, key, result))
                if key == "final":
                    final_pairs[(a, b)] = result

    def significant(above: str, name: str) -> bool:
        result = final_pairs.get((above, name))
        return result is not None and result.p_value is not None and result.p_value < ALPHA

    ranks = shared_ranks(ordered, significant)
    return Comparison(per_seed, trajectories, paired, ranks, ordered[0] if ordered else None)


def _number(value: float | None, digits: int = 3, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.{digits}f}" if sign else f"{value:.{digits}f}"


def difference_text(entry: dict) -> str:
    """E.g. '+0.041 [+0.012, +0.070] p=0.012 (n=5)'."""
    text = _number(entry["diff"], sign=True)
    if entry["ci_low"] is not None:
        text += f" [{_number(entry['ci_low'], sign=True)}, {_number(entry['ci_high'], sign=True)}]"
        text += f" p={entry['p_value']:.3g}"
    return text + f" (n={entry['n']})"


def paired_table(comparison: Comparison) -> tuple[list[str], list[list[str]]]:
    """Each other method against the best (by final score): best minus it, per metric."""
    best = comparison.best
    metrics = [(k, label) for k, label in HEADLINE + MATCHED
               if any(e["metric"] == k and e["a"] == best for e in comparison.paired)]
    headers = ["best minus"] + [label for _, label in metrics]
    table = []
    for entry_b in dict.fromkeys(e["b"] for e in comparison.paired if e["a"] == best):
        cells = {e["metric"]: difference_text(e) for e in comparison.paired if e["a"] == best and e["b"] == entry_b}
        table.append([entry_b] + [cells.get(k, "—") for k, _ in metrics])
    return headers, table


def matched_table(comparison: Comparison, order: list[str]) -> tuple[list[str], list[list[str]]]:
    """Retain and utility at each forget level per method: mean ± 95% half-width over seeds."""
    headers = ["method"] + [label for _, label in MATCHED]
    table = []
    for method in order:
        if not comparison.trajectories.get(method):
            continue
        cells = []
        for key, _ in MATCHED:
            values, seeds = comparison.matched_cell(method, key)
            if not values:
                cells.append("not reached")
                continue
            mean, half = mean_ci(values)
            text = _number(mean) + (f" ± {_number(half)}" if half is not None else "")
            cells.append(text if len(values) == seeds else f"{text} ({len(values)}/{seeds} reached)")
        table.append([method] + cells)
    return headers, table


def matched_summary(comparison: Comparison) -> dict:
    """leaderboard.json's "matched": method -> key -> mean, ci95, values per seed, seeds reached."""
    summary = {}
    for method, count in comparison.trajectories.items():
        summary[method] = {}
        for key, _ in MATCHED:
            values, seeds = comparison.matched_cell(method, key)
            mean, half = mean_ci(values)
            per_seed = {str(seed): value for seed, value in comparison.per_seed[method].get(key, {}).items()}
            summary[method][key] = {"mean": mean, "ci95": half, "reached": len(values), "seeds": seeds,
                                    "values": per_seed}
    return summary


def sections(comparison: Comparison, order: list[str]) -> list[tuple[str, str, list[str], list[list[str]]]]:
    """(title, explanation, headers, rows) of the tables that follow the main leaderboard."""
    out = []
    headers, table = paired_table(comparison)
    if table:
        out.append((
            "Paired differences against the best method",
            f"Best ({comparison.best}, by final score) minus each other method, over the seeds both finished: "
            "mean difference [95% paired-t interval] p (two-sided paired t-test) (n seeds). An interval that "
            f"contains 0 (p >= {ALPHA}) is no evidence of a difference; methods not significantly apart in final "
            "score share a rank. Every pair is in leaderboard.json under \"paired\".",
            headers, table,
        ))
    headers, table = matched_table(comparison, order)
    explanation = (
        "Retain score and utility at the first evaluation where the forget score (mean of the 6 raw forget "
        "components) drops to the level, interpolated between evaluations; mean ± 95% half-width over the "
        "seeds that reached it. Each method runs its one configured setting, so a method tuned for another "
        "level, or one that collapses past every level at once, is measured at a crossing it was not chosen "
        "for; each method's best setting per level is `simu-bench frontier`."
    )
    title = "Retain and utility where each run first crosses a forget level (one setting per method)"
    if table:
        out.append((title, explanation, headers, table))
    elif comparison.per_seed:
        out.append((title,
                    "No run stored a trajectory: run with `--eval-every K` to compare methods at matched forgetting.",
                    [], []))
    return out

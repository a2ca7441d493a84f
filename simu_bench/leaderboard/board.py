"""The leaderboard of a run store: one row per method, its statistics over seeds and its rank.

Command: `simu-bench leaderboard RUN_DIR --format md` (`simu-bench run` writes one too); the
formats are in `simu_bench.leaderboard.render`, the numbers of one run in `values`.

One row per method plus the reference row "target (before unlearning)", sorted by final score.
The main table holds Task Aggregate, MIA score, utility (named by the task that measured it),
final score, and the forget/retain regurgitation and knowledge scores, each the unweighted mean
over the three tasks, then the official overall scores (`overall-regurgitation-score` and
`overall-knowledge-score` of the SemEval script: the mean over all rows of the kind, so weighted
by rows; the SIMU paper's "Forget/Utility Overall"); a second table holds the 12 components.

Over seeds: each cell is the mean of the runs that finished ("ok"). With n >= 2 runs it reads
`mean ± h`, h the half-width of a 95% confidence interval from Student's t distribution with
n - 1 degrees of freedom: h = t(0.975, n - 1) * s / sqrt(n), s the sample standard deviation
(n - 1 in the denominator). Diverged and crashed runs never enter a mean: the "runs" column counts
them, and a method with no finished run shows its status instead of numbers.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from scipy.stats import t as student_t

from simu_bench.files import read_json
from simu_bench.leaderboard.floor import UtilityFloor, judge
from simu_bench.leaderboard.paired import Comparison, compare
from simu_bench.leaderboard.values import (
    ATTACK_COLUMNS,
    COMPONENTS,
    REFERENCE_LABEL,
    Column,
    attack_values,
    run_values,
    summary_columns,
)
from simu_bench.store.runs import REFERENCE, StoredRun, load_runs

LEGEND = (
    "↑ higher is better, ↓ lower is better. Forget scores are raw (ROUGE-L recall, exact match): "
    "lower means more forgotten; the Task Aggregate inverts them. Forget/retain regurgitation and "
    "knowledge: the mean of the three task means; 'overall': the official row-weighted mean over all rows "
    "of the kind. Final = mean(Task Aggregate, "
    "MIA score, utility). With several seeds: mean ± half-width of the 95% confidence interval "
    "(Student's t, n-1 degrees of freedom); diverged or crashed runs are counted in 'runs', never averaged."
)


@dataclass(frozen=True)
class Stat:
    """Mean and 95% t-interval half-width of the values of one cell (None when there are none)."""

    values: tuple[float, ...]

    @property
    def n(self) -> int:
        return len(self.values)

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def ci95(self) -> float | None:
        if self.n < 2:
            return None
        if not all(map(math.isfinite, self.values)):  # a NaN run: the interval is NaN too (statistics.stdev raises)
            return math.nan
        return float(student_t.ppf(0.975, self.n - 1)) * statistics.stdev(self.values) / math.sqrt(self.n)

    def text(self, digits: int = 3, pm: str = "±") -> str:
        if self.mean is None:
            return "—"
        if self.ci95 is None:
            return f"{self.mean:.{digits}f}"
        return f"{self.mean:.{digits}f} {pm} {self.ci95:.{digits}f}"


@dataclass
class Row:
    """One leaderboard row: a method and all of its stored runs."""

    method: str
    runs: list[StoredRun]
    stats: dict[str, Stat] = field(default_factory=dict)
    floor: dict | None = None  # `floor.judge`'s verdict: passed (bool | None), runs (seed -> verdict), below

    @property
    def below_floor(self) -> bool:
        return bool(self.floor) and self.floor["passed"] is False

    @property
    def label(self) -> str:
        return REFERENCE_LABEL if self.method == REFERENCE else self.method

    @property
    def ok(self) -> list[StoredRun]:
        return [run for run in self.runs if run.status == "ok"]

    def runs_text(self) -> str:
        failed = {}
        for run in self.runs:
            if run.status != "ok":
                failed[run.status] = failed.get(run.status, 0) + 1
        below = f"; {self.floor['below']} below the utility floor" if self.floor and self.floor["below"] else ""
        if not failed:
            return f"{len(self.runs)}{below}"
        detail = ", ".join(f"{count} {status}" for status, count in sorted(failed.items()))
        return f"{len(self.ok)}/{len(self.runs)} ({detail}{below})"

    def cell(self, key: str, pm: str = "±") -> str:
        if not self.ok:  # nothing finished: say why instead of showing numbers
            return "/".join(sorted({run.status for run in self.runs}))
        return self.stats[key].text(pm=pm)


@dataclass
class Board:
    rows: list[Row]
    utility_name: str | None
    meta: dict
    comparison: Comparison | None = None
    utility_floor: dict = field(default_factory=dict)  # `UtilityFloor.to_dict` with the target's utility

    def rank(self, row: Row) -> str:
        if row.below_floor:  # shown and counted, never ranked (as the official evaluation discards it)
            return "below floor"
        ranks = self.comparison.ranks if self.comparison else {}
        return str(ranks[row.method]) if row.method in ranks else "—"

    attack_columns: list[Column] = field(default_factory=list)  # the ATTACK_COLUMNS some run has numbers for

    @property
    def columns(self) -> list[Column]:
        columns = summary_columns(self.utility_name)
        for column in self.attack_columns:  # each right after the column it qualifies
            index = next(i for i, c in enumerate(columns) if c.key == ATTACK_COLUMNS[column])
            columns.insert(index + 1, column)
        return columns


ATTACK_LEGEND = (
    " Worst-case MIA score: the lowest score over the MIA attacks (loss, zlib, Min-K%, Min-K%++, reference). "
    "Forget after relearning: the mean raw forget score of the held-out forget documents after the relearning "
    "attack (relearn.json)."
)


def legend(board: Board) -> str:
    floor = board.utility_floor
    text = UtilityFloor(floor["fraction"] or 0, floor["absolute"]).text(floor["target_utility"]) if floor else ""
    rule = (f" {text[0].upper()}{text[1:]}: a method whose mean utility is below it is shown and counted but not "
            "ranked; 'runs' counts the runs below it." if floor and floor["threshold"] is not None else "")
    return LEGEND + (ATTACK_LEGEND if board.attack_columns else "") + rule


def build(out: Path, floor: UtilityFloor = UtilityFloor()) -> Board:
    """Read every finished run under `out` and summarise it per method; rows below the utility
    `floor` (`simu_bench.leaderboard.floor`) are kept, counted, and left out of ranks and "best"."""
    out = Path(out)
    by_method: dict[str, list[StoredRun]] = {}
    for run in load_runs(out):
        by_method.setdefault(run.method, []).append(run)
    rows, utility_name = [], None
    for method, runs in by_method.items():
        row = Row(method, sorted(runs, key=lambda r: (r.seed is None, r.seed or 0)))
        per_run = [run_values(run.metrics) for run in row.ok]
        keys = [c.key for c in summary_columns(None)] + [c.key for c in COMPONENTS]
        row.stats = {k: Stat(tuple(v[k] for v in per_run if v[k] is not None)) for k in keys}
        attacks = [attack_values(run) for run in row.ok]
        row.stats.update({c.key: Stat(tuple(v[c.key] for v in attacks if v[c.key] is not None))
                          for c in ATTACK_COLUMNS})
        for run in row.ok:
            utility_name = utility_name or (run.metrics.get("utility") or {}).get("name")
        rows.append(row)
    target_utility, verdicts = judge(rows, floor, REFERENCE)
    for row in rows:
        row.floor = verdicts.get(row.method)

    def order(row: Row):
        final, aggregate = row.stats["final"].mean, row.stats["task_aggregate"].mean
        return (not row.ok, row.below_floor, -(final if final is not None else -1), -(aggregate or 0), row.method)

    rows.sort(key=order)
    shown = [c for c in ATTACK_COLUMNS if any(row.stats[c.key].n for row in rows)]
    for row in rows:  # a column not shown leaves no trace in any format
        for column in ATTACK_COLUMNS:
            if column not in shown:
                del row.stats[column.key]
    comparison = compare([row for row in rows if not row.below_floor], run_values)
    return Board(rows, utility_name, _meta(out), comparison, attack_columns=shown,
                 utility_floor=floor.to_dict(target_utility))


def _meta(out: Path) -> dict:
    """Where the runs came from: the run command, data, model and environment of the reference."""
    meta = {"run_dir": str(out)}
    if (out / "run.json").exists():
        meta["run_command"] = read_json(out / "run.json", expect=dict).get("command")
    reference = out / REFERENCE
    if (reference / "config.json").exists():
        config = read_json(reference / "config.json", expect=dict).get("config", {})
        meta.update({k: config.get(k) for k in ("data", "model") if k in config})
        meta["eval_dtype"] = (config.get("evaluation") or {}).get("dtype", "float32")  # stores before dtypes: float32
    trained = {((read_json(path, f"delete {path.parent} to redo the run", expect=dict).get("config") or {})
                .get("unlearn") or {}).get("train", {}).get("dtype", "float32")
               for path in out.glob("*/seed*/config.json")}
    if trained:
        meta["train_dtypes"] = sorted(trained)
    if (reference / "environment.json").exists():
        meta["environment"] = read_json(reference / "environment.json", expect=dict)
    return meta

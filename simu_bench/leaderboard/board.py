"""Leaderboards from a run store, as Markdown, CSV, LaTeX, HTML or JSON.

Command: `simu-bench leaderboard RUN_DIR --format md` (`simu-bench run` writes one too).

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

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

from simu_bench.data.lume import KINDS, SPLITS, TASKS
from simu_bench.files import read_json
from simu_bench.leaderboard import mask_section
from simu_bench.leaderboard.floor import UtilityFloor, judge
from simu_bench.leaderboard.paired import Comparison, compare, matched_summary, sections
from simu_bench.store.runs import REFERENCE, StoredRun, load_runs, read_relearn

FORMATS = ("md", "csv", "latex", "html", "json")
REFERENCE_LABEL = "target (before unlearning)"
LEGEND = (
    "↑ higher is better, ↓ lower is better. Forget scores are raw (ROUGE-L recall, exact match): "
    "lower means more forgotten; the Task Aggregate inverts them. Forget/retain regurgitation and "
    "knowledge: the mean of the three task means; 'overall': the official row-weighted mean over all rows "
    "of the kind. Final = mean(Task Aggregate, "
    "MIA score, utility). With several seeds: mean ± half-width of the 95% confidence interval "
    "(Student's t, n-1 degrees of freedom); diverged or crashed runs are counted in 'runs', never averaged."
)


@dataclass(frozen=True)
class Column:
    key: str
    label: str
    higher_is_better: bool


def _components() -> list[Column]:
    return [
        Column(f"{split}/{task}/{kind}", f"{split} {task} {kind}", split == "retain")
        for split in SPLITS for task in TASKS for kind in KINDS
    ]


COMPONENTS = _components()


def summary_columns(utility_name: str | None) -> list[Column]:
    return [
        Column("final", "final score", True),
        Column("task_aggregate", "Task Aggregate", True),
        Column("mia_score", "MIA score", True),
        Column("utility", f"utility ({utility_name or 'none'})", True),
        Column("forget/regurgitation", "forget regurgitation", False),
        Column("forget/knowledge", "forget knowledge", False),
        Column("retain/regurgitation", "retain regurgitation", True),
        Column("retain/knowledge", "retain knowledge", True),
        *(Column(f"overall/{split}/{kind}", f"{split} overall {kind}", split == "retain")
          for split in SPLITS for kind in KINDS),
    ]


def _mean(values: list) -> float | None:
    values = [v for v in values if v is not None]
    return sum(values) / len(values) if values else None


def run_values(metrics: dict) -> dict[str, float | None]:
    """Flatten one metrics JSON into the leaderboard's keys (see `summary_columns`, `COMPONENTS`)."""
    components = metrics.get("components", {})
    values = {
        "final": metrics.get("final"),
        "task_aggregate": metrics.get("task_aggregate"),
        "mia_score": (metrics.get("mia") or {}).get("score"),
        "utility": (metrics.get("utility") or {}).get("value"),
    }
    for column in COMPONENTS:
        split, task, kind = column.key.split("/")
        values[column.key] = components.get(split, {}).get(task, {}).get(kind)
    for split in SPLITS:
        for kind in KINDS:
            values[f"{split}/{kind}"] = _mean([values[f"{split}/{task}/{kind}"] for task in TASKS])
            value = (metrics.get("overall") or {}).get(split, {}).get(kind)
            values[f"overall/{split}/{kind}"] = None if value is None or math.isnan(value) else value
    return values


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
        from scipy.stats import t

        return float(t.ppf(0.975, self.n - 1)) * statistics.stdev(self.values) / math.sqrt(self.n)

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


# Shown only when some run has their numbers (stores made before them keep their tables), each
# after the column named here: the lowest MIA score over the attacks of `mia_attacks`, and the
# forget score of the held-out documents after the relearning attack (`run --relearn STEPS`).
ATTACK_COLUMNS = {
    Column("mia_worst_score", "worst-case MIA score", True): "mia_score",
    Column("relearn_forget", "forget after relearning", False): "forget/knowledge",
}
ATTACK_LEGEND = (
    " Worst-case MIA score: the lowest score over the MIA attacks (loss, zlib, Min-K%, Min-K%++, reference). "
    "Forget after relearning: the mean raw forget score of the held-out forget documents after the relearning "
    "attack (relearn.json)."
)


def attack_values(run: StoredRun) -> dict[str, float | None]:
    """The ATTACK_COLUMNS of one finished run (None where it has no such number)."""
    attacks = (run.metrics or {}).get("mia_attacks") or {}
    relearn = read_relearn(run.path) or {}
    scores = [attack.get("score") for attack in attacks.values() if attack.get("score") is not None]
    return {"mia_worst_score": min(scores, default=None), "relearn_forget": relearn.get("forget_after")}


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


def _latex_escape(text: str) -> str:
    for char, escaped in (("\\", r"\textbackslash{}"), ("&", r"\&"), ("%", r"\%"), ("$", r"\$"),
                          ("#", r"\#"), ("_", r"\_"), ("{", r"\{"), ("}", r"\}")):
        text = text.replace(char, escaped)
    return text.replace("±", r"$\pm$").replace("—", "--")


def _tables(board: Board, style: str) -> tuple[list, list, list, list]:
    """Headers and cells of the two tables, with orientation arrows in the headers."""
    arrows = {"latex": (r"$\uparrow$", r"$\downarrow$")}.get(style, ("↑", "↓"))

    def header(column: Column) -> str:
        label = _latex_escape(column.label) if style == "latex" else column.label
        return f"{label} {arrows[0] if column.higher_is_better else arrows[1]}"

    def cell(row: Row, key: str) -> str:
        text = row.cell(key)
        return _latex_escape(text) if style == "latex" else text

    def name(row: Row) -> str:
        return _latex_escape(row.label) if style == "latex" else row.label

    main_headers = ["rank", "method"] + [header(c) for c in board.columns] + ["runs"]
    main = [[board.rank(r), name(r)] + [cell(r, c.key) for c in board.columns] + [r.runs_text()] for r in board.rows]
    # Components transposed (one row per component, one column per method): 12 columns would not fit.
    comp_headers = ["component"] + [name(r) for r in board.rows]
    comp = [[header(c)] + [cell(r, c.key) for r in board.rows] for c in COMPONENTS]
    return main_headers, main, comp_headers, comp


def _provenance(board: Board, commands: list[str]) -> list[str]:
    lines = []
    if commands:
        lines.append("Generated by " + " then ".join(f"`{c}`" for c in commands) + "; do not edit by hand.")
    env = board.meta.get("environment") or {}
    libs = env.get("libraries") or {}
    if env.get("libraries"):
        shown = ("simu-bench", "torch", "transformers", "lm-eval")
        versions = ", ".join(f"{k} {v}" for k, v in libs.items() if k in shown and v)
        lines.append(
            f"Environment of the reference run: {versions}; git {env.get('git') or 'unknown'}; "
            f"device {env.get('device')}; date {env.get('date')}."
        )
    if board.meta.get("train_dtypes") or board.meta.get("eval_dtype"):
        lines.append(f"Precision: unlearning in {', '.join(board.meta.get('train_dtypes') or ['—'])}; the target "
                     f"evaluated in {board.meta.get('eval_dtype') or '—'} (each run's dtypes: its config.json).")
    model, data = board.meta.get("model") or {}, board.meta.get("data") or {}
    if model or data:
        name = model.get("hub_id") or f"sha256 {model.get('sha256')}"
        lines.append(
            f"Model: {name}; data: sha256 {data.get('sha256')} (fingerprints of the files; see target/config.json)."
        )
    return lines


def to_dict(board: Board) -> dict:
    def stat(s: Stat) -> dict:
        return {"mean": s.mean, "ci95": s.ci95, "n": s.n, "values": list(s.values)}

    return {
        "legend": legend(board),
        "meta": board.meta,
        "columns": [
            {"key": c.key, "label": c.label, "higher_is_better": c.higher_is_better} for c in board.columns + COMPONENTS
        ],
        "rows": [
            {
                "method": r.method,
                "label": r.label,
                "runs": r.runs_text(),
                "status": {str(run.seed): {"status": run.status, "error": run.error} for run in r.runs},
                "metrics": {k: stat(s) for k, s in r.stats.items()},
                "utility_floor": None if r.floor is None else {
                    "passed": r.floor["passed"], "runs": {str(seed): v for seed, v in r.floor["runs"].items()}},
            }
            for r in board.rows
        ],
        "utility_floor": board.utility_floor,
        "ranks": board.comparison.ranks if board.comparison else {},
        "paired": board.comparison.paired if board.comparison else [],
        "matched": matched_summary(board.comparison) if board.comparison else {},
        "masks": mask_section.summary(board.rows),
    }


def render(board: Board, fmt: str, commands: list[str] | None = None) -> str:
    """The leaderboard as text in `fmt` (one of FORMATS)."""
    from tabulate import tabulate

    commands = commands or []
    if fmt == "json":
        return json.dumps({**to_dict(board), "commands": commands}, indent=2, ensure_ascii=False) + "\n"
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        keys = [c.key for c in board.columns + COMPONENTS]
        # rank last: columns added later go to the end, so readers by position keep working.
        writer.writerow(["method", "runs"] + [f"{k}_{part}" for k in keys for part in ("mean", "ci95")] + ["rank"])
        for r in board.rows:
            cells = [v for k in keys for v in (r.stats[k].mean, r.stats[k].ci95)]
            rank = board.rank(r).replace("—", "")
            writer.writerow([r.label, r.runs_text()] + ["" if v is None else f"{v:.6g}" for v in cells] + [rank])
        return buffer.getvalue()
    main_headers, main, comp_headers, comp = _tables(board, fmt)
    prose = _provenance(board, commands)
    extra = sections(board.comparison, [r.method for r in board.rows]) if board.comparison else []
    extra += mask_section.sections(board.rows)
    if fmt == "md":
        between = []
        for title, explanation, headers, table in extra:
            between += [f"## {title}", "", explanation, ""]
            between += [tabulate(table, headers, tablefmt="github", disable_numparse=True), ""] if headers else []
        parts = [
            "# simu-bench leaderboard",
            "",
            *prose,
            "",
            tabulate(main, main_headers, tablefmt="github", disable_numparse=True),
            "",
            legend(board),
            "",
            *between,
            "## The 12 components",
            "",
            tabulate(comp, comp_headers, tablefmt="github", disable_numparse=True),
            "",
        ]
        return "\n".join(parts)
    if fmt == "latex":
        parts = [f"% {line}" for line in prose + [legend(board)]]
        parts += [
            tabulate(main, main_headers, tablefmt="latex_raw", disable_numparse=True),
            "",
        ]
        for title, explanation, headers, table in extra:
            parts += [f"% {title}: {explanation}"]
            parts += [tabulate(table, headers, tablefmt="latex", disable_numparse=True), ""]
        parts += [tabulate(comp, comp_headers, tablefmt="latex_raw", disable_numparse=True), ""]
        return "\n".join(parts)
    if fmt == "html":
        import html

        paragraphs = "".join(f"<p>{html.escape(line)}</p>\n" for line in prose)
        main_table = tabulate(main, main_headers, tablefmt="html", disable_numparse=True)
        comp_table = tabulate(comp, comp_headers, tablefmt="html", disable_numparse=True)
        between = "".join(
            f"<h2>{html.escape(title)}</h2>\n<p>{html.escape(explanation)}</p>\n"
            + (tabulate(table, headers, tablefmt="html", disable_numparse=True) + "\n" if headers else "")
            for title, explanation, headers, table in extra
        )
        return (
            '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>simu-bench leaderboard</title></head><body>\n'
            f"<h1>simu-bench leaderboard</h1>\n{paragraphs}{main_table}\n<p>{html.escape(legend(board))}</p>\n{between}"
            f"<h2>The 12 components</h2>\n{comp_table}\n</body></html>\n"
        )
    raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")

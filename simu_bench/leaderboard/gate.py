"""A metrics regression gate: a committed leaderboard.json against a new run store.

Command: `simu-bench compare results/leaderboard.json runs/ --format md|plain --tolerance 0.02`.

Per method of the new store and per headline metric (final, task_aggregate, mia_score, utility
and the 12 components where the baseline has them), the new mean must be:
- exactly the baseline's (to 1e-12) when both leaderboards were made on the same data and model
  (meta data.sha256 and model.sha256 equal) and the method's finished seeds are the same;
- otherwise inside the baseline's mean ± its 95% CI half-width, or mean ± `tolerance` where the
  baseline has no CI (a single seed) or a zero-width one (every seed gave the same value: a
  forget knowledge of 0.0 on three seeds would otherwise flag any change at all).
A metric outside its band "moved"; a missing new value (no finished run) moves too, and so does a
value that is not a number (NaN) on either side: a gate that cannot compare does not pass. A new
store without a run of any method compares nothing and is refused.

A frontier (`simu-bench frontier`'s frontier.json, or its --out folder as the new side) is compared
the same way, one row per method and level ("simu @ forget<=0.2") on forget, retain, utility, MIA
score and final over the report seeds; frontiers of other levels or budgets have other rows.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path

from tabulate import tabulate

from simu_bench.errors import UserError
from simu_bench.files import read_text
from simu_bench.leaderboard.board import build
from simu_bench.leaderboard.render import to_dict
from simu_bench.leaderboard.values import COMPONENTS, summary_columns
from simu_bench.store.runs import REFERENCE, is_number

METRICS = [c.key for c in summary_columns(None)[:4]] + [c.key for c in COMPONENTS]
FRONTIER_METRICS = ("forget", "retain", "utility", "mia", "final")
EXACT = 1e-12
NOT_A_NUMBER = "not a number"  # the rule shown where either side (or the band) is NaN or infinite
FIX = "give the leaderboard.json that `simu-bench run` or `simu-bench leaderboard RUN_DIR --format json` writes"


@dataclass(frozen=True)
class Moved:
    method: str
    metric: str
    baseline: float
    new: float | None
    low: float
    high: float
    rule: str  # "exact" | "95% CI" | "tolerance"


@dataclass(frozen=True)
class Comparison:
    moved: list[Moved]
    compared: dict[str, str]  # method -> rule family used ("exact" or "CI")
    not_in_new: list[str]  # baseline methods the new store has no runs of
    checks: int


def load_baseline(path: Path) -> dict:
    """The leaderboard JSON at `path` (the shape of `board.to_dict`), checked enough to compare on."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"baseline {path} does not exist or is not a file; {FIX}")
    text = read_text(path, "a leaderboard.json written by simu-bench")  # unreadable, not UTF-8: one line
    try:
        data = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"baseline {path} is not JSON ({error}); {FIX}") from None
    except RecursionError:
        raise UserError(f"baseline {path}: JSON nested too deeply; {FIX}") from None
    if isinstance(data, dict) and isinstance(data.get("table"), list) and "plan" in data:
        data = frontier_board(data)
    rows = data.get("rows") if isinstance(data, dict) else None
    if not isinstance(rows, list) or not rows:
        raise UserError(f"baseline {path} is not a leaderboard: expected a non-empty 'rows' list; {FIX}")
    for i, row in enumerate(rows):
        if not (isinstance(row, dict) and isinstance(row.get("method"), str) and isinstance(row.get("metrics"), dict)
                and all(isinstance(s, dict) and "mean" in s for s in row["metrics"].values())
                and isinstance(row.get("status") or {}, dict)):
            raise UserError(f"baseline {path} is not a leaderboard: rows[{i}] lacks 'method' or 'metrics' "
                            f"with a 'mean' per metric; {FIX}")
        for key, stat in row["metrics"].items():
            for part in ("mean", "ci95"):
                if stat.get(part) is not None and not is_number(stat[part]):
                    raise UserError(f"baseline {path}: rows[{i}] ({row['method']}) metric {key!r} has {part} "
                                    f"{json.dumps(stat[part])[:40]}, expected a number or null; {FIX}")
    meta = data.get("meta") or {}
    if not (isinstance(meta, dict) and all(isinstance(meta.get(part) or {}, dict) for part in ("data", "model"))):
        raise UserError(f"baseline {path}: 'meta' is not an object with 'data' and 'model' objects; {FIX}")
    return data


def load_new(run_dir: Path) -> dict:
    """The leaderboard of the run store `run_dir`, as `board.to_dict` writes it."""
    run_dir = Path(run_dir)
    if (run_dir / "frontier.json").is_file():  # a `simu-bench frontier` folder
        return frontier_board(json.loads(read_text(run_dir / "frontier.json", "frontier.json")))
    if not run_dir.is_dir():
        raise UserError(f"run directory {run_dir} does not exist; give the --out folder of a `simu-bench run`")
    board = build(run_dir)
    if not any(row.method != REFERENCE for row in board.rows):
        held = "only the target's reference row" if board.rows else "no finished run"
        raise UserError(f"{run_dir} holds {held}, no run of a method: nothing to compare, which is not a pass; "
                        f"run the methods into it first (`simu-bench run --methods ... --out {run_dir}`)")
    return to_dict(board)


def frontier_board(frontier: dict) -> dict:
    """A frontier.json as leaderboard rows: one per method and level with a winner."""
    rows = []
    for row in frontier["table"]:
        if row.get("winner") is None:
            continue
        rows.append({"method": f"{row['method']} @ forget<={row['level']:g}", "metrics": row["report"],
                     "status": {seed: {"status": v["status"]} for seed, v in row["per_seed"].items()}})
    return {"rows": rows, "meta": {}, "frontier": True}


def _fingerprints(board: dict) -> tuple:
    meta = board.get("meta") or {}
    return tuple((meta.get(part) or {}).get("sha256") for part in ("data", "model"))


def _ok_seeds(row: dict) -> list[str]:
    return sorted(seed for seed, record in (row.get("status") or {}).items() if (record or {}).get("status") == "ok")


def compare(baseline: dict, new: dict, tolerance: float = 0.02) -> Comparison:
    """Every metric of every new-store method that moved beyond what the rule allows."""
    base_rows = {row["method"]: row for row in baseline["rows"]}
    new_rows = {row["method"]: row for row in new["rows"]}
    unknown = sorted(set(new_rows) - set(base_rows))
    if unknown:
        raise UserError(f"the new runs hold method(s) {', '.join(unknown)} that the baseline has no row for "
                        f"(baseline: {', '.join(sorted(base_rows))}); compare on runs of other methods")
    fingerprints = _fingerprints(baseline)
    same_inputs = None not in fingerprints and fingerprints == _fingerprints(new)
    moved, compared, checks = [], {}, 0
    metrics = FRONTIER_METRICS if baseline.get("frontier") else METRICS
    for method, row in new_rows.items():
        base = base_rows[method]
        exact = same_inputs and _ok_seeds(base) == _ok_seeds(row)
        compared[method] = "exact" if exact else "CI"
        for key in metrics:
            before = (base["metrics"].get(key) or {}).get("mean")
            if before is None:
                continue  # the baseline does not have this metric
            checks += 1
            after = (row["metrics"].get(key) or {}).get("mean")
            ci = (base["metrics"][key]).get("ci95")
            half, rule = (EXACT, "exact") if exact else (ci, "95% CI") if ci else (tolerance, "tolerance")
            # NaN compares false with everything: checked first, so that it can never pass
            finite = after is not None and all(map(math.isfinite, (before, after, half)))
            if not finite or abs(after - before) > half:
                shown = NOT_A_NUMBER if after is not None and not finite else rule
                moved.append(Moved(method, key, before, after, before - half, before + half, shown))
    if not checks:
        raise UserError(f"no metric of the new runs' methods ({', '.join(new_rows)}) has a baseline value: nothing "
                        "compared, which is not a pass; compare against a leaderboard.json with these methods' metrics")
    return Comparison(moved, compared, sorted(set(base_rows) - set(new_rows)), checks)


def report(result: Comparison, fmt: str = "md") -> str:
    """The table of what moved, or one line saying nothing did; a note on baseline methods not compared."""
    lines = []
    if result.not_in_new:
        lines.append(f"not in the new runs, not compared: {', '.join(result.not_in_new)}")
    if result.moved:
        rows = [[m.method, m.metric, f"{m.baseline:.6f}", "—" if m.new is None else f"{m.new:.6f}",
                 "—" if m.new is None else f"{m.new - m.baseline:+.3g}",
                 f"exact (±{EXACT:g})" if m.rule == "exact" else "a finite number on both sides"
                 if m.rule == NOT_A_NUMBER else f"[{m.low:.4f}, {m.high:.4f}] ({m.rule})"]
                for m in result.moved]
        headers = ["method", "metric", "baseline", "new", "change", "allowed"]
        lines.append(f"{len(result.moved)} of {result.checks} metrics moved beyond tolerance:")
        lines.append(tabulate(rows, headers, tablefmt="github" if fmt == "md" else "simple", disable_numparse=True))
    else:
        rules = "; ".join(f"{method}: {rule}" for method, rule in result.compared.items())
        lines.append(f"no metric moved beyond tolerance ({result.checks} metrics checked; {rules})")
    return "\n".join(lines) + "\n"

"""The run store: one directory per run, written so that nothing complete is ever lost.

Layout of an output directory (`simu-bench run --out DIR`):

    DIR/
      run.json                  the last `simu-bench run` command (for the leaderboard header)
      target/                   the reference row: the target before unlearning, stored like a run
      <method>/seed<k>/         one run per method and seed
        config.json             resolved configuration and its hash (written first)
        environment.json        library versions, git revision, device, date
        log.txt                 the run's log
        unlearn.json            the unlearning loop's record: status, losses per step, method summary
        metrics.json            the LUME metrics (schema of `simu-bench score`)
        generations.jsonl       per-sample generations
        mask.safetensors        SIMU's critical-neuron mask, where the method has one
        timings.json            seconds per stage
        relearn.json            `--relearn STEPS`: the relearning attack's settings and forget score before/after
        status.json             written last: ok | diverged | crashed, with the error

Every file is written to a temporary name and renamed into place, so a file is either complete
or absent. `status.json` is the completion marker: a directory without it is an interrupted run
and is redone from scratch. `ok` and `diverged` runs are final and skipped on a rerun (divergence
is deterministic); `crashed` runs are retried. A finished run directory whose `config.json` hash
differs from the config about to run is an error: results made with another config are never mixed.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from dataclasses import dataclass
from pathlib import Path

from simu_bench.errors import UserError
from simu_bench.files import atomic_write_json, read_json, read_jsonl

REFERENCE = "target"  # method name of the reference row (the target before unlearning)
STATUSES = ("ok", "diverged", "crashed")
FINAL_STATUSES = ("ok", "diverged")  # a rerun skips these; crashed runs are tried again
# Files a run writes; a rerun of an interrupted run removes stale ones first.
RUN_FILES = (
    "config.json", "environment.json", "log.txt", "unlearn.json", "metrics.json", "generations.jsonl",
    "mask.safetensors", "timings.json", "status.json", "trajectory.jsonl", "relearn.json",
)
RELEARN_FILE = "relearn.json"  # written by `run --relearn STEPS` (simu_bench.evaluation.relearn)


def config_hash(config: dict) -> str:
    """A short, stable hash of a resolved config (canonical JSON: sorted keys, no spaces).

    A top-level `paths` entry is informative only (where data and model were found) and is left
    out: the same data and model moved elsewhere make the same run.
    """
    identity = {key: value for key, value in config.items() if key != "paths"}
    text = json.dumps(identity, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def check_writable(out: Path) -> None:
    """Raise UserError unless `out` is, or can be created as, a writable directory.

    Nothing is created: the nearest existing ancestor is checked instead, and a temporary file
    probes it (and is removed) because `os.access` is always true for root.
    """
    out = Path(out)
    existing = out
    while not existing.exists():
        if existing.parent == existing:
            break
        existing = existing.parent
    if not existing.is_dir():
        raise UserError(
            f"output directory {out} cannot be created: {existing} is a file, not a directory; choose another --out"
        )
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UserError(
            f"output directory {out} is not writable ({error.strerror} in {existing}); "
            "choose another --out or fix its permissions"
        ) from None


def _redo(path: Path) -> str:
    return f"delete {path} to redo the run"


def is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _not_number(where: str, value) -> str | None:
    """'where is VALUE, not a number' unless `value` is a number or null."""
    return None if value is None or is_number(value) else f"{where} is {json.dumps(value)[:40]}, not a number"


def _nested_problem(value, depth: int, where: str) -> str | None:
    """The first place where `value` is not objects `depth` levels deep holding numbers (or null)."""
    if depth == 0:
        return _not_number(where, value)
    if not isinstance(value, dict):
        return f"{where} is {json.dumps(value)[:40]}, not an object"
    return next(filter(None, (_nested_problem(v, depth - 1, f"{where}.{k}") for k, v in value.items())), None)


def metrics_problem(metrics: dict) -> str | None:
    """The first number the leaderboard reads from `metrics` that is not a number (or null); None when none."""
    checks = [_not_number(key, metrics.get(key)) for key in ("final", "task_aggregate")]
    for section, depth in (("components", 3), ("overall", 2)):
        checks.append(_nested_problem(metrics.get(section) or {}, depth, section))
    for section, key in (("mia", "score"), ("utility", "value")):
        part = metrics.get(section) or {}
        checks.append(_not_number(f"{section}.{key}", part.get(key)) if isinstance(part, dict)
                      else f"{section} is not an object")
    attacks = metrics.get("mia_attacks") or {}
    checks.append(_nested_problem({name: {"score": (value or {}).get("score")} if isinstance(value, dict) else value
                                   for name, value in attacks.items()}, 2, "mia_attacks")
                  if isinstance(attacks, dict) else "mia_attacks is not an object")
    return next(filter(None, checks), None)


def check_metrics(metrics, path: Path) -> dict:
    """`metrics` (read from `path`) if it looks like an evaluation's metrics (a headline number), else UserError."""
    headline = [metrics.get(key) for key in ("task_aggregate", "final")] if isinstance(metrics, dict) else []
    if not any(is_number(value) for value in headline):
        found = ", ".join(sorted(map(str, metrics))) if isinstance(metrics, dict) else type(metrics).__name__
        raise UserError(f"{path}: expected the metrics of a finished run (task_aggregate, components, ...), "
                        f"found {found or 'an empty object'}; {_redo(path.parent)}")
    problem = metrics_problem(metrics)
    if problem:
        raise UserError(f"{path}: {problem}; expected the metrics `simu-bench run` writes; {_redo(path.parent)}")
    return metrics


def read_status(run_dir: Path, metrics: bool = False) -> dict | None:
    """The status record of `run_dir`, checked (see `Run.status`); None when it has none.

    With `metrics`, an `ok` record also needs a `metrics.json` that `check_metrics` accepts.
    """
    run_dir = Path(run_dir)
    path = run_dir / "status.json"
    if not path.exists():
        return None
    record = read_json(path, _redo(run_dir), expect=dict)
    if record.get("status") not in STATUSES:
        raise UserError(f"{path}: 'status' is {record.get('status')!r}; expected one of {', '.join(STATUSES)}; "
                        f"{_redo(run_dir)}")
    if metrics and record["status"] == "ok":
        file = run_dir / "metrics.json"
        if not file.exists():
            raise UserError(f"{run_dir}: status ok but metrics.json is missing; {_redo(run_dir)}")
        check_metrics(read_json(file, _redo(run_dir)), file)
    return record


@dataclass(frozen=True)
class Run:
    """One run directory: `method` and `seed` (None for the reference row)."""

    path: Path
    method: str
    seed: int | None

    @classmethod
    def at(cls, out: Path, method: str, seed: int | None) -> "Run":
        path = Path(out) / method if seed is None else Path(out) / method / f"seed{seed}"
        return cls(path, method, seed)

    def file(self, name: str) -> Path:
        return self.path / name

    def status(self) -> dict | None:
        """The status record, or None when the run is missing or was interrupted.

        A record of the wrong shape is a UserError that says to delete the run directory: it was
        finished once, so it is not redone silently.
        """
        return read_status(self.path)

    def is_done(self) -> bool:
        status = self.status()
        return status is not None and status.get("status") in FINAL_STATUSES

    def check_inside(self) -> None:
        """Raise UserError when this run's folder (or its method's) is a symbolic link or lies outside
        the run store: a rerun deletes and writes files there, which must never happen outside --out."""
        out = self.path.parent if self.seed is None else self.path.parent.parent
        for folder in {self.path.parent, self.path} - {out}:
            if folder.is_symlink():
                raise UserError(f"{folder} is a symbolic link (to {folder.resolve()}); run folders must be real "
                                f"folders inside the run store {out}: remove the link (rm {folder}) or use another "
                                "--out")
        if self.path.exists() and not self.path.resolve().is_relative_to(out.resolve()):
            raise UserError(f"{self.path} resolves to {self.path.resolve()}, outside the run store {out}; remove it "
                            "or use another --out")

    def check_config(self, config: dict) -> None:
        """Raise UserError when this directory holds a finished run made with another config.

        An interrupted run (no status.json) holds no result to protect and is simply redone. A
        finished run's status and, when ok, its metrics must be usable (`read_status`), so that
        `run` refuses a store edited by hand before it writes anything. A run folder that is a
        symbolic link is refused (`check_inside`).
        """
        self.check_inside()
        path = self.file("config.json")
        if not path.exists() or read_status(self.path, metrics=True) is None:
            return
        stored = read_json(path, _redo(self.path), expect=dict)
        if stored.get("hash") != config_hash(config):
            raise UserError(
                f"{self.path} holds a run made with another config (hash {stored.get('hash')} != "
                f"{config_hash(config)}); use another --out, or delete {self.path} to redo it"
            )

    def begin(self, config: dict, environment: dict) -> None:
        """Start (or restart) the run: clear stale outputs, then write config and environment."""
        self.check_inside()  # a link made since the checks must not send the deletions below elsewhere
        self.path.mkdir(parents=True, exist_ok=True)
        for name in RUN_FILES:
            self.file(name).unlink(missing_ok=True)
        for leftover in self.path.glob("*.tmp"):  # a write cut short by a kill
            leftover.unlink(missing_ok=True)
        atomic_write_json(self.file("config.json"), {"hash": config_hash(config), "config": config})
        atomic_write_json(self.file("environment.json"), environment)

    def write_json(self, name: str, value) -> None:
        atomic_write_json(self.file(name), value)

    def finish(self, status: str, error: str | None = None, **extra) -> None:
        """Write `status.json`, the completion marker: always the last file of a run."""
        if status not in STATUSES:
            raise ValueError(f"status must be one of {STATUSES}, got {status!r}")
        record = {"status": status, "method": self.method, "seed": self.seed, "error": error, **extra}
        atomic_write_json(self.file("status.json"), record)


@dataclass(frozen=True)
class StoredRun:
    """A finished run as the leaderboard reads it."""

    method: str
    seed: int | None
    status: str
    error: str | None
    metrics: dict | None
    timings: dict
    path: Path


def load_runs(out: Path) -> list[StoredRun]:
    """Every finished run under `out` (reference and method runs), in a stable order.

    Interrupted runs (no `status.json`) are left out: they hold no result.
    """
    out = Path(out)
    if not out.is_dir():
        raise UserError(f"run directory {out} does not exist; give the --out folder of a `simu-bench run`")
    runs = []
    for status_path in sorted(list(out.glob("*/status.json")) + list(out.glob("*/seed*/status.json"))):
        path = status_path.parent
        status = read_status(path, metrics=True)
        metrics_path, timings_path = path / "metrics.json", path / "timings.json"
        metrics = read_json(metrics_path) if status["status"] == "ok" else None
        runs.append(
            StoredRun(
                method=status.get("method", path.name),
                seed=status.get("seed"),
                status=status.get("status", "crashed"),
                error=status.get("error"),
                metrics=metrics,
                timings=read_json(timings_path, _redo(path), expect=dict) if timings_path.exists() else {},
                path=path,
            )
        )
    return runs


TRAJECTORY_FILE = "trajectory.jsonl"  # written by `run --eval-every K` (simu_bench.pipeline.trajectory)


POINT_NUMBERS = ("forget", "retain", "utility", "mia", "task_aggregate", "final", "seconds")  # number or null


def _point_problem(row: dict) -> str | None:
    """What is wrong with one trajectory point (see `simu_bench.pipeline.trajectory`); None when nothing."""
    step, rows = row.get("step"), row.get("rows", "all")
    if not (isinstance(step, int) and not isinstance(step, bool) and step >= 0):
        return "no 'step'" if "step" not in row else f"'step' is {json.dumps(step)[:40]}, not a whole number >= 0"
    if rows != "all" and not (isinstance(rows, int) and not isinstance(rows, bool) and rows >= 1):
        return f"'rows' is {json.dumps(rows)[:40]}, not \"all\" or a number of rows >= 1"
    return next(filter(None, (_not_number(repr(key), row.get(key)) for key in POINT_NUMBERS)), None)


def read_trajectory(run_dir: Path) -> list[dict] | None:
    """The points of `run_dir`/trajectory.jsonl in order of step, or None when the run has none.

    A point of the wrong shape (a file edited by hand) is a UserError that names the line and says
    to delete the run folder.
    """
    path = Path(run_dir) / TRAJECTORY_FILE
    if not path.is_file():
        return None
    points = read_jsonl(path)
    for number, row in points:
        problem = _point_problem(row)
        if problem:
            raise UserError(f"{path}:{number}: {problem}; expected a point of `simu-bench run --eval-every` "
                            f"(step, forget, retain, ... as numbers); {_redo(Path(run_dir))}")
    return sorted((row for _, row in points), key=lambda row: row["step"])


def read_relearn(run_dir: Path) -> dict | None:
    """`run_dir`/relearn.json (`simu_bench.evaluation.relearn`), checked; None when the run has none."""
    path = Path(run_dir) / RELEARN_FILE
    if not path.is_file():
        return None
    record = read_json(path, _redo(Path(run_dir)), expect=dict)
    problem = next(filter(None, (_not_number(repr(key), record.get(key)) for key in ("forget_before", "forget_after"))),
                   None)
    if problem:
        raise UserError(f"{path}: {problem}; expected the record of `simu-bench run --relearn STEPS`; "
                        f"{_redo(Path(run_dir))}")
    return record

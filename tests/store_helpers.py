"""Run stores written by hand (raw JSON files, no model), for the leaderboard and the regression gate.

`make_store(out)` writes the reference row `target` and each method with one seed per entry of
`finals`; every metric but `final` (and the forget components, `forget`) is a constant.
"""

from __future__ import annotations

import json
from pathlib import Path

FINALS = (0.50, 0.52, 0.54)


def write(path: Path, value) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value) + "\n")


def metrics(final: float, forget: float = 0.1) -> dict:
    cells = lambda value: {t: {"regurgitation": value, "knowledge": value} for t in ("Task1", "Task2", "Task3")}  # noqa: E731
    return {"components": {"forget": cells(forget), "retain": cells(0.9)}, "task_aggregate": 0.8,
            "mia": {"auc": 0.6, "score": 0.8}, "utility": {"name": "world_facts", "value": 0.7}, "final": final}


def make_store(out: Path, finals=FINALS, data_sha="d" * 16, forget=0.1, methods=("fo_graddiff",)) -> Path:
    """A run store: `target` plus each of `methods` with one seed per entry of `finals`."""
    runs = {("target", None): metrics(0.4, forget=1.0)}
    runs.update({(method, seed): metrics(final, forget) for method in methods for seed, final in enumerate(finals)})
    for (method, seed), values in runs.items():
        folder = out / method / ("" if seed is None else f"seed{seed}")
        config = {"method": method, "seed": seed, "data": {"sha256": data_sha}, "model": {"sha256": "m" * 16}}
        write(folder / "config.json", {"hash": "h" * 16, "config": config})
        write(folder / "metrics.json", values)
        write(folder / "status.json", {"status": "ok", "method": method, "seed": seed, "error": None})
    return out

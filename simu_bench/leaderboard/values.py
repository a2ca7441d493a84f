"""The numbers of one run as the leaderboard, plots, trajectories, tuning and the console read them.

`run_values` flattens a metrics JSON (the schema of metrics.json) into the leaderboard's keys:
``final``, ``task_aggregate``, ``mia_score``, ``utility``, the 12 components
``SPLIT/TASK/KIND``, the per-split means ``SPLIT/KIND`` (the unweighted mean over the three
tasks) and the official ``overall/SPLIT/KIND``. `split_score` is the one forget or retain score
of a run: the mean of the split's raw components that the run has (6 when all are measured).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from simu_bench.data.lume import KINDS, SPLITS, TASKS
from simu_bench.store.runs import StoredRun, read_relearn

REFERENCE_LABEL = "target (before unlearning)"


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


def split_score(metrics: dict, split: str) -> float | None:
    """The `split` ("forget" or "retain") score of a metrics JSON: the mean of its raw components
    (regurgitation and knowledge of each task) that are measured; None when none is.

    E.g. forget components 0.2, 0.4 (Task1), 0.6, None (Task2), 0.1, 0.5 (Task3) give
    (0.2 + 0.4 + 0.6 + 0.1 + 0.5) / 5 = 0.36; forget is lower-is-better, retain higher-is-better.
    """
    components = metrics.get("components", {}).get(split, {})
    return _mean([components.get(task, {}).get(kind) for task in TASKS for kind in KINDS])


def split_scores(metrics: dict) -> dict[str, float | None]:
    """{"forget": ..., "retain": ...} of a metrics JSON (`split_score`)."""
    return {split: split_score(metrics, split) for split in SPLITS}


# Shown only when some run has their numbers (stores made before them keep their tables), each
# after the column named here: the lowest MIA score over the attacks of `mia_attacks`, and the
# forget score of the held-out documents after the relearning attack (`run --relearn STEPS`).
ATTACK_COLUMNS = {
    Column("mia_worst_score", "worst-case MIA score", True): "mia_score",
    Column("relearn_forget", "forget after relearning", False): "forget/knowledge",
}


def attack_values(run: StoredRun) -> dict[str, float | None]:
    """The ATTACK_COLUMNS of one finished run (None where it has no such number)."""
    attacks = (run.metrics or {}).get("mia_attacks") or {}
    relearn = read_relearn(run.path) or {}
    scores = [attack.get("score") for attack in attacks.values() if attack.get("score") is not None]
    return {"mia_worst_score": min(scores, default=None), "relearn_forget": relearn.get("forget_after")}

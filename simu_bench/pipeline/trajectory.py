"""Trajectories: evaluate at chosen steps during unlearning (`simu-bench run --eval-every K | --eval-at log`).

    simu-bench run --methods all --eval-every 5                  # every point on the whole data
    simu-bench run --methods all --eval-every 5 --eval-rows 32   # intermediate points on 32 + 32 rows
    simu-bench run --methods all --eval-at log --eval-rows 32    # steps 1, 2, 4, 8, ... and the end
    simu-bench run --methods simu --eval-at log --stop-at-forget 0.2   # stop once forget <= 0.2

A run made with `--eval-every K` stores `trajectory.jsonl` next to its metrics.json: one row per
evaluation, in order of `step` (optimizer steps done): 0 (the model before the first step), K,
2K, ... (with `--eval-at log`: 1, 2, 4, 8, ...; with both: the union) and last the run's own
final evaluation (step = steps done; the numbers of metrics.json, not a second evaluation). With
`train.stop_at_forget L` the run ends at the first point whose forget score is <= L (that point
is then followed by the run's final evaluation at the same step). Each row:

    {"step": 10, "forget": 0.41, "retain": 0.93, "utility": 0.83, "mia": 0.52, "task_aggregate": 0.62,
     "final": 0.66, "seconds": 1.9, "rows": "all"}

`forget`/`retain` are the mean of the split's 6 raw components (regurgitation and knowledge of
each task), as `tradeoff.png` computes them; `utility`, `mia` (the MIA score), `final` are null
where the evaluation has none. `rows` is "all", or N for a point measured on the `--eval-rows N`
subset: N forget and N retain rows, spread evenly over the (task, kind) cells and drawn with a
fixed seed, so every run and method is measured on the same rows. N is what was measured: a split
with fewer rows than asked gives all of them, and N is then the larger split's size. A subset point keeps the MIA
documents and the data folder's world facts whole and leaves out `--utility-tasks` (utility null
there on real LUME, which has no world facts). The final point is always the whole evaluation.

Evaluation runs in place on the training model. `evaluate` leaves the random state and the
train/eval mode as it found them and does not touch `requires_grad`; the callback restores
both anyway, so a run with a trajectory trains exactly as one without.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import replace
from typing import Callable

from simu_bench.leaderboard.values import run_values, split_score

# The file and its reader sit with the run store, where the leaderboard reads them too.
from simu_bench.store.runs import TRAJECTORY_FILE as FILE  # noqa: F401
from simu_bench.store.runs import read_trajectory  # noqa: F401

SUBSET_SEED = 0  # one subset for every run: points of different methods and seeds are paired

log = logging.getLogger("simu_bench.run")


def point(step: int, metrics: dict, seconds: float, rows: int | str = "all") -> dict:
    """One trajectory row from a metrics JSON (the schema of metrics.json)."""
    values = run_values(metrics)
    return {
        "step": step, "forget": split_score(metrics, "forget"), "retain": split_score(metrics, "retain"),
        "utility": values["utility"], "mia": values["mia_score"], "task_aggregate": values["task_aggregate"],
        "final": values["final"], "seconds": round(seconds, 3), "rows": rows,
    }


def subset(data, rows: int, seed: int = SUBSET_SEED):
    """`data` with at most `rows` forget and `rows` retain rows, dealt round-robin from the
    (task, kind) cells after a seeded shuffle of each, so every cell is kept while rows >= 6."""
    def pick(examples: tuple) -> tuple:
        if len(examples) <= rows:
            return examples
        cells: dict[tuple[str, str], list] = {}
        for example in examples:
            cells.setdefault((example.task, example.kind), []).append(example)
        rng = random.Random(seed)
        queues = [rng.sample(cell, len(cell)) for _, cell in sorted(cells.items())]
        chosen: set[str] = set()
        while len(chosen) < rows:
            for queue in queues:
                if queue and len(chosen) < rows:
                    chosen.add(queue.pop(0).id)
        return tuple(e for e in examples if e.id in chosen)  # in the data's order

    return replace(data, forget=pick(data.forget), retain=pick(data.retain))


def measured_rows(rows) -> int:
    """N of a subset's points as measured (`subset`): the rows per split, at most what was asked."""
    return max(len(rows.forget), len(rows.retain))


def due(step: int, every: int | None, log: bool) -> bool:
    """Whether `step` (optimizer steps done, >= 1) is an evaluation point: a multiple of `every`,
    or with `log` a power of two (1, 2, 4, 8, ...: dense early, where a high learning rate does its work)."""
    return bool(every and step % every == 0) or (log and step & (step - 1) == 0)


class Trajectory:
    """A loop callback (`loop.run(..., callbacks=[trajectory])`) that evaluates at chosen steps.

    Args:
        every: optimizer steps between evaluations (K >= 1), or None.
        measure: `measure(model, tokenizer) -> metrics dict` (the metrics.json schema); called
            at step 0 and at every due step (`due`) below the run's last step.
        rows: what `measure` evaluates on, recorded in each point: "all" or the subset size N.
        log: also evaluate at steps 1, 2, 4, 8, ... (`--eval-at log`).
        stop_at_forget: end the run at the first point whose forget score is <= this level
            (`train.stop_at_forget`); `stopped_at` then holds that point's step.

    `points` holds the rows so far; `finish` appends the run's final evaluation.
    """

    def __init__(self, every: int | None, measure: Callable[..., dict], rows: int | str = "all", *,
                 log: bool = False, stop_at_forget: float | None = None):
        self.every, self.measure, self.rows, self.log = every, measure, rows, log
        self.stop_at_forget = stop_at_forget
        self.stopped_at: int | None = None
        self.points: list[dict] = []

    @property
    def seconds(self) -> float:
        """Time spent in intermediate evaluations (taken out of the unlearning time)."""
        return sum(p["seconds"] for p in self.points)

    def on_train_start(self, state) -> None:
        self._evaluate(state)

    def after_step(self, state) -> None:
        # The last step's point is the run's final evaluation: not measured twice.
        if due(state.step, self.every, self.log) and state.step < state.total_steps:
            self._evaluate(state)

    def _evaluate(self, state) -> None:
        model = state.model
        training, flags = model.training, [p.requires_grad for p in model.parameters()]
        started = time.perf_counter()
        try:
            metrics = self.measure(model, state.tokenizer)
        finally:
            model.train(training)
            for p, flag in zip(model.parameters(), flags):
                p.requires_grad_(flag)
        self.points.append(point(state.step, metrics, time.perf_counter() - started, self.rows))
        last = self.points[-1]
        log.info("trajectory step %d: forget %s, retain %s (%.1f s)", last["step"], _num(last["forget"]),
                 _num(last["retain"]), last["seconds"])
        if self.stop_at_forget is not None and last["forget"] is not None and last["forget"] <= self.stop_at_forget:
            self.stopped_at, state.stop = state.step, True
            log.info("forget %.3f <= %g at step %d: stopping", last["forget"], self.stop_at_forget, state.step)

    def finish(self, step: int, metrics: dict, seconds: float) -> list[dict]:
        """Append the run's final evaluation (whole data) as the point at `step`; return all points."""
        self.points = [p for p in self.points if p["step"] != step]
        self.points.append(point(step, metrics, seconds, "all"))
        return self.points

    def stop_record(self, steps: int) -> dict | None:
        """unlearn.json's `stop_at_forget` entry: the level, whether a point reached it, and the step
        the run ended at ("not reached" is recorded as such, never imputed)."""
        if self.stop_at_forget is None:
            return None
        return {"level": self.stop_at_forget, "reached": self.stopped_at is not None, "step": steps}


def _num(value) -> str:
    return "—" if value is None else f"{value:.3f}"

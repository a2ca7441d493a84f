"""Checkpoints as candidates: what a trial offers at a forgetting level.

A trial is one setting run on every dev seed with evaluation points (`--eval-at log`, see
`simu_bench.pipeline.trajectory`); each point is a candidate (setting, step). At level L a trial's
value is its best point:

- the points are averaged over the dev seeds step by step (a step counts only when every seed has
  a point there: a seed that diverged or stopped earlier removes the later steps);
- a point is eligible when its dev-mean forget score is <= L and its dev-mean utility passes the
  utility floor (`simu_bench.leaderboard.floor`; a point without a utility number is not judged);
- among the eligible points the highest dev-mean retain wins; ties go to the higher utility, then
  to the earlier step.

So a path that dips and recovers (retain 0.2 at step 15, 0.94 at the end, both below L) is judged
by its best point, not by its first crossing. `simu-bench frontier` and `simu-bench tune --rule
retain_at_forget` both use `best_point`.
"""

from __future__ import annotations

import statistics

from simu_bench.leaderboard.floor import UtilityFloor

MEASURES = ("forget", "retain", "utility", "mia", "final")


def dev_mean_points(trajectories: list[list[dict]]) -> list[dict]:
    """One point per step that every trajectory has: each measure's mean over the seeds (None when
    a seed has none), in order of step."""
    if not trajectories or any(not points for points in trajectories):
        return []
    by_seed = [{p["step"]: p for p in points} for points in trajectories]
    shared = sorted(set.intersection(*(set(steps) for steps in by_seed)))
    means = []
    for step in shared:
        row = {"step": step}
        for key in MEASURES:
            values = [seed[step].get(key) for seed in by_seed]
            row[key] = None if any(v is None for v in values) else statistics.fmean(values)
        means.append(row)
    return means


def best_point(points: list[dict], level: float, floor: UtilityFloor = UtilityFloor(0.0),
               target_utility: float | None = None) -> dict | None:
    """The eligible point with the best retain (ties: utility, then the earlier step); None when no
    point has forget <= `level` and a utility that passes `floor`."""
    eligible = [p for p in points if p["forget"] is not None and p["retain"] is not None and p["forget"] <= level
                and floor.passes(p.get("utility"), target_utility) is not False]
    if not eligible:
        return None
    return max(eligible, key=lambda p: (p["retain"], -1.0 if p.get("utility") is None else p["utility"], -p["step"]))


def trial_value(trajectories: list[list[dict]], level: float, floor: UtilityFloor = UtilityFloor(0.0),
                target_utility: float | None = None) -> dict | None:
    """`best_point` of the dev-mean points of a trial's seeds."""
    return best_point(dev_mean_points(trajectories), level, floor, target_utility)


def sampler_value(trajectories: list[list[dict]], levels: tuple[float, ...], floor: UtilityFloor,
                  target_utility: float | None) -> float:
    """What the sampler is told for a trial that serves every level at once: the mean over the
    levels of the best retain where the level is met, else minus the lowest forget among the points
    that pass the floor (so any trial that meets a level beats every trial that does not; -1 when
    no point passes the floor)."""
    points = dev_mean_points(trajectories)
    passing = [p["forget"] for p in points if p["forget"] is not None
               and floor.passes(p.get("utility"), target_utility) is not False]
    values = []
    for level in levels:
        best = best_point(points, level, floor, target_utility)
        values.append(best["retain"] if best else -(min(passing) if passing else 1.0))
    return statistics.fmean(values)

"""Methods compared at equal forgetting, each with its best setting per level: `simu-bench frontier`.

    simu-bench frontier --methods fo_graddiff,so_graddiff,simu,random_mask --levels 0.1,0.2,0.3 \\
        --trials 16 --dev-seeds 100,101 --seeds 0-19 --out frontier/

Per method, one set of trials (`--trials`, the same for every method) runs on the dev seeds with
evaluation points dense early (`--eval-at log`); the Optuna study that proposes them lives in
DIR/study/study.journal, so several processes with the same command split the trials
(`simu_bench.pipeline.study`). For each level L every trial offers its best point
(`simu_bench.pipeline.candidates`: best dev-mean retain among the points with dev-mean forget <= L
whose utility passes the floor), and the best trial's point is the method's winner at L: a
(setting, step). The report seeds then run each winner's setting for exactly that many steps
(`train.stop_at_step`: the whole run's schedule, stopped there) and are evaluated in full, in
DIR/report/<method>/trial<k>-step<s>/seed<n> (levels with the same winner share the runs).
DIR/frontier.json, frontier.md and frontier.png hold the result (`simu_bench.leaderboard.frontier_report`).

DIR/frontier-plan.json records what the folder was made with (methods, levels, budgets, seeds,
floor, evaluation, Optuna version); a command that differs in any of them is refused, never mixed.
A rerun of the same command resumes: finished runs are skipped and finished trials are read back.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import optuna

from simu_bench.data.lume import load_lume
from simu_bench.errors import UserError
from simu_bench.files import atomic_write_json, read_json
from simu_bench.leaderboard.frontier_report import build_report, write_reports
from simu_bench.pipeline import candidates, study, workers
from simu_bench.pipeline.frontier_plan import MANIFEST, FrontierPlan
from simu_bench.pipeline.plan import TunePlan
from simu_bench.pipeline.resolve import prepare_inputs
from simu_bench.pipeline.steps import torch_settings
from simu_bench.pipeline.trajectory import point
from simu_bench.pipeline.trial_runs import execute_runs, reference_utility, trial_runs
from simu_bench.pipeline.tune import STARTUP_TRIALS, check_tune, distributions, rounded
from simu_bench.store.environment import environment
from simu_bench.store.runs import Run, read_trajectory


def check_manifest(fp: FrontierPlan) -> None:
    """Refuse a folder made with another command (one line naming the first difference)."""
    differ = study.differences(fp.out / MANIFEST, fp.manifest())
    if differ:
        raise UserError(f"{fp.out} is a frontier made with {'; '.join(differ)}: a frontier folder holds one set of "
                        "methods, levels and budgets, never a mix; rerun with its arguments, or use another --out")


def check_frontier(fp: FrontierPlan) -> tuple[dict, dict]:
    """Every check before anything is written; each method's raw YAML and its search space."""

    overlap = sorted(set(fp.run.seeds) & set(fp.report_seeds))
    if overlap:
        raise UserError(f"--dev-seeds overlaps --seeds at {', '.join(map(str, overlap))}: choosing on a reported seed "
                        "biases the report; choose dev seeds outside the report seeds, e.g. 100,101")
    if not (fp.run.eval_at or fp.run.eval_every):
        raise UserError("frontier needs evaluation points: give --eval-at log or --eval-every K")
    raws, spaces = check_tune(TunePlan(run=fp.run))
    check_manifest(fp)
    return raws, spaces


def trial_folder(fp: FrontierPlan, method: str, number: int) -> Path:
    return fp.run.out / method / f"trial{number}"


def trial_work(fp: FrontierPlan, method: str, raw: dict, space: dict, resolved, data, env, target, say):
    """The method's shared study and the arguments `study.work_through`/`study.finish` take."""
    shared = study.open_study(fp.out / "study", method, fp.sampler_seed, STARTUP_TRIALS, fp.pruner)

    def run_taken(taken) -> None:
        run_one_trial(fp, method, raw, taken, shared, resolved, data, env, target, say)

    return shared, fp.out / "study", method, fp.trials, distributions(space), rounded, run_taken


def run_one_trial(fp: FrontierPlan, method: str, raw: dict, taken, shared, resolved, data, env, target, say) -> None:
    """Run a trial's dev seeds and tell the study its value (or that the pruner stopped it)."""

    folder = trial_folder(fp, method, taken.number)
    plan = dataclasses.replace(fp.run, fast_decode=True)  # trials are judged by scores, which it leaves unchanged
    runs, _, trial_resolved = trial_runs(plan, method, folder, raw, taken.params, resolved)
    atomic_write_json(folder / "trial.json", {"method": method, "trial": taken.number, "params": taken.params})
    pruned = []

    def after(run: Run) -> bool:  # successive halving on the first dev seed's points
        if fp.pruner == "none" or run is not runs[0]:
            return False
        points = read_trajectory(run.path) or []
        for i, p in enumerate(points):
            taken.trial.report(candidates.sampler_value([points[:i + 1]], fp.levels, fp.floor, target), p["step"])
        pruned.append(taken.trial.should_prune())
        return pruned[-1]

    label = f"{method} trial {taken.number} (of {fp.trials}){' resumed' if taken.resumed else ''}"
    execute_runs(plan, runs, trial_resolved, data, env, say, label,
                 ", ".join(f"{k}={v}" for k, v in taken.params.items()), after)
    if pruned and pruned[-1]:
        shared.tell(taken.number, state=optuna.trial.TrialState.PRUNED)
        say(f"{label}: pruned after seed {runs[0].seed}")
        return
    trajectories = [read_trajectory(run.path) or [] for run in runs]
    shared.tell(taken.number, candidates.sampler_value(trajectories, fp.levels, fp.floor, target))


def winners(fp: FrontierPlan, method: str, raw: dict, target) -> tuple[list[dict], dict]:
    """The method's finished trials (with their best point per level) and the winner per level."""
    shared = study.open_study(fp.out / "study", method, fp.sampler_seed, 1)
    trials = []
    for frozen in study.finished(shared):
        folder = trial_folder(fp, method, frozen.number)
        params = read_json(folder / "trial.json", expect=dict)["params"]
        pruned = frozen.state.name == "PRUNED"
        paths = [folder / f"seed{seed}" for seed in fp.run.seeds]
        trajectories = [] if pruned else [read_trajectory(path) or [] for path in paths]
        best = {f"{level:g}": None if pruned else candidates.trial_value(trajectories, level, fp.floor, target)
                for level in fp.levels}
        trials.append({"trial": frozen.number, "params": params, "state": frozen.state.name.lower(),
                       "value": frozen.value, "best": best})
    chosen = {}
    for level in fp.levels:
        key = f"{level:g}"
        offered = [t for t in trials if t["best"][key] is not None]
        if not offered:
            chosen[key] = None
            continue
        top = max(offered, key=lambda t: (t["best"][key]["retain"], _utility(t["best"][key]), -t["trial"]))
        chosen[key] = {"trial": top["trial"], "step": top["best"][key]["step"], "params": top["params"],
                       "dev": top["best"][key]}
    return trials, chosen


def _utility(point: dict) -> float:
    return -1.0 if point.get("utility") is None else point["utility"]


def report_runs(fp: FrontierPlan, method: str, raw: dict, winner: dict, resolved, data, env, say) -> list[dict]:
    """The report seeds of one winner: its setting stopped at its step, evaluated in full."""

    plan = dataclasses.replace(fp.run, seeds=fp.report_seeds, eval_at=None, eval_every=None, eval_rows=None)
    folder = fp.out / "report" / method / f"trial{winner['trial']}-step{winner['step']}"
    params = {**winner["params"], "train.stop_at_step": winner["step"]}
    runs, _, run_resolved = trial_runs(plan, method, folder, raw, params, resolved)
    execute_runs(plan, runs, run_resolved, data, env, say, f"{method} report trial {winner['trial']} step "
                 f"{winner['step']}")
    values = []
    for run in runs:
        status = (run.status() or {}).get("status", "crashed")
        row = {"seed": run.seed, "status": status}
        if status == "ok":
            row.update(point(winner["step"], read_json(run.file("metrics.json"), expect=dict), 0.0))
        values.append(row)
    return values


def run_frontier(fp: FrontierPlan, say=print) -> dict | None:
    """Trials, winners per level, report runs; write the reports; return frontier.json's content
    (None in a helper worker, which leaves the reports to the worker that started it)."""

    raws, spaces = check_frontier(fp)
    with torch_settings(fp.run):
        return _run_frontier(fp, raws, spaces, say)


def _run_frontier(fp: FrontierPlan, raws: dict, spaces: dict, say) -> dict | None:

    resolved = prepare_inputs(fp.run)
    data, env = load_lume(resolved.data_dir), environment(fp.run.device)
    fp.out.mkdir(parents=True, exist_ok=True)
    if not (fp.out / MANIFEST).exists():
        atomic_write_json(fp.out / MANIFEST, fp.manifest())
    target = reference_utility(fp.run, resolved, data, env, say)  # the utility the floor scales
    methods = {}
    work = [trial_work(fp, m, raws[m], spaces[m], resolved, data, env, target, say) for m in fp.run.methods]
    helpers = workers.start_workers(fp.run)
    study.run_studies(work, say)
    for method in fp.run.methods:  # every worker has the same winners and splits their report runs
        trials, chosen = winners(fp, method, raws[method], target)
        reports = {level: report_runs(fp, method, raws[method], winner, resolved, data, env, say)
                   for level, winner in chosen.items() if winner is not None}
        methods[method] = {"space": spaces[method], "trials": trials, "winners": chosen, "report": reports}
    if workers.is_helper():  # the reports are the first worker's, once every helper is done
        return None
    workers.wait_and_say(helpers, say)  # the report runs are done: this worker waited for those others held
    report = build_report(fp, methods, target, env)
    for path in write_reports(report, fp.out):
        say(f"wrote {path}")
    return report

"""Equal-budget tuning behind `simu-bench tune`: every method gets the same number of trials.

    simu-bench tune --methods all --trials 12 --dev-seeds 100,101 --out tune/
    simu-bench run --methods all --seeds 0,1,2 --config-dir tune/tuned --out runs/tuned

Each method's YAML declares its space in a ``search:`` block (see `simu_bench.unlearning.config`).
Per method, an Optuna study with Optuna's TPE (5 random start-up trials), seeded for each trial
from ``--sampler-seed`` and the trial's number (`study.TrialSeededTPE`), proposes the trials;
nothing is searched by hand. Trial k is an ordinary run per dev seed in
``DIR/trials/<method>/trial<k>/seed<s>/`` (the run store's layout and files, plus
``trial<k>/trial.json`` with its parameters). Floats are rounded to 4 significant digits before
they are used, so configs stay readable and the stored value is exactly the one that ran.

**A persistent, shared study.** The studies live in Optuna's journal storage, ``DIR/study/``
(`simu_bench.pipeline.study`): ``--workers N`` processes (default: one per core for the embedded
target on CPU), or several `tune` commands on one DIR, split the trials instead of repeating them;
a rerun resumes (finished trials are read back, a trial whose worker stopped is taken over, its
finished runs kept). With one worker the trials are the same on every machine; with several, a
trial's parameters depend on which results were in when it was asked, as in any parallel TPE.
``DIR/tune-plan.json`` records the rule and the runs' settings; a command that differs is refused,
never mixed. ``--trials`` may grow (the study goes on) and ``--methods`` may change.

**Objective.** Per run: ``final`` (mean of Task Aggregate, MIA score and utility), ``forget``
(mean of the 6 raw forget components, lower is better) and ``retain`` (mean of the 6 retain
components). A diverged or crashed run counts as the worst value of each (final 0, forget 1,
retain 0). A trial's values are the means over the dev seeds. A trial that finished (ok) on no
dev seed never wins, whatever the rule: when every trial diverged or crashed, the method has no
winner and no tuned config. Rules (``--rule``):

- ``final`` (default): the best mean final score.
- ``retain_at_forget``: the candidate rule of `simu_bench.pipeline.candidates` at ``--forget-level``:
  a trial's best point (its evaluation points with ``--eval-at log``, else each run's end), the
  best dev-mean retain among points with dev-mean forget <= the level; the sampler is told that
  retain, or ``-forget`` for a trial with no such point, so any trial within the level beats
  every trial outside it. A winner whose best point comes before the end is written with
  ``train.stop_at_step``. No trial within the level: no winner for that method.

The utility floor (``--utility-floor``, `simu_bench.leaderboard.floor`; the target's utility comes
from its reference run in ``DIR/trials/target``): a trial below it cannot win under either rule.

Ties go to the earlier trial. Outputs: ``DIR/tuned/<method>.yaml`` (the method's YAML with the
winner's values and the ``--set`` overrides applied, its ``search:`` moved into a ``tuned:``
provenance block), ``DIR/tune.json``, ``DIR/tune.md`` and ``DIR/fronts.png`` (forget vs retain of
every trial, the trade-off front highlighted). Dev seeds must not overlap the report seeds.
"""

from __future__ import annotations

import copy
import dataclasses
import statistics
from pathlib import Path

import optuna
import yaml
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

from simu_bench.data.lume import load_lume
from simu_bench.errors import UserError
from simu_bench.files import atomic_write_json, atomic_write_text, read_json
from simu_bench.leaderboard.plots import write_fronts
from simu_bench.leaderboard.render import tune_markdown
from simu_bench.leaderboard.values import split_scores
from simu_bench.pipeline import study, workers
from simu_bench.pipeline.candidates import trial_value
from simu_bench.pipeline.plan import TunePlan
from simu_bench.pipeline.resolve import check_inputs, overrides_for, prepare_inputs
from simu_bench.pipeline.steps import torch_settings
from simu_bench.pipeline.trajectory import point
from simu_bench.pipeline.trial_runs import execute_runs, reference_utility, trial_runs, with_params
from simu_bench.store.environment import environment
from simu_bench.store.runs import Run, read_trajectory
from simu_bench.unlearning.config_overrides import parse_override, set_path
from simu_bench.unlearning.registry import check_fit, config_path, load_config

MANIFEST = "tune-plan.json"
STARTUP_TRIALS = 5  # TPE's random trials before it models the results (Optuna's default is 10)
WORST = {"final": 0.0, "forget": 1.0, "retain": 0.0, "utility": 0.0}  # a diverged or crashed run


def check_tune(tp: TunePlan) -> tuple[dict[str, dict], dict[str, dict]]:
    """Every check before anything is written (the flags' own are in `simu_bench.pipeline.plan`);
    returns each method's raw YAML with the --set overrides applied, and its search space."""
    configs = check_inputs(tp.run)
    raws = {}
    for method in tp.run.methods:
        config = configs[method]
        if not config.search:
            raise UserError(f"{method}: {config.source} has no search: block; add one, e.g. "
                            f"search: {{optimizer.lr: {{log_uniform: [1.0e-5, 1.0e-2]}}}}")
        raw = yaml.safe_load(config_path(method).read_text(encoding="utf-8"))
        for text in overrides_for(method, tp.run.overrides, tp.run.methods):
            keys, value = parse_override(text)
            if ".".join(keys) in config.search:
                raise UserError(f"--set {text}: {'.'.join(keys)} is in {method}'s search space; leave it to the "
                                f"search, or remove it from the search: block")
            raw = set_path(raw, ".".join(keys), value)
        raws[method] = raw
    return raws, {method: configs[method].search for method in raws}


def distributions(space: dict) -> dict:
    """Optuna distributions of a checked ``search:`` block, in the block's order."""
    made = {}
    for key, spec in space.items():
        kind, values = next(iter(spec.items()))
        if kind == "choice":
            made[key] = CategoricalDistribution(values)
        elif kind == "int":
            made[key] = IntDistribution(values[0], values[1])
        else:
            made[key] = FloatDistribution(float(values[0]), float(values[1]), log=kind == "log_uniform")
    return made


def outcome(runs: list[Run]) -> dict:
    """A trial's values: per seed and the means over seeds (worst values for runs that did not finish ok)."""
    per_seed = {}
    for run in runs:
        status = (run.status() or {}).get("status", "crashed")
        values = dict(WORST, status=status)
        if status == "ok":
            metrics = read_json(run.file("metrics.json"), expect=dict)
            for key, value in {**split_scores(metrics), "final": metrics.get("final")}.items():
                values[key] = value if value is not None else WORST[key]
            values["utility"] = (metrics.get("utility") or {}).get("value")  # None: not measured, not judged
        per_seed[str(run.seed)] = values
    means = {key: None if any(v[key] is None for v in per_seed.values())
             else statistics.fmean(v[key] for v in per_seed.values()) for key in WORST}
    return {**means, "per_seed": per_seed}


def score(values: dict, rule: str, level: float, passes: bool = True) -> tuple[float, bool]:
    """(what the sampler is told, whether the trial may win); `passes`: the utility floor's verdict.
    For retain_at_forget `values` holds the trial's best point (`candidates.trial_value`) when it has one."""
    finished = any(seed["status"] == "ok" for seed in values["per_seed"].values())  # else it never wins
    if rule == "final":
        return values["final"], passes and finished
    feasible = values["forget"] <= level and passes and finished
    return (values["retain"] if feasible else -values["forget"]), feasible


def judged_values(runs: list[Run], values: dict, tp: TunePlan, target: float | None) -> tuple[dict, bool, int | None]:
    """The values a rule judges, the floor's verdict and the chosen step (None: the end). For
    retain_at_forget: the trial's best point over its evaluation points and ends (each run's end
    alone when it has no points)."""
    if tp.rule == "final":
        return values, tp.utility_floor.passes(values["utility"], target) is not False, None
    trajectories = []
    for run in runs:
        points = read_trajectory(run.path)
        if points is None and run.file("metrics.json").exists():
            steps = read_json(run.file("unlearn.json"), expect=dict).get("steps", 0)
            points = [point(steps, read_json(run.file("metrics.json"), expect=dict), 0.0)]
        trajectories.append(points or [])
    best = trial_value(trajectories, tp.forget_level, tp.utility_floor, target)
    if best is None:
        return values, False, None
    last = min(max(p["step"] for p in points) for points in trajectories)
    return {**values, "forget": best["forget"], "retain": best["retain"]}, True, (
        best["step"] if best["step"] < last else None)


def front(trials: list[dict]) -> list[int]:
    """Trials no other trial beats on both forget (lower) and retain (higher)."""
    def beaten(a: dict) -> bool:
        return any(b["forget"] <= a["forget"] and b["retain"] >= a["retain"]
                   and (b["forget"], b["retain"]) != (a["forget"], a["retain"]) for b in trials)

    return [t["trial"] for t in trials if not beaten(t)]


def tune_work(tp: TunePlan, method: str, raw: dict, space: dict, resolved, data, env, say, target):
    """The method's study in DIR/study and the arguments `study.work_through`/`study.finish` take:
    each trial taken runs its dev seeds and tells the study its value."""
    shared = study.open_study(tp.out / "study", method, tp.sampler_seed, STARTUP_TRIALS)
    plan = dataclasses.replace(tp.run, fast_decode=True)  # trials are judged by scores, which it leaves unchanged

    def run_taken(taken) -> None:
        folder = tp.run.out / method / f"trial{taken.number}"
        stored = folder / "trial.json"
        if stored.exists() and read_json(stored).get("params") != taken.params:
            raise UserError(f"{folder} holds a trial made with other parameters ({read_json(stored).get('params')} != "
                            f"{taken.params}) by another study; use another --out")
        runs, _, trial_resolved = trial_runs(plan, method, folder, raw, taken.params, resolved)
        atomic_write_json(stored, {"method": method, "trial": taken.number, "params": taken.params,
                                   "sampler_seed": tp.sampler_seed})
        shown = ", ".join(f"{key}={value}" for key, value in taken.params.items())
        label = f"{method} trial {taken.number} (of {tp.trials}){' resumed' if taken.resumed else ''}"
        execute_runs(plan, runs, trial_resolved, data, env, say, label, shown)
        values, passes, _ = judged_values(runs, outcome(runs), tp, target)
        shared.tell(taken.number, score(values, tp.rule, tp.forget_level, passes)[0])

    return shared, tp.out / "study", method, tp.trials, distributions(space), rounded, run_taken


def judge_method(tp: TunePlan, method: str, raw: dict, space: dict, target=None) -> dict:
    """The method's finished trials (the first --trials of them), read back from the run store:
    their values, the trade-off front and the winner; `target`: the target's utility, which the
    utility floor scales."""
    shared = study.open_study(tp.out / "study", method, tp.sampler_seed, STARTUP_TRIALS)
    trials = []
    for frozen in study.finished(shared)[:tp.trials]:
        folder = tp.run.out / method / f"trial{frozen.number}"
        params = read_json(folder / "trial.json", expect=dict)["params"]
        runs = [Run(folder / f"seed{seed}", method, seed) for seed in tp.run.seeds]
        values, passes, step = judged_values(runs, outcome(runs), tp, target)
        value, feasible = score(values, tp.rule, tp.forget_level, passes)
        trials.append({"trial": frozen.number, "params": params, "dir": str(folder), **values, "score": value,
                       "feasible": feasible, "step": step, "raw": with_params(raw, params)})
    feasible = [t for t in trials if t["feasible"]]
    winner = max(feasible, key=lambda t: (t["score"], -t["trial"]))["trial"] if feasible else None
    return {"space": space, "trials": trials, "front": front(trials), "winner": winner}


def rounded(params: dict) -> dict:
    """Floats to 4 significant digits, so configs stay readable and the stored value is exactly the one that ran."""
    return {key: float(f"{value:.4g}") if isinstance(value, float) else value for key, value in params.items()}


def tuned_yaml(tp: TunePlan, method: str, result: dict, command: str, date: str, target: float | None = None) -> str:
    """The winner's config as a normal method YAML with a `tuned:` provenance block."""
    best = next(t for t in result["trials"] if t["trial"] == result["winner"])
    doc = copy.deepcopy(best["raw"])
    doc.pop("search", None)
    if best.get("step") is not None:  # the winner is a checkpoint before the end: stop there
        doc.setdefault("train", {})["stop_at_step"] = best["step"]
    doc["tuned"] = {
        "command": command, "date": date, "rule": tp.rule_text(target), "trials": tp.trials, "trial": best["trial"],
        "dev_seeds": list(tp.run.seeds), "report_seeds": list(tp.report_seeds), "space": result["space"],
        "sampler": sampler_record(tp), "params": best["params"], "overrides": list(tp.run.overrides),
        "dev_scores": {key: best[key] for key in ("final", "forget", "retain", "per_seed")},
    }
    head = (f"# {method} as tuned by `simu-bench tune` (trial {best['trial']} of {tp.trials}; "
            f"rule: {tp.rule_text(target)}).\n"
            f"# Run it:  simu-bench run --methods {method} --config-dir {tp.out / 'tuned'} "
            f"--seeds {','.join(map(str, tp.report_seeds))}\n")
    return head + yaml.safe_dump(doc, sort_keys=False, allow_unicode=True)


def sampler_record(tp: TunePlan) -> dict:
    return {"name": "optuna.samplers.TPESampler, seeded per trial (simu_bench.pipeline.study.TrialSeededTPE)",
            "seed": tp.sampler_seed, "n_startup_trials": STARTUP_TRIALS, "optuna": optuna.__version__}


def check_manifest(tp: TunePlan) -> None:
    """Refuse a command that differs from what DIR's studies were made with (DIR/tune-plan.json):
    its trials would be judged by another rule or run other runs. --trials and --methods may
    change (a study grows, or another method gets its own)."""
    differ = study.differences(tp.out / MANIFEST, manifest(tp))
    if differ:
        raise UserError(f"{tp.out} holds studies made with {'; '.join(differ)}: one tuning folder holds one rule "
                        "and one set of run settings, never a mix; rerun with its arguments, or use another --out")


def manifest(tp: TunePlan) -> dict:
    run = tp.run
    return {"rule": tp.rule, "forget_level": tp.forget_level if tp.rule == "retain_at_forget" else None,
            "utility_floor": tp.utility_floor.spec(), "sampler_seed": tp.sampler_seed, "dev_seeds": list(run.seeds),
            "overrides": list(run.overrides), "eval_at": run.eval_at, "eval_every": run.eval_every,
            "eval_rows": run.eval_rows, "max_new_tokens": run.max_new_tokens, "size": run.size,
            "data": None if run.data is None else str(run.data), "model": run.model,
            "utility_tasks": list(run.utility_tasks or []), "optuna": optuna.__version__}


def run_tune(tp: TunePlan, say=print) -> dict | None:
    """Tune every method of the plan; write tuned configs and the reports; return tune.json's
    content (None in a helper worker, which leaves the reports to the worker that started it)."""
    raws, spaces = check_tune(tp)
    check_manifest(tp)
    with torch_settings(tp.run):
        resolved = prepare_inputs(tp.run)
        check_fit([load_config(raw) for raw in raws.values()], resolved.model)  # before any trial is written
        data, env = load_lume(resolved.data_dir), environment(tp.run.device)
        target = None if tp.utility_floor.off else reference_utility(tp.run, resolved, data, env, say)
        if not (tp.out / MANIFEST).exists():
            atomic_write_json(tp.out / MANIFEST, manifest(tp))
        work = [tune_work(tp, m, raws[m], spaces[m], resolved, data, env, say, target) for m in tp.run.methods]
        helpers = workers.start_workers(tp.run)
        study.run_studies(work, say)
        if workers.is_helper():  # the worker that started this one writes the reports
            return None
        workers.wait_and_say(helpers, say)
        results = {m: judge_method(tp, m, raws[m], spaces[m], target) for m in tp.run.methods}
    for method, result in results.items():
        if result["winner"] is not None:
            path = tp.out / "tuned" / f"{method}.yaml"
            atomic_write_text(path, tuned_yaml(tp, method, result, tp.run.command, env["date"], target))
            result["tuned_config"] = str(path)
    report = {
        "command": tp.run.command, "date": env["date"], "rule": {"name": tp.rule, "text": tp.rule_text(target),
        "forget_level": tp.forget_level if tp.rule == "retain_at_forget" else None,
        "utility_floor": tp.utility_floor.to_dict(target)}, "sampler": sampler_record(tp),
        "trials": tp.trials, "dev_seeds": list(tp.run.seeds), "report_seeds": list(tp.report_seeds),
        "overrides": list(tp.run.overrides),
        "methods": {m: {**r, "trials": [{k: v for k, v in t.items() if k != "raw"} for t in r["trials"]]}
                    for m, r in results.items()},
    }
    for path in write_reports(report, tp.out):
        say(f"wrote {path}")
    return report


# -- reports ---------------------------------------------------------------------------------


def write_reports(report: dict, out: Path) -> list[Path]:
    """tune.json, tune.md and fronts.png in `out`."""
    atomic_write_json(out / "tune.json", report)
    atomic_write_text(out / "tune.md", tune_markdown(report))
    return [out / "tune.json", out / "tune.md", write_fronts(report, out / "fronts.png")]

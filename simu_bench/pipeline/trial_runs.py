"""A trial's runs, shared by `simu-bench tune` and `simu-bench frontier`: one ordinary run per dev
seed in the trial's folder (the run store's layout and files), each done under its claim so that
several worker processes split them, and the target's reference run whose utility the floor scales.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

from simu_bench.files import read_json
from simu_bench.pipeline.execute import execute
from simu_bench.pipeline.plan import Plan
from simu_bench.pipeline.resolve import run_config
from simu_bench.pipeline.steps import free_memory
from simu_bench.store import claims
from simu_bench.store.runs import REFERENCE, Run
from simu_bench.unlearning.config_overrides import set_path
from simu_bench.unlearning.registry import load_config


def with_params(raw: dict, params: dict) -> dict:
    """A method's raw YAML with a trial's parameters set."""
    for key, value in params.items():
        raw = set_path(raw, key, value)
    return raw


def trial_runs(plan: Plan, method: str, folder: Path, raw: dict, params: dict, resolved) -> tuple:
    """The runs of one trial (one per seed of `plan`), checked against their folders, with the
    trial's raw YAML and its copy of `resolved`: (runs, raw, resolved); nothing written yet."""
    trial_raw = with_params(raw, params)
    config = load_config(trial_raw)
    runs = [Run(folder / f"seed{seed}", method, seed) for seed in plan.seeds]
    configs = {(method, run.seed): run_config(plan, resolved, method, run.seed, config) for run in runs}
    for run in runs:
        run.check_config(configs[(method, run.seed)])
    trial_resolved = dataclasses.replace(resolved, configs=configs, unlearn_configs={method: config}, timings={})
    return runs, trial_raw, trial_resolved


def execute_runs(plan: Plan, runs: list[Run], resolved, data, env, say, label: str, detail: str = "",
                 after=None) -> None:
    """Do the runs not done yet (`label` names them in the log lines): first those no other worker
    holds, then, waiting, the others. `after(run)` is called after each run and may return True to
    stop (a pruned trial)."""
    def do(run: Run) -> None:
        say(f"{label} seed {run.seed}: {detail}")
        execute(plan, resolved, run, data, env, say)
        free_memory()

    deferred = []
    for run in runs:
        if run.is_done():
            say(f"{label} seed {run.seed}: already done ({run.status()['status']}), skipped")
        else:
            claim = claims.claim(claims.claim_path(run.path.parent, run.method, run.seed), f"{label} seed {run.seed}")
            if not claim.held:  # another worker runs it: come back to it after the others
                deferred.append(run)
                continue
            with claim:
                if not run.is_done():
                    do(run)
        if after is not None and after(run):
            return
    for run in deferred:
        run_claimed(run, lambda run=run: do(run), f"{label} seed {run.seed}", say)
        if after is not None and after(run):
            return


def run_claimed(run: Run, do, label: str, say, wait_s: float = 2.0) -> None:
    """`do()` the run under its claim (`simu_bench.store.claims`), unless it is done; while another
    worker (`tune`/`frontier` processes sharing an --out) holds it, wait for it (saying so once),
    and take it over when that worker stops without finishing."""
    said = False
    while not run.is_done():
        claim = claims.claim(claims.claim_path(run.path.parent, run.method, run.seed), label)
        if claim.held:
            with claim:
                if not run.is_done():
                    do()
            return
        if not said:
            say(f"{label}: another worker runs it ({claim.owner}); waiting")
            said = True
        time.sleep(wait_s)


def reference_utility(plan: Plan, resolved, data, env, say) -> float | None:
    """The target's utility (its reference run in `plan.out`, evaluated once)."""
    run = Run.at(plan.out, REFERENCE, None)
    config = run_config(plan, resolved, REFERENCE, None, None)
    run.check_config(config)
    reference = dataclasses.replace(resolved, configs={(REFERENCE, None): config})
    run_claimed(run, lambda: execute(plan, reference, run, data, env, say), "the target's reference run", say)
    metrics = read_json(run.file("metrics.json"), expect=dict) if run.is_done() else {}
    return (metrics.get("utility") or {}).get("value")

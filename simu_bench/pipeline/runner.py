"""The benchmark orchestrator behind `simu-bench run`: unlearn, evaluate and store every run.

    simu-bench run --methods all --seeds 0,1,2 --out runs/
    torchrun --nproc_per_node=2 -m simu_bench run --methods simu --device cuda

Order of work: check every input (methods, overrides, paths, output folder; `simu_bench.pipeline.resolve`)
-> prepare data and target (cached) -> resolve each run's config and refuse a run directory made
with another config -> evaluate the target once (the reference row) -> for each method and seed:
a fresh copy of the target, unlearn (with `--eval-every K`, evaluating every K steps:
`simu_bench.pipeline.trajectory`), evaluate, store (`simu_bench.pipeline.execute`) -> the
leaderboard. Nothing is written into the output folder before every check has passed. A method
that diverges or crashes is recorded with its error and the others go on; a rerun skips finished
runs (see `simu_bench.store.runs`). Several workers with the same `--out` split the runs: each
run is claimed with a file lock before it starts and skipped by the others (`simu_bench.store.claims`).

One loop serves one process and the N processes of `torchrun`, as nanoGPT's train.py does: the
`main_process` (rank 0) decides, evaluates and writes; the other ranks follow each run's
unlearning (`simu_bench.pipeline.multiprocess`). In one process every rank guard is true.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from tqdm.auto import tqdm

from simu_bench.data.lume import load_lume
from simu_bench.errors import UserError
from simu_bench.evaluation.relearn import split_documents
from simu_bench.files import atomic_write_json, atomic_write_text, remove_temp_files
from simu_bench.leaderboard.board import build
from simu_bench.leaderboard.floor import UtilityFloor
from simu_bench.leaderboard.plots import write_plots
from simu_bench.leaderboard.render import render
from simu_bench.pipeline import multiprocess, workers
from simu_bench.pipeline.execute import execute
from simu_bench.pipeline.plan import Plan, Resolved
from simu_bench.pipeline.resolve import check_inputs, plan_runs, prepare_inputs
from simu_bench.pipeline.steps import free_memory, torch_settings
from simu_bench.store import claims
from simu_bench.store.environment import environment
from simu_bench.store.runs import REFERENCE, Run
from simu_bench.unlearning import distributed


def run_benchmark(plan: Plan, say=print) -> dict[str, int]:
    """Run the whole plan; return how many runs ended in each status (skipped included); {} on a
    process of torchrun other than rank 0."""
    if distributed.launched():  # under torchrun: join first, so that every rank refuses together
        plan = dataclasses.replace(plan, device=distributed.init_from_env(plan.device))  # cuda:LOCAL_RANK
    count = plan.workers or (1 if distributed.launched() or workers.is_helper() else workers.default_workers(plan))
    configs = distributed.together(lambda: _checked(plan, count))
    if count > 1:
        plan = dataclasses.replace(plan, threads=plan.threads or 1)
    with torch_settings(plan):
        if count == 1:
            return run_all(plan, configs, say)
        prepare_inputs(plan)  # the embedded target is built once, before the helpers read it
        helpers = workers.start_helpers(plan, count - 1)
        say(f"started {len(helpers)} helper worker{'s' if len(helpers) > 1 else ''} "
            f"(pid {', '.join(str(h.pid) for h in helpers)}) on {plan.out}")
        return run_all(plan, configs, say, helpers=helpers)


def _checked(plan: Plan, count: int) -> dict:
    """Every check of the plan (on each rank under torchrun); the methods' configs."""
    configs = check_inputs(plan)
    if distributed.launched():  # each run across its processes
        if count > 1:
            raise UserError(f"--workers {count} under torchrun: each run already spans the torchrun processes; "
                            f"drop --workers")
        multiprocess.check(plan, configs)
    return configs


def run_all(plan: Plan, configs: dict, say, helpers=()) -> dict[str, int]:
    """Every run of the plan, then the leaderboard; `configs` are the methods' checked configs.

    ``helpers``: the other workers' processes (`simu_bench.pipeline.workers`), waited for before
    the leaderboard; the counts then say how each run they claimed ended.
    """
    rank, size = distributed.world()
    main_process = rank == 0  # decides, evaluates and writes; the other ranks follow
    say = say if main_process else _silent  # one voice: rank 0's
    resolved = _prepare(plan, main_process)
    data = load_lume(resolved.data_dir)
    if plan.relearn:  # a forget set of one document has none left to measure: refused before any write
        split_documents(data.forget, plan.relearn_fraction)
    runs = distributed.together(lambda: plan_runs(plan, resolved, configs))  # checks against the model and store
    env = {**environment(plan.device), **({"world_size": size} if size > 1 else {})}
    distributed.together(lambda: _open_store(plan, env) if main_process else None)  # e.g. .claims is a file
    outcomes: list[tuple[Run, str]] = []
    # The outer bar counts runs and names the stage in progress; prepare and unlearn show their own bars.
    bar = tqdm(total=len(runs), unit="run", disable=plan.quiet or not main_process, dynamic_ncols=True)
    write = say if bar.disable else bar.write
    try:
        for run in runs:
            status = _one_run(plan, resolved, run, data, env, write, bar, main_process)
            outcomes.append((run, status))
            bar.update(1)
        bar.set_description_str("done")
    finally:
        bar.close()
    if helpers:
        outcomes = _after_helpers(outcomes, workers.wait(helpers), say)
    counts: dict[str, int] = {}
    for _, status in outcomes:
        counts[status] = counts.get(status, 0) + 1
    if main_process and not workers.is_helper():  # helpers leave it to the worker that started them
        # one worker at a time, so that the last one to finish writes what every worker finished
        with claims.leaderboard_lock(plan.out):
            written = write_leaderboard(Path(plan.out), plan.command, plan.utility_floor)
        for path in written:
            say(f"wrote {path}")
    distributed.barrier()
    return counts if main_process else {}


def _after_helpers(outcomes: list[tuple[Run, str]], codes: list[int], say) -> list[tuple[Run, str]]:
    """``outcomes`` with each run a helper claimed replaced by how it ended in the store."""
    for code in codes:
        if code not in (0, 1):  # 1: a run crashed, which its status.json records
            say(f"a worker process stopped with exit status {code}; run the same command again to finish its runs")

    def ended(run: Run, status: str) -> str:
        if status != "claimed":
            return status
        return run.status()["status"] if run.is_done() else "unfinished"

    return [(run, ended(run, status)) for run, status in outcomes]


def _prepare(plan: Plan, main_process: bool) -> Resolved:
    """Rank 0 builds the embedded target (if needed) before the other ranks read the cache."""
    resolved = prepare_inputs(plan) if main_process else None
    distributed.barrier()
    return resolved if resolved is not None else prepare_inputs(plan)


def _open_store(plan: Plan, env: dict) -> None:
    """The output folder with its run.json, cleared of writes a kill cut short."""
    Path(plan.out).mkdir(parents=True, exist_ok=True)
    with claims.leaderboard_lock(plan.out):  # every file at the top of the store is written under this lock
        remove_temp_files(plan.out)  # run folders clean their own (`Run.begin`)
        remove_temp_files(Path(plan.out) / claims.FOLDER, min_age_s=60)  # claims are written without this lock
        if not workers.is_helper():  # a helper's command is the user's plus --workers 1: the user's is recorded
            atomic_write_json(Path(plan.out) / "run.json", {"command": plan.command, "date": env["date"]})


def _one_run(plan: Plan, resolved: Resolved, run: Run, data, env: dict, write, bar, main_process: bool) -> str:
    """One run on every rank: rank 0 decides and tells the others; its status (rank 0's)."""
    name = run.method if run.seed is None else f"{run.method} seed {run.seed}"
    action, claim = _decide(plan, run, name, write) if main_process else (None, None)
    action = distributed.broadcast(action)
    if action != "run":
        return action
    try:
        if not main_process:
            if run.method != REFERENCE:
                multiprocess.follow(plan, resolved, run, data)
            return action
        with claim:
            return execute(plan, resolved, run, data, env, write,
                           show=lambda stage: bar.set_description_str(f"{name}: {stage}"))
    finally:
        free_memory()  # the run's model, optimizer state and mask are gone now


def _decide(plan: Plan, run: Run, name: str, say):
    """("run", its claim), or ("skipped" | "claimed", None) with the line that says why.

    Several workers with the same `--out` split the runs this way; a run another worker
    finished between the first check and the claim is "skipped".
    """
    if run.is_done():
        say(f"{name}: already done ({run.status()['status']}), skipped")
        return "skipped", None
    claim = claims.claim(claims.claim_path(plan.out, run.method, run.seed), f"{name} in {plan.out}")
    if not claim.held:
        say(f"{name}: claimed by another worker ({claim.owner}), skipped")
        return "claimed", None
    if run.is_done():
        claim.release()
        say(f"{name}: already done ({run.status()['status']}) by another worker, skipped")
        return "skipped", None
    if claim.stale:
        say(f"{name}: the worker that claimed it ({claim.stale}) stopped before finishing; redoing it")
    return "run", claim


def write_leaderboard(out: Path, command: str, floor: UtilityFloor = UtilityFloor()) -> list[Path]:
    """The leaderboard of `out` (runs below the utility `floor` shown but not ranked) as
    leaderboard.md and leaderboard.json, plus the two plots."""
    board = build(out, floor)
    remove_temp_files(out)  # of a leaderboard write cut short by a kill (the caller holds the leaderboard lock)
    written = []
    for fmt in ("md", "json"):
        path = out / f"leaderboard.{fmt}"
        atomic_write_text(path, render(board, fmt, [command] if command else []))
        written.append(path)
    return written + write_plots(board, out)


def _silent(*args, **kwargs) -> None:
    pass

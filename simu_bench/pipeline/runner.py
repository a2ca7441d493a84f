"""The benchmark orchestrator behind `simu-bench run`: unlearn, evaluate and store every run.

    simu-bench run --methods all --seeds 0,1,2 --out runs/

Order of work: check every input (methods, overrides, paths, output folder; `simu_bench.pipeline.plan`)
-> prepare data and target (cached) -> resolve each run's config and refuse a run directory made
with another config -> evaluate the target once (the reference row) -> for each method and seed:
a fresh copy of the target, unlearn (with `--eval-every K`, evaluating every K steps:
`simu_bench.pipeline.trajectory`), evaluate, store -> the leaderboard. Nothing is written into
the output folder before every check has passed. A method that diverges or crashes is recorded
with its error and the others go on; a rerun skips finished runs (see `simu_bench.store.runs`).
Several workers with the same `--out` split the runs: each run is claimed with a file lock
before it starts and skipped by the others (`simu_bench.store.claims`).
"""

from __future__ import annotations

import logging
import random
import sys
import time
import traceback
from contextlib import contextmanager
from pathlib import Path

from tqdm.auto import tqdm

from simu_bench.errors import UserError
from simu_bench.files import WriteError, remove_temp_files
from simu_bench.pipeline.plan import Plan, Resolved, check_inputs, plan_runs, prepare_inputs
from simu_bench.pipeline.trajectory import FILE as TRAJECTORY
from simu_bench.pipeline.trajectory import Trajectory, subset
from simu_bench.store.runs import REFERENCE, RELEARN_FILE, Run

log = logging.getLogger("simu_bench.run")


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class _LogFile(logging.FileHandler):
    """The run's log.txt. A record it cannot write (a full disk) is dropped: logging's default
    prints a traceback on stderr, and the failure that matters surfaces as a `WriteError`."""

    def handleError(self, record) -> None:
        pass


@contextmanager
def run_log(run: Run):
    """Send the package's log records (and warnings) to the run's log.txt while it runs."""
    handler = _LogFile(run.file("log.txt"), encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger("simu_bench"), logging.getLogger("py.warnings")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    logging.captureWarnings(True)
    try:
        yield
    finally:
        logging.captureWarnings(False)
        for logger, level in zip(loggers, levels):
            logger.removeHandler(handler)
            logger.setLevel(level)
        handler.close()


def evaluate_model(model, tokenizer, data, plan: Plan, utility_tasks: bool = True, reference_nll=None,
                   early_stop: bool = False):
    """`evaluate` with the plan's settings; `utility_tasks=False` leaves `--utility-tasks` out;
    `reference_nll` (the target's document NLLs) adds the `reference` MIA attack; question rows
    stop once decided with `early_stop` (evaluations whose text is not kept) or `plan.fast_decode`."""
    from simu_bench.evaluation.evaluator import evaluate

    utility = list(plan.utility_tasks) if plan.utility_tasks and utility_tasks else None
    from simu_bench.evaluation.backends import Backend

    return evaluate(model, tokenizer, data, batch_size=plan.eval_batch_size, max_new_tokens=plan.max_new_tokens,
                    backend=Backend(plan.backend, plan.strict), early_stop=early_stop or plan.fast_decode,
                    utility_tasks=utility, reference_nll=reference_nll)


def relearn_run(model, tokenizer, data, plan: Plan, evaluation) -> dict:
    """The relearning attack on a run's unlearned model, in place: everything stored from that
    model (metrics.json, generations.jsonl, trajectory.jsonl) is written before this is called."""
    from simu_bench.evaluation.relearn import relearn

    return relearn(model, tokenizer, data, plan.relearn,
                   lambda m, t, d: evaluate_model(m, t, d, plan, utility_tasks=False),
                   fraction=plan.relearn_fraction, before=evaluation.samples, in_place=True)


def summary_line(run: Run, metrics: dict, timings: dict) -> str:
    """One line per finished run: the headline numbers and where the time went."""
    from simu_bench.leaderboard.board import REFERENCE_LABEL, run_values

    values = run_values(metrics)
    forget = [values[f"forget/{k}"] for k in ("regurgitation", "knowledge") if values[f"forget/{k}"] is not None]
    retain = [values[f"retain/{k}"] for k in ("regurgitation", "knowledge") if values[f"retain/{k}"] is not None]
    utility = metrics.get("utility") or {}

    def num(value) -> str:
        return "—" if value is None else f"{value:.3f}"

    name = REFERENCE_LABEL if run.seed is None else f"{run.method} seed {run.seed}"
    times = " ".join(f"{stage} {seconds:.1f}s" for stage, seconds in timings.items() if stage != "total")
    return (f"{name}: final {num(values['final'])} | Task Aggregate {num(values['task_aggregate'])} | "
            f"MIA {num(values['mia_score'])} | utility ({utility.get('name', 'none')}) {num(values['utility'])} | "
            f"forget {num(sum(forget) / len(forget) if forget else None)} ↓ retain "
            f"{num(sum(retain) / len(retain) if retain else None)} ↑ | {times}")


def trajectory_for(plan: Plan, data):
    """The `--eval-every` callback for one run, or None without the flag. Its points keep no
    generated text, so question rows stop decoding once their score is decided."""
    if not plan.eval_every:
        return None
    if plan.eval_rows:  # a seeded subset of forget and retain rows; --utility-tasks left out
        rows = subset(data, plan.eval_rows)
        return Trajectory(plan.eval_every, lambda model, tokenizer: evaluate_model(
            model, tokenizer, rows, plan, utility_tasks=False, early_stop=True).to_dict(), plan.eval_rows)
    return Trajectory(plan.eval_every, lambda model, tokenizer: evaluate_model(
        model, tokenizer, data, plan, early_stop=True).to_dict())


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def execute(plan: Plan, resolved: Resolved, run: Run, data, environment: dict, say, show=lambda stage: None) -> str:
    """Do one run (reference or method) into its directory; return its status.

    `say` prints a line (the one-line summary); `show` names the stage now running.
    """
    from simu_bench.files import write_jsonl
    from simu_bench.target_model.build import load_model
    from simu_bench.unlearning import distributed, loop, registry

    run.begin(resolved.configs[(run.method, run.seed)], environment)
    timings = dict(resolved.timings) if run.method == REFERENCE else {}
    trajectory = trajectory_for(plan, data) if run.method != REFERENCE else None
    started = time.perf_counter()

    def stage(name: str, since: float) -> float:
        now = time.perf_counter()
        timings[name] = round(now - since, 3)
        return now

    with run_log(run):
        log.info("run %s seed %s in %s", run.method, run.seed, run.path)
        try:
            seed_everything(run.seed or 0)
            show("load")
            model, tokenizer = load_model(resolved.model, device=plan.device)
            if plan.gradient_checkpointing and run.method != REFERENCE:
                distributed.enable_gradient_checkpointing(model)
            now = stage("load", started)
            if run.method != REFERENCE and resolved.reference_nll is None and data.member and data.nonmember:
                from simu_bench.evaluation.mia import reference_nll

                # once per benchmark, on this still untouched target: the `reference` MIA attack's baseline
                resolved.reference_nll = reference_nll(model, tokenizer, data.member, data.nonmember,
                                                       plan.eval_batch_size)
                now = stage("reference_nll", now)
            if run.method != REFERENCE:
                unlearner = registry.create(resolved.unlearn_configs[run.method])
                show("unlearn")
                result = loop.run(unlearner, model, tokenizer, data, seed=run.seed, progress=not plan.quiet,
                                  callbacks=[trajectory] if trajectory is not None else [])
                now = stage("unlearn", now)
                if trajectory is not None:  # the evaluations along the way are not unlearning time
                    timings["unlearn"] = round(timings["unlearn"] - trajectory.seconds, 3)
                    timings["trajectory"] = round(trajectory.seconds, 3)
                run.write_json("unlearn.json", {**result.to_dict(), "world_size": distributed.world()[1],
                                                "gradient_checkpointing": plan.gradient_checkpointing})
                unlearner.save_artifacts(run.file(""))
                if result.status != "ok":
                    if trajectory is not None:
                        write_jsonl(run.file(TRAJECTORY), trajectory.points)
                    log.warning("%s", result.message)
                    timings["total"] = round(time.perf_counter() - started, 3)
                    run.write_json("timings.json", timings)
                    run.finish(result.status, error=result.message)
                    say(f"{run.method} seed {run.seed}: {result.status}: {result.message}")
                    return result.status
            if run.method != REFERENCE and distributed.world()[1] > 1:  # rank 0 evaluates the whole model
                from simu_bench.pipeline.multiprocess import gather

                model = gather(model, resolved.model, plan.device)
            loop.cast(model, resolved.configs[(run.method, run.seed)]["evaluation"]["dtype"])  # --eval-dtype
            show("evaluate")
            evaluation = evaluate_model(model, tokenizer, data, plan,
                                        reference_nll=resolved.reference_nll if run.method != REFERENCE else None)
            now = stage("evaluate", now)
            metrics = evaluation.to_dict()
            run.write_json("metrics.json", metrics)
            write_jsonl(run.file("generations.jsonl"), [dict(sample) for sample in evaluation.samples])
            if trajectory is not None:  # the final evaluation is the last point
                write_jsonl(run.file(TRAJECTORY), trajectory.finish(result.steps, metrics, timings["evaluate"]))
            if plan.relearn and run.method != REFERENCE:
                show("relearn")
                run.write_json(RELEARN_FILE, relearn_run(model, tokenizer, data, plan, evaluation))
                stage("relearn", now)
            timings["total"] = round(time.perf_counter() - started, 3)
            run.write_json("timings.json", timings)
            run.finish("ok")
            log.info("finished in %.1f s", timings["total"])
            say(summary_line(run, metrics, timings))
            return "ok"
        except KeyboardInterrupt:
            log.warning("interrupted; this run has no status.json and is redone on the next call")
            raise
        except WriteError:  # e.g. the disk is full: recording a crash would fail too; redone next time
            log.error("stopped: a result could not be written; this run is redone on the next call")
            raise
        except UserError as error:
            if run.method == REFERENCE:  # the target itself cannot be used: nothing else can run
                import shutil

                shutil.rmtree(run.path, ignore_errors=True)  # it holds no result: leave no half-made run
                raise
            return _crashed(run, error, timings, started, say)
        except Exception as error:  # a crashing method must not take the others down
            return _crashed(run, error, timings, started, say)


def _crashed(run: Run, error: Exception, timings: dict, started: float, say) -> str:
    log.error("crashed:\n%s", traceback.format_exc())
    timings["total"] = round(time.perf_counter() - started, 3)
    run.write_json("timings.json", timings)
    run.finish("crashed", error=_first_line(error))
    say(f"{run.method} seed {run.seed}: crashed: {_first_line(error)} (traceback in {run.file('log.txt')})")
    return "crashed"


def free_memory() -> None:
    import gc

    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def write_leaderboard(out: Path, command: str) -> list[Path]:
    """The leaderboard of `out` as leaderboard.md and leaderboard.json, plus the two plots."""
    from simu_bench.files import atomic_write_text
    from simu_bench.leaderboard.board import build, render
    from simu_bench.leaderboard.plots import write_plots

    board = build(out)
    remove_temp_files(out)  # of a leaderboard write cut short by a kill (the caller holds the leaderboard lock)
    written = []
    for fmt in ("md", "json"):
        path = out / f"leaderboard.{fmt}"
        atomic_write_text(path, render(board, fmt, [command] if command else []))
        written.append(path)
    return written + write_plots(board, out)


def run_benchmark(plan: Plan, say=print) -> dict[str, int]:
    """Run the whole plan; return how many runs ended in each status (skipped included)."""
    import torch
    from transformers.utils import logging as hf_logging

    configs = check_inputs(plan)
    bars, threads = hf_logging.is_progress_bar_enabled(), torch.get_num_threads()
    if plan.quiet:  # transformers' weight-loading bars, once per run
        hf_logging.disable_progress_bar()
    if plan.cpu_threads():
        torch.set_num_threads(plan.cpu_threads())
    try:
        from simu_bench.unlearning import distributed

        if distributed.launched():  # under torchrun: each run across its processes
            from simu_bench.pipeline.multiprocess import run_all

            return run_all(plan, configs, say, sys.modules[__name__])  # this module's steps, without an import
        return _run_all(plan, configs, say)
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()


def claim_and_execute(plan: Plan, resolved: Resolved, run: Run, data, environment: dict, say, show, name: str) -> str:
    """Claim `run` (`simu_bench.store.claims`) and do it; "claimed" when another worker has it.

    Several workers with the same `--out` split the runs this way; a run another worker
    finished between the caller's check and the claim is "skipped".
    """
    from simu_bench.store import claims

    claim = claims.claim(claims.claim_path(plan.out, run.method, run.seed), f"{name} in {plan.out}")
    if not claim.held:
        say(f"{name}: claimed by another worker ({claim.owner}), skipped")
        return "claimed"
    with claim:
        if run.is_done():
            say(f"{name}: already done ({run.status()['status']}) by another worker, skipped")
            return "skipped"
        if claim.stale:
            say(f"{name}: the worker that claimed it ({claim.stale}) stopped before finishing; redoing it")
        try:
            return execute(plan, resolved, run, data, environment, say, show)
        finally:
            free_memory()  # the run's model, optimizer state and mask are gone now


def _run_all(plan: Plan, configs: dict, say) -> dict[str, int]:
    from simu_bench.data.lume import load_lume
    from simu_bench.files import atomic_write_json
    from simu_bench.store.environment import environment

    resolved = prepare_inputs(plan)
    data = load_lume(resolved.data_dir)
    if plan.relearn:  # a forget set of one document has none left to measure: refused before any write
        from simu_bench.evaluation.relearn import split_documents

        split_documents(data.forget, plan.relearn_fraction)
    runs = plan_runs(plan, resolved, configs)
    env = environment(plan.device)
    Path(plan.out).mkdir(parents=True, exist_ok=True)
    from simu_bench.store import claims

    with claims.leaderboard_lock(plan.out):  # every file at the top of the store is written under this lock
        remove_temp_files(plan.out)  # writes cut short by a kill; run folders clean their own (`Run.begin`)
        remove_temp_files(Path(plan.out) / claims.FOLDER, min_age_s=60)  # claims are written without this lock
        atomic_write_json(Path(plan.out) / "run.json", {"command": plan.command, "date": env["date"]})
    counts: dict[str, int] = {}
    # The outer bar counts runs and names the stage in progress; prepare and unlearn show their own bars.
    bar = tqdm(total=len(runs), unit="run", disable=plan.quiet, dynamic_ncols=True)
    write = bar.write if not plan.quiet else say
    try:
        for run in runs:
            name = run.method if run.seed is None else f"{run.method} seed {run.seed}"
            if run.is_done():
                status = "skipped"
                write(f"{name}: already done ({run.status()['status']}), skipped")
            else:
                def show(stage: str, name: str = name) -> None:
                    bar.set_description_str(f"{name}: {stage}")

                status = claim_and_execute(plan, resolved, run, data, env, write, show, name)
            counts[status] = counts.get(status, 0) + 1
            bar.update(1)
        bar.set_description_str("done")
    finally:
        bar.close()
    from simu_bench.store import claims

    # One worker at a time, so that the last one to finish writes what every worker finished.
    with claims.leaderboard_lock(plan.out):
        written = write_leaderboard(Path(plan.out), plan.command)
    for path in written:
        say(f"wrote {path}")
    return counts

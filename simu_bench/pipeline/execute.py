"""One run (the reference row or a method and seed) into its run directory.

    load the target -> (method runs) the target's document NLLs once, unlearn, gather the shards
    under torchrun -> cast to the evaluation dtype -> evaluate and store -> trajectory.jsonl ->
    (with --relearn) the relearning attack -> timings.json -> status.json, last.

A method that diverges is stored with its status; one that crashes is recorded as crashed with
its error line and traceback (log.txt), and the caller goes on with the next run.
"""

from __future__ import annotations

import logging
import shutil
import traceback

from simu_bench.errors import UserError
from simu_bench.evaluation.mia import reference_nll
from simu_bench.files import WriteError, write_jsonl
from simu_bench.pipeline.multiprocess import gather
from simu_bench.pipeline.plan import Plan, Resolved
from simu_bench.pipeline.steps import (
    Clock,
    evaluate_model,
    new_unlearner,
    relearn_run,
    run_log,
    seed_everything,
    store_evaluation,
    summary_line,
    trajectory_for,
)
from simu_bench.pipeline.trajectory import FILE as TRAJECTORY
from simu_bench.store.runs import REFERENCE, RELEARN_FILE, Run
from simu_bench.target_model.load import load_model
from simu_bench.unlearning import distributed, loop

log = logging.getLogger("simu_bench.run")


def execute(plan: Plan, resolved: Resolved, run: Run, data, environment: dict, say, show=lambda stage: None) -> str:
    """Do one run into its directory; return its status.

    `say` prints a line (the one-line summary); `show` names the stage now running.
    """
    run.begin(resolved.configs[(run.method, run.seed)], environment)
    clock = Clock(resolved.timings if run.method == REFERENCE else {})
    with run_log(run):
        log.info("run %s seed %s in %s", run.method, run.seed, run.path)
        try:
            return _execute(plan, resolved, run, data, say, show, clock)
        except KeyboardInterrupt:
            log.warning("interrupted; this run has no status.json and is redone on the next call")
            raise
        except WriteError:  # e.g. the disk is full: recording a crash would fail too; redone next time
            log.error("stopped: a result could not be written; this run is redone on the next call")
            raise
        except UserError as error:
            if run.method == REFERENCE:  # the target itself cannot be used: nothing else can run
                shutil.rmtree(run.path, ignore_errors=True)  # it holds no result: leave no half-made run
                raise
            return _crashed(run, error, clock, say)
        except Exception as error:  # a crashing method must not take the others down
            return _crashed(run, error, clock, say)


def _execute(plan: Plan, resolved: Resolved, run: Run, data, say, show, clock: Clock) -> str:
    method_run = run.method != REFERENCE
    trajectory = trajectory_for(plan, data, resolved.unlearn_configs.get(run.method)) if method_run else None
    seed_everything(run.seed or 0)
    show("load")
    model, tokenizer = load_model(resolved.model, device=plan.device)
    if plan.gradient_checkpointing and method_run:
        distributed.enable_gradient_checkpointing(model)
    clock.stage("load")
    steps = 0
    if method_run:
        _reference_nll(plan, resolved, model, tokenizer, data, clock)
        show("unlearn")
        result = _unlearn(plan, resolved, run, model, tokenizer, data, trajectory, clock)
        if result.status != "ok":
            return _stopped(run, result, trajectory, clock, say)
        steps = result.steps
        if distributed.world()[1] > 1:  # rank 0 evaluates the whole model
            model = gather(model, resolved.model, plan.device)
    loop.cast(model, resolved.configs[(run.method, run.seed)]["evaluation"]["dtype"])  # --eval-dtype
    show("evaluate")
    evaluation = evaluate_model(model, tokenizer, data, plan,
                                reference_nll=resolved.reference_nll if method_run else None)
    clock.stage("evaluate")
    metrics = store_evaluation(run.path, evaluation)
    if trajectory is not None:  # the final evaluation is the last point
        write_jsonl(run.file(TRAJECTORY), trajectory.finish(steps, metrics, clock.timings["evaluate"]))
    if plan.relearn and method_run:
        show("relearn")
        run.write_json(RELEARN_FILE, relearn_run(model, tokenizer, data, plan, evaluation))
        clock.stage("relearn")
    timings = clock.stop()
    run.write_json("timings.json", timings)
    run.finish("ok")
    log.info("finished in %.1f s", timings["total"])
    say(summary_line(run, metrics, timings))
    return "ok"


def _reference_nll(plan: Plan, resolved: Resolved, model, tokenizer, data, clock: Clock) -> None:
    """Once per benchmark, on the still untouched target: the `reference` MIA attack's baseline."""
    if resolved.reference_nll is None and data.member and data.nonmember:
        resolved.reference_nll = reference_nll(model, tokenizer, data.member, data.nonmember, plan.eval_batch_size)
        clock.stage("reference_nll")


def _unlearn(plan: Plan, resolved: Resolved, run: Run, model, tokenizer, data, trajectory, clock: Clock):
    """The method's unlearning, with unlearn.json and its artifacts; returns the loop's result."""
    unlearner = new_unlearner(plan, resolved.unlearn_configs[run.method])
    result = loop.run(unlearner, model, tokenizer, data, seed=run.seed, progress=not plan.quiet,
                      callbacks=[trajectory] if trajectory is not None else [])
    clock.stage("unlearn")
    if trajectory is not None:  # the evaluations along the way are not unlearning time
        clock.timings["unlearn"] = round(clock.timings["unlearn"] - trajectory.seconds, 3)
        clock.timings["trajectory"] = round(trajectory.seconds, 3)
    stop = trajectory.stop_record(result.steps) if trajectory is not None else None
    run.write_json("unlearn.json", {**result.to_dict(), "world_size": distributed.world()[1],
                                    "gradient_checkpointing": plan.gradient_checkpointing,
                                    **({"stop_at_forget": stop} if stop else {})})
    unlearner.save_artifacts(run.file(""))
    return result


def _stopped(run: Run, result, trajectory, clock: Clock, say) -> str:
    """A run whose unlearning diverged: stored with its status, not evaluated."""
    if trajectory is not None:
        write_jsonl(run.file(TRAJECTORY), trajectory.points)
    log.warning("%s", result.message)
    run.write_json("timings.json", clock.stop())
    run.finish(result.status, error=result.message)
    say(f"{run.method} seed {run.seed}: {result.status}: {result.message}")
    return result.status


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}".rstrip(": ")


def _crashed(run: Run, error: Exception, clock: Clock, say) -> str:
    log.error("crashed:\n%s", traceback.format_exc())
    run.write_json("timings.json", clock.stop())
    run.finish("crashed", error=_first_line(error))
    say(f"{run.method} seed {run.seed}: crashed: {_first_line(error)} (traceback in {run.file('log.txt')})")
    return "crashed"

"""The steps of one run that `run`, `tune` and `eval` share: seeding, the run's log file,
evaluating with a plan's settings, storing an evaluation, the relearning attack and the one-line
summary of a finished run."""

from __future__ import annotations

import gc
import logging
import random
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import torch
from transformers.utils import logging as hf_logging

from simu_bench.evaluation.backends import Backend
from simu_bench.evaluation.evaluator import evaluate
from simu_bench.evaluation.relearn import relearn
from simu_bench.files import atomic_write_json, write_jsonl
from simu_bench.leaderboard.values import REFERENCE_LABEL, run_values, split_scores
from simu_bench.pipeline.plan import Plan
from simu_bench.pipeline.trajectory import Trajectory, measured_rows, subset
from simu_bench.store.runs import Run
from simu_bench.unlearning import registry


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


CACHE = ".cache"  # inside the run store: results every run of the store may reuse (`simu_bench.simu.cache`)


def new_unlearner(plan: Plan, config):
    """The method of ``config``, with the run store's cache (None under `--no-cache`), so that
    seeds and variants share what does not depend on the seed (SIMU's attribution)."""
    unlearner = registry.create(config)
    unlearner.cache_dir = None if plan.no_cache or plan.out is None else Path(plan.out) / CACHE
    return unlearner


def free_memory() -> None:
    """Return a finished run's model, optimizer state and mask to the allocator.

    What survives the collection lives for the whole command (imported modules, lm-eval's task
    registry, the data): `gc.freeze` moves it out of the collector's sight, so that the next
    run's collections, this one's and Python's automatic ones alike, scan only that run's own
    objects (a full collection of ~280k objects costs about half a second on one core).
    """
    gc.collect()
    gc.freeze()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class Clock:
    """Seconds per stage of a run, each stage timed from the end of the one before."""

    def __init__(self, timings: dict | None = None):
        self.timings = dict(timings or {})
        self.started = self.last = time.perf_counter()

    def stage(self, name: str) -> None:
        now = time.perf_counter()
        self.timings[name] = round(now - self.last, 3)
        self.last = now

    def stop(self) -> dict:
        """The timings with the run's total."""
        self.timings["total"] = round(time.perf_counter() - self.started, 3)
        return self.timings


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
    utility = list(plan.utility_tasks) if plan.utility_tasks and utility_tasks else None
    return evaluate(model, tokenizer, data, batch_size=plan.eval_batch_size, max_new_tokens=plan.max_new_tokens,
                    backend=Backend(plan.backend, plan.strict), early_stop=early_stop or plan.fast_decode,
                    utility_tasks=utility, reference_nll=reference_nll)


def store_evaluation(folder: Path, evaluation) -> dict:
    """metrics.json and generations.jsonl of an evaluation in `folder`; returns the metrics."""
    metrics = evaluation.to_dict()
    atomic_write_json(Path(folder) / "metrics.json", metrics)
    write_jsonl(Path(folder) / "generations.jsonl", [dict(sample) for sample in evaluation.samples])
    return metrics


def relearn_run(model, tokenizer, data, plan: Plan, evaluation) -> dict:
    """The relearning attack on an evaluated model, in place: everything stored from that model
    (metrics.json, generations.jsonl, trajectory.jsonl) is written before this is called."""
    return relearn(model, tokenizer, data, plan.relearn,
                   lambda m, t, d: evaluate_model(m, t, d, plan, utility_tasks=False),
                   fraction=plan.relearn_fraction, before=evaluation.samples, in_place=True)


def trajectory_for(plan: Plan, data, unlearn=None):
    """The `--eval-every`/`--eval-at` callback for one run (stopping at `unlearn.train.stop_at_forget`
    when set), or None without evaluation points. Its points keep no generated text, so question
    rows stop decoding once their score is decided."""
    if not (plan.eval_every or plan.eval_at):
        return None
    settings = dict(log=plan.eval_at == "log", stop_at_forget=unlearn.train.stop_at_forget if unlearn else None)
    if plan.eval_rows:  # a seeded subset of forget and retain rows; --utility-tasks left out
        rows = subset(data, plan.eval_rows)
        return Trajectory(plan.eval_every, lambda model, tokenizer: evaluate_model(
            model, tokenizer, rows, plan, utility_tasks=False, early_stop=True).to_dict(), measured_rows(rows),
            **settings)
    return Trajectory(plan.eval_every, lambda model, tokenizer: evaluate_model(
        model, tokenizer, data, plan, early_stop=True).to_dict(), **settings)


def summary_line(run: Run, metrics: dict, timings: dict) -> str:
    """One line per finished run: the headline numbers and where the time went."""
    values, split = run_values(metrics), split_scores(metrics)
    utility = metrics.get("utility") or {}

    def num(value) -> str:
        return "—" if value is None else f"{value:.3f}"

    name = REFERENCE_LABEL if run.seed is None else f"{run.method} seed {run.seed}"
    times = " ".join(f"{stage} {seconds:.1f}s" for stage, seconds in timings.items() if stage != "total")
    return (f"{name}: final {num(values['final'])} | Task Aggregate {num(values['task_aggregate'])} | "
            f"MIA {num(values['mia_score'])} | utility ({utility.get('name', 'none')}) {num(values['utility'])} | "
            f"forget {num(split['forget'])} ↓ retain {num(split['retain'])} ↑ | {times}")


@contextmanager
def torch_settings(plan: Plan):
    """The plan's CPU threads and, with `--quiet`, no transformers weight-loading bars; both restored after."""
    bars, threads = hf_logging.is_progress_bar_enabled(), torch.get_num_threads()
    if plan.quiet:  # transformers' weight-loading bars, once per run
        hf_logging.disable_progress_bar()
    if plan.cpu_threads():
        torch.set_num_threads(plan.cpu_threads())
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        if bars:
            hf_logging.enable_progress_bar()

"""Running lm-eval: the task manager over the task pack (and lm-eval's registry when a utility
task needs it), its evaluator, utility tasks such as 5-shot MMLU, and the quiet, random-state
neutral frame every evaluation runs in (`simu_bench.evaluation.evaluator`)."""

from __future__ import annotations

import contextlib
import faulthandler
import io
import logging
import os
import random
import sys
from pathlib import Path

import numpy as np
import torch
from lm_eval.evaluator import evaluate as lm_evaluate
from lm_eval.tasks import TaskManager

from simu_bench import tasks as task_pack
from simu_bench.data.lume import SPLITS, WORLD_FACTS, LumeData
from simu_bench.errors import UserError, did_you_mean
from simu_bench.files import write_jsonl

# lm-eval metrics tried, in order, as an external utility task's headline number.
UTILITY_METRICS = ("acc,none", "exact_match,none", "acc_norm,none", "exact_match,strict-match")
# Few-shot examples per utility task unless `name:k` says otherwise: the official final score
# uses 5-shot MMLU (Open-Instruct's run_mmlu.py, ntrain 5). It runs as lm-eval's `mmlu` task
# (its own prompt format, which may differ slightly from run_mmlu.py's). Other tasks: 0.
FEWSHOT = {"mmlu": 5}


def check_utility_tasks(names) -> None:
    """Every name in ``names`` (None: the embedded world facts) must be an lm-eval task or group.

    Indexing lm-eval's registry takes seconds, so it happens only when names are given; the
    check runs before anything is written (`simu-bench run` checks its plan with it).
    """
    if not names:
        return
    names = [utility_task(spec)[0] for spec in names]
    manager = task_manager(list(names), data_dir="")
    for name in names:
        if name not in manager.all_tasks:
            raise UserError(f"--utility-tasks: unknown lm-eval task {name!r}{did_you_mean(name, manager.all_tasks)}")


def task_manager(names, data_dir):
    """lm-eval's task manager over the task pack, and over lm-eval's own registry when `names` need it."""
    ours = not any(name != task_pack.GROUP and not name.startswith("lume_") for name in names)
    # lm-eval's own registry (~15k tasks) takes seconds to index: only when a name needs it.
    return TaskManager(include_path=str(task_pack.path()), include_defaults=not ours, metadata={"data_dir": data_dir})


def run_tasks(lm, names, data_dir, limit, gen_kwargs=None, num_fewshot: int | None = None) -> dict:
    """lm-eval's evaluator on `names` (the pack's tasks, or any registered task).

    Calls `lm_eval.evaluator.evaluate` rather than `simple_evaluate`: the latter also re-seeds
    the global random generators and collects environment details (a `pip list` subprocess),
    which costs more than generating the embedded benchmark's answers.
    """
    manager = task_manager(names, data_dir)
    for name in names:
        if name not in manager.all_tasks:
            raise UserError(f"unknown lm-eval task {name!r}{did_you_mean(name, manager.all_tasks)}")
    task_dict = manager.load(names)
    for task in task_dict["tasks"].values():
        if gen_kwargs and task.get_config("output_type") == "generate_until":
            task.set_config(key="generation_kwargs", value=dict(gen_kwargs), update=True)
        if num_fewshot is not None:  # every task of the group (mmlu's 57 subjects) gets the same shots
            task.set_config(key="num_fewshot", value=num_fewshot)
        elif task.get_config("num_fewshot") is None:
            task.set_config(key="num_fewshot", value=0)
        task.set_fewshot_seed(seed=1234)  # lm-eval's default few-shot seed
    return lm_evaluate(lm=lm, task_dict=task_dict, limit=limit, bootstrap_iters=0, log_samples=True)


def utility_task(spec: str) -> tuple[str, int]:
    """`name` or `name:k` (k few-shot examples) -> (name, shots); mmlu defaults to `FEWSHOT`'s 5.

    Raises:
        UserError: k is not a whole number >= 0.
    """
    name, sep, shots = spec.partition(":")
    if not sep:
        return name, FEWSHOT.get(name, 0)
    if not shots.isdigit():
        raise UserError(f"--utility-tasks {spec!r}: the shots after ':' must be a whole number >= 0, e.g. mmlu:5")
    return name, int(shots)


def utility_label(spec: str) -> str:
    """The utility's name with its shot count, e.g. "mmlu (5-shot)"."""
    name, shots = utility_task(spec)
    return f"{name} ({shots}-shot)"


def external_utility(lm, utility_tasks, data_dir, limit, max_new_tokens) -> dict:
    """Mean headline metric of lm-eval tasks (e.g. mmlu), labelled with their names and shots."""
    values = []
    for spec in utility_tasks:
        name, shots = utility_task(spec)
        out = run_tasks(lm, [name], data_dir, limit, {"max_gen_toks": max_new_tokens}, num_fewshot=shots)
        metrics = out["results"][name]
        key = next((k for k in UTILITY_METRICS if k in metrics), None)
        if key is None:
            raise UserError(
                f"lm-eval task {name!r} reports none of {', '.join(UTILITY_METRICS)}; "
                "pick a task with accuracy or exact match"
            )
        values.append(float(metrics[key]))
    return {"name": "+".join(utility_label(spec) for spec in utility_tasks), "value": sum(values) / len(values)}


def write_data(root: Path, data: LumeData) -> None:
    for split in (*SPLITS, "utility"):
        rows = [{"id": e.id, "input": e.input, "output": e.output, "task": e.task} for e in data.split(split)]
        if rows:
            write_jsonl(root / (f"{WORLD_FACTS}.jsonl" if split == "utility" else f"{split}.jsonl"), rows)


def save_random_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_random_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state:
        torch.cuda.set_rng_state_all(state["cuda"])


@contextlib.contextmanager
def quiet(enabled: bool):
    """Silence lm-eval's and transformers' logs and progress bars, and subprocess chatter
    (lm-eval asks `git` for a commit hash) by pointing stderr, file descriptor 2 included,
    at /dev/null for the duration. A fatal error of the interpreter or of native code
    (segmentation fault, abort) still reaches the real stderr: `faulthandler` writes there."""
    if not enabled:
        yield
        return
    loggers = [logging.getLogger(name) for name in ("lm-eval", "lm_eval", "transformers", "datasets")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    sys.stderr.flush()
    saved_fd = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    was_enabled = faulthandler.is_enabled()
    fatal = os.fdopen(os.dup(saved_fd), "w")
    faulthandler.enable(file=fatal, all_threads=True)
    os.dup2(devnull, 2)
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        os.dup2(saved_fd, 2)
        faulthandler.disable()
        if was_enabled and sys.__stderr__ is not None:
            faulthandler.enable(file=sys.__stderr__, all_threads=True)
        fatal.close()
        os.close(saved_fd)
        os.close(devnull)
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)

"""`--workers N`: N processes on one run store, splitting its runs with the store's claims.

    simu-bench run --methods all --seeds 0,1,2,3,4 --workers 2

A run of the embedded target uses one core (its matrices are too small to share between
threads), so one process leaves the other cores idle. With N workers the command starts N - 1
helper processes (the same command with ``--workers 1``), works as the first worker itself, and
each worker claims a run before doing it (`simu_bench.store.claims`), exactly as workers started
by hand do. Every worker uses one torch thread unless ``--threads`` says otherwise. A run's
results do not depend on the process that made it, so the store is the one a single worker
writes (a test compares them). The first worker writes the leaderboard once every helper has
finished; helpers leave it to it (they run with `HELPER_ENV` set).
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys

from simu_bench.errors import UserError

HELPER_ENV = "SIMU_BENCH_HELPER_OF"  # set on helpers: the pid of the worker that started them


def cores() -> int:
    """CPU cores this process may run on."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def parse_workers(text: str, flag: str = "--workers") -> int:
    """A whole number >= 1; above the core count it is allowed with a warning (one line)."""
    try:
        workers = int(text)
    except ValueError:
        raise UserError(f"{flag} {text!r}: expected a whole number of worker processes, e.g. {flag} {cores()} "
                        f"(one per CPU core)") from None
    if workers < 1:
        raise UserError(f"{flag} {workers}: expected at least 1 worker process, e.g. {flag} {cores()} "
                        f"(one per CPU core)")
    if workers > cores():
        print(f"warning: {flag} {workers} is more than the {cores()} CPU cores here: the workers would take turns on "
              f"the cores and each holds its own copy of the model, so the runs take longer; use {flag} {cores()}",
              file=sys.stderr)
    return workers


def default_workers(plan) -> int:
    """One worker per core for the embedded target on CPU (one thread each is its fastest way);
    one otherwise: a GPU is one device, and a larger model already uses every core's threads."""
    return cores() if plan.device == "cpu" and plan.model is None else 1


def is_helper() -> bool:
    return HELPER_ENV in os.environ


def start_helpers(plan, count: int) -> list[subprocess.Popen]:
    """``count`` helper processes running ``plan.command`` as single workers, quiet, one thread each."""
    words = shlex.split(plan.command)[1:]  # the canonical command, without the program name
    words += ["--workers", "1", "--quiet", "--threads", str(plan.threads or 1)]  # the last value of a flag wins
    env = {**os.environ, HELPER_ENV: str(os.getpid())}
    return [subprocess.Popen([sys.executable, "-m", "simu_bench", *words], env=env, stdin=subprocess.DEVNULL)
            for _ in range(count)]


def wait(helpers: list[subprocess.Popen]) -> list[int]:
    """Wait for every helper; their exit codes. An interrupt stops them too."""
    try:
        return [helper.wait() for helper in helpers]
    except BaseException:
        for helper in helpers:
            helper.terminate()
        raise


def start_workers(plan) -> list[subprocess.Popen]:
    """The helpers of ``--workers N`` for a command whose workers share Optuna studies (tune,
    frontier): N - 1 of them, none in a helper or with one worker."""
    count = plan.workers or (1 if is_helper() else default_workers(plan))
    return start_helpers(plan, count - 1) if count > 1 else []


def wait_and_say(helpers: list[subprocess.Popen], say) -> None:
    """Wait for every helper; one line for each that did not end with exit status 0."""
    for code in wait(helpers):
        if code != 0:
            say(f"a worker process stopped with exit status {code}; run the same command again to finish its share")

"""Many workers on one run store: claims with a file lock, stale claims, bad lock paths, the runner."""

import json
import multiprocessing
import os
import signal
import subprocess
import sys
import time

import pytest

from simu_bench.cli import main
from simu_bench.errors import UserError
from simu_bench.store import claims
from simu_bench.store.runs import Run

QUICK = ["--set", "train.max_steps=1", "--max-new-tokens", "8", "--quiet"]


def test_a_claimed_run_is_refused_to_a_second_claim_until_released(tmp_path):
    first = claims.claim(claims.claim_path(tmp_path, "fo_graddiff", 0))
    assert first.held and first.stale == ""
    second = claims.claim(claims.claim_path(tmp_path, "fo_graddiff", 0))  # another open file: another worker
    assert not second.held
    assert f"pid {os.getpid()}" in second.owner
    first.release()
    assert claims.read_claim(claims.claim_path(tmp_path, "fo_graddiff", 0)) is None  # released: no owner record
    with claims.claim(claims.claim_path(tmp_path, "fo_graddiff", 0)) as third:
        assert third.held and third.stale == ""


def test_a_killed_worker_leaves_a_stale_claim_that_the_next_worker_takes_over(tmp_path):
    where = claims.claim_path(tmp_path, "simu", 1)
    code = (
        "import sys, time; from simu_bench.store import claims; "
        f"c = claims.claim({str(where)!r}); print(c.held, flush=True); time.sleep(120)"
    )
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "True"
        busy = claims.claim(where)
        assert not busy.held and f"pid {child.pid}" in busy.owner
    finally:
        child.send_signal(signal.SIGKILL)  # no clean-up runs: the OS alone releases the lock
        child.wait()
    taken = claims.claim(where)
    assert taken.held
    assert f"pid {child.pid}" in taken.stale
    taken.release()


def _worker(out: str, runs: int, done: "multiprocessing.Queue") -> None:
    """A stand-in for `simu-bench run`: claim each run, do it unless finished, mark it finished."""
    from pathlib import Path

    did = []
    for index in range(runs):
        run = Run.at(Path(out), "m", index)
        if run.is_done():
            continue
        with claims.claim(claims.claim_path(Path(out), "m", index)) as claim:
            if not claim.held or run.is_done():
                continue
            time.sleep(0.02)  # the work
            run.finish("ok")
            did.append(index)
    done.put(did)


def test_concurrent_workers_do_every_run_exactly_once(tmp_path):
    context = multiprocessing.get_context("fork")
    done = context.Queue()
    workers = [context.Process(target=_worker, args=(str(tmp_path), 12, done)) for _ in range(3)]
    for worker in workers:
        worker.start()
    results = [done.get(timeout=60) for _ in workers]
    for worker in workers:
        worker.join(timeout=60)
        assert worker.exitcode == 0
    every = sorted(index for did in results for index in did)
    assert every == list(range(12))  # each run once: none twice, none left out


def test_a_lock_that_cannot_be_made_is_one_line(tmp_path):
    (tmp_path / claims.FOLDER).write_text("a file where the claims folder should be")
    with pytest.raises(UserError, match=r"cannot create .*\.claims .*choose another --out") as error:
        claims.claim(claims.claim_path(tmp_path, "fo_graddiff", 0), "fo_graddiff seed 0")
    assert "\n" not in str(error.value)
    other = tmp_path / "other"
    (other / claims.FOLDER / "simu.seed0.lock").mkdir(parents=True)  # a folder in the lock's place
    with pytest.raises(UserError, match=r"cannot lock .*simu\.seed0\.lock .*choose another --out") as error:
        claims.claim(claims.claim_path(other, "simu", 0), "simu seed 0")
    assert "\n" not in str(error.value)


def test_run_skips_a_run_another_worker_holds_and_a_later_worker_does_it(tiny_target, tmp_path, capsys):
    inputs = ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]
    command = ["run", "--methods", "fo_graddiff", "--seeds", "0,1", "--out", str(tmp_path), *inputs, *QUICK]
    held = claims.claim(claims.claim_path(tmp_path, "fo_graddiff", 1))
    try:
        assert main(command) == 0
    finally:
        held.release()
    out = capsys.readouterr().out
    assert "fo_graddiff seed 1: claimed by another worker (pid" in out
    assert "1 claimed" in out
    assert Run.at(tmp_path, "fo_graddiff", 0).is_done() and not Run.at(tmp_path, "fo_graddiff", 1).is_done()
    board = json.loads((tmp_path / "leaderboard.json").read_text())
    assert "fo_graddiff" in json.dumps(board)  # the finished runs are on the board already
    assert main(command) == 0
    out = capsys.readouterr().out
    assert "fo_graddiff seed 0: already done (ok), skipped" in out and "fo_graddiff seed 1: final" in out
    assert Run.at(tmp_path, "fo_graddiff", 1).is_done()


def test_claim_overhead(benchmark, tmp_path):
    """Claim and release one run (milliseconds: a lock, a small JSON file, an unlink)."""

    def once():
        with claims.claim(claims.claim_path(tmp_path, "m", 0)) as claim:
            return claim.held

    assert benchmark(once)

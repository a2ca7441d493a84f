"""Claims: several `simu-bench run` workers on one run store split its runs between them.

    simu-bench run --methods all --seeds 0,1,2,3 --out runs/ --device cuda:0 &   # one worker per GPU
    simu-bench run --methods all --seeds 0,1,2,3 --out runs/ --device cuda:1 &

Before a worker starts a run it claims it: an exclusive, non-blocking lock on
`DIR/.claims/<method>.seed<k>.lock` (the `filelock` package: `flock` on POSIX, `LockFileEx` on
Windows), outside the run's own folder so that a run folder holds its results only. A run whose
lock another worker holds is skipped, so no run is done twice. The lock belongs to the worker's
open file: when the worker exits, or is killed, the operating system releases it.

Next to the lock the holder writes `<method>.seed<k>.json` (host, pid, date) and removes it when
the run is over. The next worker that takes the lock and still finds that record knows that the
previous holder stopped without finishing: a stale claim. The run then has no `status.json`
and is redone from scratch, like any interrupted run (`simu_bench.store.runs`).

On a shared filesystem (SLURM array jobs) the lock is only as good as the filesystem's `flock`:
local disks, NFSv4 and Lustre mounted with `flock` honour it across machines.
"""

from __future__ import annotations

import inspect
import os
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from filelock import FileLock, Timeout

from simu_bench.errors import UserError
from simu_bench.files import atomic_write_json, read_json, remove_temp_files

FOLDER = ".claims"  # inside the run store


def claim_path(out: Path, method: str, seed: int | None) -> Path:
    """Where the claim of a run lives, without a suffix: DIR/.claims/<method>.seed<k> (or <method>)."""
    return Path(out) / FOLDER / (method if seed is None else f"{method}.seed{seed}")


def _file_lock(path: Path, timeout: float):
    """A `filelock.FileLock` that the OS releases with its process (never a soft lock file)."""
    options = {"timeout": timeout, "thread_local": False}
    if "fallback_to_soft" in inspect.signature(FileLock.__init__).parameters:
        options["fallback_to_soft"] = False  # a soft lock would outlive a killed worker
    return FileLock(str(path), **options)


def _acquire(lock, path: Path, what: str) -> bool:
    """Take ``lock``; False when another process holds it. UserError when it cannot be made."""
    try:
        lock.acquire()
    except Timeout:
        return False
    except OSError as error:
        raise UserError(
            f"cannot lock {path} ({error.strerror or error}) to claim {what}; every worker needs write "
            f"access to the run store: fix its permissions or choose another --out"
        ) from None
    return True


def owner_text(record: dict | None) -> str:
    """'pid 123 on host-a since 2026-01-01T10:00:00Z' for an owner record ('' when unknown)."""
    if not record:
        return ""
    return f"pid {record.get('pid')} on {record.get('host')} since {record.get('since')}"


@dataclass
class Claim:
    """The outcome of `claim`: ``held`` (this worker may run it), or the ``owner`` who has it.

    ``stale`` describes a previous holder that stopped without finishing ('' when none).
    """

    path: Path  # the claim's path without suffix (`claim_path`)
    held: bool
    owner: str = ""
    stale: str = ""
    _lock: object = None

    def release(self) -> None:
        """Give the run back: remove the owner record, then unlock (idempotent)."""
        if self._lock is None:
            return
        try:
            _owner_file(self.path).unlink(missing_ok=True)
        finally:
            self._lock.release()
            self._lock = None

    def __enter__(self) -> "Claim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


def _lock_file(path: Path) -> Path:
    return path.with_name(path.name + ".lock")


def _owner_file(path: Path) -> Path:
    return path.with_name(path.name + ".json")


def make_folder(folder: Path, what: str) -> None:
    """Create the claims folder; UserError when it cannot be made, or is a file or a symbolic link."""
    folder = Path(folder)
    if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
        kind = "a symbolic link" if folder.is_symlink() else "a file"
        raise UserError(f"cannot create {folder} (it is {kind}, not a folder) to claim {what}: the run store keeps "
                        f"the claims of its runs there; remove it (rm {folder}) or choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise UserError(
            f"cannot create {folder} ({error.strerror or error}) to claim {what}; fix the run store's "
            f"permissions or choose another --out"
        ) from None


def claim(path: Path, what: str = "the run") -> Claim:
    """Try to claim the run whose claim lives at ``path`` (`claim_path`) without waiting.

    Creates the claims folder. Raises UserError when the lock or the owner record cannot be
    written; ``what`` names the run in that message.
    """
    path = Path(path)
    make_folder(path.parent, what)
    lock = _file_lock(_lock_file(path), timeout=0)
    if not _acquire(lock, _lock_file(path), what):
        return Claim(path, held=False, owner=owner_text(read_claim(path)) or "another worker")
    stale = read_claim(path)
    remove_temp_files(path.parent, names=(_owner_file(path).name,))  # an owner record cut short by a kill
    record = {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "since": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    try:
        atomic_write_json(_owner_file(path), record)  # a failed write raises a one-line UserError
    except BaseException:
        lock.release()
        raise
    stale_text = (owner_text(stale) or "an unknown worker") if stale is not None else ""
    return Claim(path, held=True, stale=stale_text, _lock=lock)


def read_claim(path: Path) -> dict | None:
    """The owner record of the claim at ``path``, or None when nobody holds or left one."""
    owner = _owner_file(Path(path))
    if not owner.exists():
        return None
    try:
        record = read_json(owner)
    except (OSError, ValueError, UserError):  # half-visible or removed meanwhile
        return {}
    return record if isinstance(record, dict) else {}


def leaderboard_lock(out: Path, timeout: float = 600.0):
    """A blocking lock on the run store's leaderboard files, as a context manager.

    Raises UserError when it cannot be created, or is not free within ``timeout`` seconds.
    """
    path = Path(out) / FOLDER / "leaderboard.lock"
    make_folder(path.parent, "the leaderboard")
    lock = _file_lock(path, timeout=timeout)
    if not _acquire(lock, path, "the leaderboard"):
        raise UserError(f"{path} stayed locked for {timeout:.0f} s; another worker is stuck writing the leaderboard")
    return _Held(lock)


class _Held:
    def __init__(self, lock):
        self._lock = lock

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()

"""Reading and writing the project's files: JSON lines in, atomic writes out.

Every file simu-bench writes goes through a temporary file in the same folder and a rename, so
a file is either complete or absent (a crash never leaves half a result). Every JSON-lines file
it reads goes through `read_jsonl`, so a broken file always stops with its path and line.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path

from simu_bench.errors import UserError

_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask (the only way is to set it and put it back)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write one JSON object per line, atomically, keys in the order given."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def read_json(path: Path, fix: str = "delete the run directory to redo it"):
    """Read a JSON file simu-bench wrote; a broken one (e.g. edited by hand) is a UserError."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}: malformed JSON ({error.msg}); {fix}") from None


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line of a JSON-lines file of objects.

    Raises UserError naming the file and line for text that is not UTF-8, a line that is not
    JSON, or a value that is not an object.
    """
    path = Path(path)
    try:
        # split on "\n" only: str.splitlines would also cut at U+2028 and friends, which JSON
        # allows raw inside strings (and write_jsonl writes them raw).
        lines = path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError as error:
        raise UserError(
            f"{path}: not UTF-8 text ({error.reason} at byte {error.start}); expected a UTF-8 JSON-lines file"
        ) from None
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(
                f"{path}:{number}: malformed JSON ({error.msg} at column {error.colno}); "
                f"expected one JSON object per line"
            ) from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
        rows.append((number, row))
    return rows

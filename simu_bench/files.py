"""Reading and writing the project's files: JSON lines in, atomic writes out.

Every file simu-bench writes goes through a temporary file in the same folder and a rename, so
a file is either complete or absent (a crash never leaves half a result); `remove_temp_files`
clears the temporary files of writes cut short by a kill. A write that fails for lack of space
(or any other OS error) raises `WriteError`, a `UserError`, with its temporary file removed.

Every input file is read through `read_text` (data, configs, generations, the run store): a
folder, a named pipe or device, an unreadable file or bytes that are not UTF-8 stop with one line
that names the path. `read_jsonl` and `read_json` add the limits that keep a hostile file from
exhausting memory or the stack: at most `max_row_bytes()` per JSON-lines row (64 KiB, the
longest public LUME row is under 2 KB; `$SIMU_BENCH_MAX_ROW_BYTES` changes it), JSON nested no
deeper than Python's parser allows, and no lone UTF-16 surrogate (``"\\ud800"``) in a string,
which no tokenizer can encode.
"""

from __future__ import annotations

import errno
import json
import os
import re
import stat
import sys
import tempfile
import time
from pathlib import Path

from simu_bench.errors import UserError

MAX_ROW_BYTES_ENV = "SIMU_BENCH_MAX_ROW_BYTES"
DEFAULT_MAX_ROW_BYTES = 64 << 10
TEMP_PATTERN = ".*.tmp"  # what `atomic_write_bytes` names its temporary files: .<name>.<random>.tmp
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89abcdefABCDEF]")  # \ud800-\udfff written as a JSON escape


class WriteError(UserError):
    """A file could not be written (no space left, read-only or unwritable folder): nothing half-written stays."""


_UMASK = os.umask(0)
os.umask(_UMASK)  # read the process umask (the only way is to set it and put it back)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write `data` to `path` through a temporary file in the same folder and a rename."""
    path = Path(path)
    if path.is_dir():
        raise WriteError(f"{path} is a directory; expected a file name to write: give a path such as {path / 'out'}")
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600 files; give the usual permissions
        os.replace(tmp, path)
    except BaseException as error:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(error, OSError):
            raise WriteError(_write_failure(path, error)) from None
        raise


def _write_failure(path: Path, error: OSError) -> str:
    """One line for a failed write: what, where, and what to do about it."""
    reason = error.strerror or type(error).__name__
    if error.errno in (errno.ENOSPC, errno.EDQUOT):
        fix = "free space there (or choose another --out) and run the same command again: finished results are kept"
    elif error.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        fix = "make the folder writable or choose another --out"
    else:
        fix = "check the folder and run the same command again: finished results are kept"
    return f"cannot write {path} ({reason}); {fix}"


def remove_temp_files(directory: Path, names: tuple[str, ...] | None = None, min_age_s: float = 0.0) -> int:
    """Delete the temporary files of writes cut short by a kill at the top of `directory`; return how many.

    With `names`, only those of writes to these file names (in a folder that is not simu-bench's
    own); with `min_age_s`, only files untouched for that long (a write in progress takes
    milliseconds). The caller makes sure that no other process writes them meanwhile, or passes
    `min_age_s` (`simu-bench run` holds the run store's leaderboard lock for its top; each run
    folder is cleaned by `Run.begin` under its claim).
    """
    removed = 0
    directory = Path(directory)
    if not directory.is_dir():
        return 0
    patterns = [TEMP_PATTERN] if names is None else [f".{name}.*.tmp" for name in names]
    for leftover in (path for pattern in patterns for path in directory.glob(pattern)):
        try:
            if leftover.is_symlink() or not leftover.is_file() or time.time() - leftover.stat().st_mtime < min_age_s:
                continue
        except OSError:  # removed meanwhile
            continue
        leftover.unlink(missing_ok=True)
        removed += 1
    return removed


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: Path, value) -> None:
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True, ensure_ascii=False) + "\n")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    """Write one JSON object per line, atomically, keys in the order given."""
    atomic_write_text(path, "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows))


def max_row_bytes() -> int:
    """The largest JSON-lines row read, in bytes: `$SIMU_BENCH_MAX_ROW_BYTES`, default 64 KiB."""
    text = os.environ.get(MAX_ROW_BYTES_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_ROW_BYTES
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise UserError(f"${MAX_ROW_BYTES_ENV} is {text!r}; expected a positive number of bytes, e.g. 1048576")
    return value


def read_bytes(path: Path, expected: str = "a file") -> bytes:
    """The bytes of a regular file; UserError for a missing, unreadable or non-regular one.

    The file is opened without blocking and checked before it is read, so a named pipe (which
    would wait forever for a writer) or a device is refused, not read.
    """
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise UserError(f"{path}: no such file; expected {expected}") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory; expected {expected}: give the file, not the folder") from None
    except PermissionError:
        raise UserError(f"{path}: permission denied; expected {expected} readable by this user: "
                        f"fix its permissions (chmod a+r) or run as its owner") from None
    except OSError as error:
        raise UserError(f"{path}: cannot open ({error.strerror}); expected {expected}") from None
    mode = os.fstat(fd).st_mode
    if not stat.S_ISREG(mode):
        os.close(fd)
        if stat.S_ISDIR(mode):
            raise UserError(f"{path} is a directory; expected {expected}: give the file, not the folder")
        raise UserError(f"{path} is not a regular file (a named pipe, socket or device); expected {expected}: "
                        "copy its content into a file and give that")
    with os.fdopen(fd, "rb") as handle:
        try:
            return handle.read()
        except OSError as error:
            raise UserError(f"{path}: cannot read ({error.strerror}); expected {expected}") from None


def read_text(path: Path, expected: str = "a UTF-8 text file") -> str:
    """The text of a regular UTF-8 file (see `read_bytes`); UserError naming the line of a bad byte."""
    data = read_bytes(path, expected)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data.count(b"\n", 0, error.start) + 1
        raise UserError(
            f"{path}:{line}: not UTF-8 text ({error.reason} at byte {error.start}); expected {expected}: "
            "save it as UTF-8"
        ) from None


def _too_deep(path, where: str, what: str) -> UserError:
    return UserError(f"{path}{where}: {what} nested too deeply (over ~{sys.getrecursionlimit()} levels); "
                     "expected a flat record: fix the file")


def read_json(path: Path, fix: str = "delete the run directory to redo it", expect: type | None = None):
    """Read a JSON file simu-bench wrote; a broken one (e.g. edited by hand) is a UserError.

    With `expect` (e.g. dict), a value of another type is a UserError too: a file that parses but
    has the wrong shape is as broken as one that does not parse.
    """
    text = read_text(path, "a UTF-8 JSON file")
    try:
        value = json.loads(text)
    except json.JSONDecodeError as error:
        raise UserError(f"{path}:{error.lineno}: malformed JSON ({error.msg}); {fix}") from None
    except RecursionError:
        raise _too_deep(path, "", "JSON") from None
    if expect is not None and not isinstance(value, expect):
        raise UserError(f"{path}: expected a JSON {_JSON_NAMES.get(expect, expect.__name__)}, "
                        f"found {_JSON_NAMES.get(type(value), type(value).__name__)}; {fix}")
    return value


_JSON_NAMES = {dict: "object", list: "array", str: "string", int: "number", float: "number", bool: "boolean",
               type(None): "null"}


def read_jsonl(path: Path) -> list[tuple[int, dict]]:
    """(line number, row) for every non-blank line of a JSON-lines file of objects.

    Raises UserError naming the file (and line) for a file `read_text` refuses, a line longer than
    `max_row_bytes()`, a line that is not JSON or nests too deeply, a value that is not an object,
    or a string holding a lone surrogate.
    """
    path = Path(path)
    # split on "\n" only: str.splitlines would also cut at U+2028 and friends, which JSON
    # allows raw inside strings (and write_jsonl writes them raw).
    lines = read_text(path, "a UTF-8 JSON-lines file").split("\n")
    limit = max_row_bytes()
    rows = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        if len(line) * 4 > limit and len(line.encode("utf-8")) > limit:  # a UTF-8 character is 1-4 bytes
            raise UserError(
                f"{path}:{number}: the row is {len(line.encode('utf-8')):,} bytes, over the limit of {limit:,}; "
                f"expected rows of text of ordinary length: shorten it, or raise ${MAX_ROW_BYTES_ENV}"
            )
        try:
            row = json.loads(line)
        except json.JSONDecodeError as error:
            raise UserError(
                f"{path}:{number}: malformed JSON ({error.msg} at column {error.colno}); "
                f"expected one JSON object per line"
            ) from None
        except RecursionError:
            raise _too_deep(path, f":{number}", "JSON") from None
        if not isinstance(row, dict):
            raise UserError(f"{path}:{number}: expected a JSON object, found {type(row).__name__}")
        if _SURROGATE_ESCAPE.search(line):
            _check_unicode(row, f"{path}:{number}")
        rows.append((number, row))
    return rows


def _check_unicode(row: dict, where: str) -> None:
    """UserError when a string of `row` holds a lone UTF-16 surrogate (JSON allows "\\ud800" escapes)."""
    for key, value in row.items():
        for text in (key, value) if isinstance(value, str) else (key,):
            try:
                text.encode("utf-8")
            except UnicodeEncodeError as error:
                raise UserError(
                    f"{where}: field {key!r} holds a lone surrogate {text[error.start]!r} at character {error.start}; "
                    "expected valid Unicode text: write the character itself or a surrogate pair"
                ) from None
    try:
        json.dumps(row, ensure_ascii=False).encode("utf-8")  # nested values
    except UnicodeEncodeError:
        raise UserError(f"{where}: a value holds a lone surrogate; expected valid Unicode text") from None

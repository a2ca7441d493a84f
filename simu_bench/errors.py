"""The one exception type for bad user input.

Anything the user can fix (a missing file, a bad field, an unknown name) raises `UserError`
with one line that says what was wrong, where, what was expected and how to fix it. The CLI
prints that line to stderr and exits with status 2; library callers can catch it.
"""

import difflib


class UserError(Exception):
    """Bad input from the user; the message is a single, complete line."""


SHOWN = 10  # names listed at most; a registry of thousands (lm-eval's tasks) stays one short line


def did_you_mean(name: str, available) -> str:
    """' (did you mean X?); available: a, b, c' for an unknown ``name``.

    Up to `SHOWN` names are listed: all of them when there are that few, else the closest.
    """
    available = sorted(available)
    if not available:
        return "; this section takes no keys"
    close = difflib.get_close_matches(name, available, n=SHOWN, cutoff=0.5)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if len(available) <= SHOWN:
        return f"{hint}; available: {', '.join(available)}"
    if not close:
        return f"; none of the {len(available):,} available names is close"
    return f"{hint}; closest of {len(available):,}: {', '.join(close)}"

"""The one exception type for bad user input.

Anything the user can fix (a missing file, a bad field, an unknown name) raises `UserError`
with one line that says what was wrong, where, what was expected and how to fix it. The CLI
prints that line to stderr and exits with status 2; library callers can catch it.
"""


class UserError(Exception):
    """Bad input from the user; the message is a single, complete line."""


def did_you_mean(name: str, available: list[str] | tuple[str, ...]) -> str:
    """Return ' (did you mean X?) available: a, b, c' for an unknown `name`."""
    import difflib

    close = difflib.get_close_matches(name, list(available), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    if not available:
        return "; this section takes no keys"
    return f"{hint}; available: {', '.join(sorted(available))}"

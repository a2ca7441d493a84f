"""The check every fault test makes: bad input is one line on stderr and exit status 2."""

from __future__ import annotations

from simu_bench.cli import main


def one_line(capsys, argv: list, *needles: str, stdout_empty: bool = False) -> str:
    """Run the CLI on `argv`; assert exit status 2, one line on stderr (no traceback) holding every
    needle, and with `stdout_empty` nothing on stdout; return the line."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2, (code, err)
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert not stdout_empty or out == "", out
    for needle in needles:
        assert needle in err, err
    return err

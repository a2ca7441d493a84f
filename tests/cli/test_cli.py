"""The command line's own behaviour, independent of any subcommand's work."""

import os
import sys

from simu_bench.cli import main


def test_a_closed_pipe_ends_quietly_with_141(monkeypatch, capsys):
    read, write = os.pipe()
    os.close(read)  # the reader is gone, as with `simu-bench ls | head -1` after one line
    with os.fdopen(write, "w") as stream:
        monkeypatch.setattr(sys, "stdout", stream)
        assert main(["ls"]) == 141
    assert capsys.readouterr().err == ""

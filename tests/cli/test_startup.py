"""`simu-bench --help` starts fast: the command line imports no heavy library until a command runs.

`python -X importtime` lists every module the interpreter imported; torch, transformers, lm-eval,
scipy and matplotlib each take from a few hundred milliseconds to seconds to import, so none of
them may be on the path that only builds the parser (`--help`, a typo, a bad flag).
"""

from __future__ import annotations

import subprocess
import sys

import pytest

HEAVY = ("torch", "transformers", "lm_eval", "scipy", "matplotlib")


def imported_modules(*args: str) -> set[str]:
    """Top-level names of the modules `python -X importtime -m simu_bench ARGS` imported."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "simu_bench", *args], capture_output=True,
                          text=True, timeout=120)
    names = set()
    for line in done.stderr.splitlines():
        if line.startswith("import time:") and "|" in line:
            names.add(line.rsplit("|", 1)[1].strip().split(".")[0])
    assert "simu_bench" in names, done.stderr[-2000:]  # the listing was read
    return names


@pytest.mark.parametrize("args", [("--help",), ("run", "--help"), ("leaderboard", "--help")])
def test_help_imports_no_heavy_library(args):
    heavy = sorted(set(HEAVY) & imported_modules(*args))
    assert heavy == [], f"`simu-bench {' '.join(args)}` imports {heavy}; import them inside the functions that use them"

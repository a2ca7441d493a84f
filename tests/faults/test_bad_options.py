"""Method options that cannot work are refused up front: one line, exit status 2, before the target
is evaluated and before anything is written (each method's `check_config`)."""

from __future__ import annotations

from pathlib import Path

import pytest

from simu_bench.cli import main
from simu_bench.target_model.build import prepare

from conftest import MICRO_DATA, MICRO_TARGET


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


def one_line(capsys, argv, *needles) -> str:
    code = main([str(a) for a in argv])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1 and "Traceback" not in err, (code, err)
    for needle in needles:
        assert needle in err, err
    return err


def run(micro, out: Path, method: str, *overrides: str) -> list:
    sets = [word for text in overrides for word in ("--set", text)]
    return ["run", "--methods", method, "--out", out, "--data", micro.data_dir, "--model", micro.target_dir,
            *sets, "--max-new-tokens", "4", "--quiet"]


@pytest.mark.parametrize("override", ["optimizer.name=adamw", "optimizer.lr=0"])
def test_wagle_runs_with_adamw_and_with_lr_0(override, micro, tmp_path, capsys):
    """WAGLE once took mu = 1 / lr (ZeroDivisionError at lr 0) and refused AdamW only after the
    target was written; it now uses the authors' fixed mu and the optimizer its config names."""
    import json

    out = tmp_path / "out"
    assert main([str(a) for a in run(micro, out, "wagle", override, "train.max_steps=1")]) == 0, capsys.readouterr()
    capsys.readouterr()
    assert json.loads((out / "wagle" / "seed0" / "status.json").read_text())["status"] == "ok"

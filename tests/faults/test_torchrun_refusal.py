"""A method torchrun cannot run is refused by every rank together: one line (rank 0's), every rank
exits 2 (none is stopped by a signal), torchrun's report names the line, nothing is written."""

from __future__ import annotations

import subprocess
import sys

import pytest

from simu_bench.target_model.cache import prepare

from conftest import MICRO_DATA, MICRO_TARGET

LINE = ("simu-bench run: error: method 'npo' cannot run across processes: its loss is not normalised by the global "
        "answer-token count; run it in one process (without torchrun)")


@pytest.fixture(scope="module")
def micro(tiny_cache):
    return prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=tiny_cache, progress=False)


@pytest.mark.slow  # runs simu-bench end to end
def test_a_refused_method_under_torchrun_exits_every_rank_with_2(micro, tmp_path):
    out = tmp_path / "out"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "simu_bench", "run",
               "--methods", "npo", "--seeds", "0", "--data", str(micro.data_dir), "--model", str(micro.target_dir),
               "--out", str(out), "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, cwd=tmp_path)
    err = result.stderr
    assert result.returncode == 1, err  # torchrun's own status for a failed worker
    assert err.splitlines().count(LINE) == 1, err  # printed by rank 0 only
    assert err.count("exitcode  : 2 ") == 2 and "exitcode  : -15" not in err, err  # both refused, none killed
    assert err.count(f"traceback : {LINE}") == 2, err  # torchrun's report names the refusal, not a traceback
    assert err.count("Traceback (most recent call last)") <= 1, err  # torchrun's own ChildFailedError only
    assert not out.exists()

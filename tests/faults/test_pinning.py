"""The embedded benchmark's bytes do not depend on the CPU's vector unit.

Another CPU is simulated by the variables through which ATen and MKL pick their kernels
(`ATEN_CPU_CAPABILITY=default` selects the scalar kernels an old CPU would get). Each build
runs in a fresh process, since both libraries read their choice once per process.
"""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from simu_bench import cli
from simu_bench.target_model import pinning

TESTS = Path(__file__).resolve().parents[1]  # conftest.py
# Build a micro target, then unlearn it with one method for two steps and score it.
SCRIPT = """
import sys
sys.path.insert(0, {tests!r})
from simu_bench.target_model.pinning import pin_cpu_kernels
if sys.argv[1] == "pin":
    pin_cpu_kernels()
from conftest import MICRO_DATA, MICRO_TARGET
from simu_bench.cli import main
from simu_bench.target_model.cache import prepare
prepared = prepare(MICRO_DATA, MICRO_TARGET, seed=0, cache=sys.argv[2], progress=False)
sys.exit(main(["run", "--methods", "so_graddiff", "--seeds", "0", "--out", sys.argv[3], "--data",
               str(prepared.data_dir), "--model", str(prepared.target_dir), "--set", "train.max_steps=2",
               "--max-new-tokens", "8", "--quiet"]))
"""
OTHER_CPU = {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "MKL_CBWR": "COMPATIBLE"}


def build(tmp_path: Path, name: str, pin: bool, env: dict) -> dict[str, bytes]:
    cache, out = tmp_path / name / "cache", tmp_path / name / "out"
    environ = {k: v for k, v in os.environ.items() if k not in pinning.OVERRIDDEN} | env
    script = SCRIPT.format(tests=str(TESTS))
    subprocess.run([sys.executable, "-c", script, "pin" if pin else "free", str(cache), str(out)],
                   env=environ, check=True, timeout=600, capture_output=True)
    model = next(cache.glob("targets/*/target/model.safetensors"))
    run = out / "so_graddiff" / "seed0"
    return {"model": model.read_bytes(), **{f: (run / f).read_bytes() for f in ("metrics.json", "generations.jsonl")}}


@pytest.mark.slow  # builds a target and runs simu-bench twice, each in a fresh process
@pytest.mark.skipif(not {"avx2", "fma"} <= pinning.cpu_flags(), reason="the pin needs an x86-64 CPU with AVX2 and FMA")
def test_pinned_kernels_give_the_same_bytes_as_on_another_cpu(tmp_path):
    here = build(tmp_path, "here", pin=True, env={})
    elsewhere = build(tmp_path, "elsewhere", pin=True, env=OTHER_CPU)
    assert here == elsewhere
    # Without the pin the simulated CPU trains other weights: the comparison above can fail.
    unpinned = build(tmp_path, "unpinned", pin=False, env=OTHER_CPU)
    assert unpinned["model"] != here["model"]


@pytest.mark.parametrize("argv, pinned", [
    (["prepare", "--quiet"], True),
    (["run", "--methods", "fo_graddiff"], True),
    (["run", "--methods", "fo_graddiff", "--model", "some/folder"], False),
    (["tune", "--methods", "fo_graddiff", "--out", "x"], True),
    (["ls"], False),
])
def test_commands_on_the_embedded_target_pin_their_kernels(argv, pinned, monkeypatch):
    calls = []
    monkeypatch.setattr(cli, "pin_cpu_kernels", lambda: calls.append(True))
    handlers = []
    parser = cli.build_parser()
    args = parser.parse_args(argv)
    monkeypatch.setattr(cli, "build_parser", lambda: parser)
    monkeypatch.setattr(args, "handler", lambda _: handlers.append(True) or 0, raising=False)
    monkeypatch.setattr(parser, "parse_args", lambda _: args)
    assert cli.main(argv) == 0 and handlers
    assert bool(calls) == pinned


def test_no_pin_without_avx2(tmp_path, monkeypatch):
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse sse2 sse4_2\n")
    for name in pinning.OVERRIDDEN:  # restored after the test, whatever the pin sets
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("ATEN_CPU_CAPABILITY", "default")
    assert pinning.pin_cpu_kernels(cpuinfo) is False
    assert os.environ["ATEN_CPU_CAPABILITY"] == "default"
    cpuinfo.write_text("processor\t: 0\nflags\t\t: fpu sse avx avx2 fma\n")
    monkeypatch.setenv("MKL_ENABLE_INSTRUCTIONS", "SSE4_2")
    assert pinning.pin_cpu_kernels(cpuinfo) is True
    assert os.environ["ATEN_CPU_CAPABILITY"] == "avx2" and os.environ["MKL_CBWR"] == "AVX2"
    assert "MKL_ENABLE_INSTRUCTIONS" not in os.environ

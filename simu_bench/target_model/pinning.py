"""The same float kernels on every x86-64 CPU, so the embedded benchmark's bytes travel.

PyTorch picks its vectorised CPU kernels (ATen) and MKL picks its BLAS code path from the
CPU's vector unit: an AVX-512 machine and an AVX2 machine train different `model.safetensors`
from the same seed, and so report different metrics. Pinning both to AVX2, the widest set
almost every x86-64 CPU of the last decade has, makes the embedded target and every run on
it byte-identical across machines. On an AVX2 CPU the pinned kernels are the ones it picks
anyway, so the pin costs nothing there; on an AVX-512 CPU it gives up the wider vectors.

Both libraries read these variables once, at their first kernel call, so `pin_cpu_kernels()`
works after `import torch` but must run before any tensor operation. The pin overrides what
the caller set: the embedded benchmark's numbers are meant to be the same for everyone. A
model the user names with `--model` is left alone (its numbers are the user's machine's).
"""

from __future__ import annotations

import os
from pathlib import Path

PINNED = {"ATEN_CPU_CAPABILITY": "avx2", "MKL_CBWR": "AVX2"}
# Variables by which a caller (or a test simulating another CPU) selects other code paths.
OVERRIDDEN = ("ATEN_CPU_CAPABILITY", "MKL_CBWR", "MKL_ENABLE_INSTRUCTIONS")


def cpu_flags(cpuinfo: Path = Path("/proc/cpuinfo")) -> set[str]:
    """The feature flags of the first CPU listed in /proc/cpuinfo (empty where there is none)."""
    try:
        text = cpuinfo.read_text(errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def pin_cpu_kernels(cpuinfo: Path = Path("/proc/cpuinfo")) -> bool:
    """Select AVX2 kernels in ATen and MKL; True when pinned.

    Does nothing (False) on a CPU without AVX2 and FMA, e.g. ARM or a very old x86: there
    the embedded benchmark still runs, with numbers of that machine.
    """
    if not {"avx2", "fma"} <= cpu_flags(cpuinfo):
        return False
    for name in OVERRIDDEN:
        os.environ.pop(name, None)
    os.environ.update(PINNED)
    return True


def pinned_kernels() -> dict:
    """What environment.json records: the kernels torch uses and whether they were pinned."""
    import torch  # never at the top: this module sets the environment before torch is first imported

    return {
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "pinned": {name: os.environ.get(name) for name in PINNED},
    }

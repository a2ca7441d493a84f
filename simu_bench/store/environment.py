"""What a result was made with: library versions, git revision, device and date.

Stored beside every run (`environment.json`) so that a number can be traced to its code.
"""

from __future__ import annotations

import datetime
import platform
import subprocess
from importlib import metadata
from pathlib import Path

import torch

from simu_bench.target_model.pinning import pinned_kernels

LIBRARIES = (
    "simu-bench", "torch", "transformers", "tokenizers", "lm-eval", "accelerate",
    "safetensors", "rouge-score", "scikit-learn", "numpy", "datasets",
)


def library_versions() -> dict[str, str | None]:
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def git_revision(path: Path | None = None) -> str | None:
    """The commit of the source tree this package runs from, '+dirty' when it has local edits.

    None for an installed wheel (no git checkout around the package).
    """
    path = path or Path(__file__).resolve().parent
    try:
        revision = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=path, capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=path, capture_output=True,
            text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return revision + ("+dirty" if dirty else "")


def describe_device(device: str) -> str:
    """A readable name of the device, e.g. 'cpu (2 threads)' or 'cuda:0 (NVIDIA H200)'."""
    if device.startswith("cuda") and torch.cuda.is_available():
        return f"{device} ({torch.cuda.get_device_name(torch.device(device))})"
    if device == "cpu":
        return f"cpu ({platform.processor() or platform.machine()}, torch threads={torch.get_num_threads()})"
    return device


def environment(device: str) -> dict:
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "device": describe_device(device),
        "cpu_kernels": pinned_kernels(),
        "git": git_revision(),
        "libraries": library_versions(),
    }

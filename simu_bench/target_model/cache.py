"""The cache of prepared targets: the data directory and the trained target of each recipe.

`prepare()` writes the data directory and the trained target (`simu_bench.target_model.build`)
into a cache directory under a hash of (data files, config, seed, code version) and reuses a
finished entry. Command line: `simu-bench prepare` (see `simu_bench.commands.prepare`).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from simu_bench import __version__
from simu_bench.data.lume import LumeData, load_lume
from simu_bench.data.subset import subset_lume
from simu_bench.data.synthetic import SyntheticConfig, write_dataset, write_rows
from simu_bench.target_model.build import RECIPE_MODULES, train_target
from simu_bench.target_model.settings import DEFAULT_DOCS_PER_TASK, TargetConfig

DATA_FILES = ("forget.jsonl", "retain.jsonl", "member.jsonl", "nonmember.jsonl", "world_facts.jsonl")


@dataclass(frozen=True)
class Prepared:
    """Where `prepare()` put things, the loaded data, and the build's record (manifest.json)."""

    data_dir: Path
    target_dir: Path
    data: LumeData
    info: dict = field(default_factory=dict, compare=False)


def cache_dir() -> Path:
    """The cache root: `$SIMU_BENCH_CACHE` if set, else `~/.cache/simu-bench`."""
    configured = os.environ.get("SIMU_BENCH_CACHE")
    return Path(configured).expanduser() if configured else Path.home() / ".cache" / "simu-bench"


def _write_data(directory: Path, data, seed: int, docs_per_task: int) -> None:
    """Write the data directory: the generator's output, or a seeded subset of a LUME folder."""
    if data is None or not isinstance(data, (str, Path)):
        write_dataset(directory, data if data is not None else SyntheticConfig(), seed)
        return

    # subset_lume returns generate()-shaped rows, the embedded world facts as the utility measure
    write_rows(directory, subset_lume(load_lume(Path(data)), docs_per_task, seed))


def _data_hash(directory: Path) -> str:
    digest = hashlib.sha256()
    for name in DATA_FILES:
        path = directory / name
        if path.exists():
            digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _code_version() -> dict:
    """simu-bench's version, a hash of the recipe's source, and the libraries that train."""
    digest = hashlib.sha256()
    for name in RECIPE_MODULES:
        digest.update((Path(__file__).parent / name).read_bytes())
    versions = {package: importlib.metadata.version(package) for package in ("torch", "transformers", "tokenizers")}
    return {"simu_bench": __version__, "recipe_sha256": digest.hexdigest()[:16], **versions}


def _remove_abandoned_builds(targets: Path, older_than_s: float = 6 * 3600) -> None:
    """Delete staging folders of builds that were killed outright (no cleanup ran); a build
    takes minutes, so one untouched for hours is not in progress."""
    now = time.time()
    for staging in targets.glob(".building-*"):
        try:
            if now - staging.stat().st_mtime > older_than_s:
                shutil.rmtree(staging, ignore_errors=True)
        except OSError:  # removed by another process meanwhile
            pass


def _is_complete(entry: Path) -> bool:
    return (entry / "manifest.json").is_file() and (entry / "target" / "model.safetensors").is_file()


def prepare(data=None, target: TargetConfig = TargetConfig(), seed: int = 0, cache: Path | None = None,
            progress: bool = True, *, docs_per_task: int = DEFAULT_DOCS_PER_TASK) -> Prepared:
    """Build (or reuse) the data directory and the memorised target; return where they are.

    Args:
        data: None for the default synthetic data, a `SyntheticConfig`, or a LUME folder (a
            seeded subset of `docs_per_task` documents per task and split is used; the unused
            documents become the held-out non-members).
        target: the model size and training recipe.
        seed: seeds the data generator (or subset) and the training.
        cache: the cache root; default `cache_dir()`.
        progress: show a progress bar while training.

    The cache entry is `<cache>/targets/<hash>/{data,target,manifest.json}`. It is built in a
    temporary folder and renamed into place, so an interrupted build leaves no partial entry.
    """
    root = Path(cache) if cache is not None else cache_dir()
    targets = root / "targets"
    targets.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(targets)
    staging = Path(tempfile.mkdtemp(prefix=".building-", dir=targets))
    try:
        _write_data(staging / "data", data, seed, docs_per_task)
        recipe = {
            "data_sha256": _data_hash(staging / "data"),
            "target": asdict(target),
            "seed": seed,
            "code": _code_version(),
        }
        key = hashlib.sha256(json.dumps(recipe, sort_keys=True).encode()).hexdigest()[:16]
        entry = targets / key
        if not _is_complete(entry):
            started = time.perf_counter()
            loaded = load_lume(staging / "data")
            stats = train_target(loaded, target, seed, staging / "target", progress=progress)
            manifest = {**recipe, **stats, "prepare_seconds": round(time.perf_counter() - started, 2)}
            (staging / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
            if entry.exists():  # an incomplete leftover under the same key: replace it
                shutil.rmtree(entry)
            try:
                staging.rename(entry)
            except OSError:
                if not _is_complete(entry):  # another process finished first: keep theirs
                    raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    info = json.loads((entry / "manifest.json").read_text())
    return Prepared(entry / "data", entry / "target", load_lume(entry / "data"), info)

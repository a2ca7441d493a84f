"""Helpers the LUME task YAML files reach through `!function utils.<name>`.

`load_rows` is every task's `custom_dataset`: lm-eval calls it with the run's metadata (the
`--metadata` JSON, or `TaskManager(metadata=...)`) and the task's `dataset_kwargs` as keyword
arguments, so the data directory is a run-time setting and never a path in the YAML.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path

from simu_bench.data.lume import load_lume
from simu_bench.errors import UserError
from simu_bench.evaluation import scoring

COLUMNS = ("id", "input", "output", "task", "split", "kind")


@functools.lru_cache(maxsize=4)
def _load(root: str, stamp: tuple):
    # `stamp` (file names, sizes, mtimes) makes a changed directory a cache miss.
    return load_lume(root)


def _stamp(root: Path) -> tuple:
    return tuple(sorted((p.name, p.stat().st_size, p.stat().st_mtime_ns) for p in root.iterdir() if p.is_file()))


def load_rows(lume_split: str, lume_task: str, lume_kind: str, data_dir: str | None = None, **_metadata):
    """Rows of one (split, task, kind) cell of the LUME directory `data_dir`, as the `test` split.

    Each row keeps `id`, `input`, `output`, `task`, `split` and `kind`, so lm-eval's logged
    samples carry everything needed to rescore them.
    """
    import datasets
    import pyarrow as pa

    if not data_dir:
        raise UserError(
            "the LUME task pack needs the data directory as lm-eval metadata, which is missing; "
            "pass --metadata '{\"data_dir\": \"/path/to/lume\"}' to lm_eval, or "
            "TaskManager(include_path=..., metadata={'data_dir': ...}) in Python"
        )
    root = Path(data_dir).expanduser().resolve()
    if not root.is_dir():
        raise UserError(
            f"LUME data_dir {data_dir!r} (from lm-eval metadata) is not a directory; "
            "expected a folder with forget.jsonl and retain.jsonl"
        )
    stamp = _stamp(root)
    data = _load(str(root), stamp)
    rows = [e for e in data.split(lume_split) if e.task == lume_task and e.kind == lume_kind]
    if not rows:
        what = "world_facts.jsonl" if lume_split == "utility" else f"{lume_split} rows of {lume_task} ({lume_kind})"
        raise UserError(f"{root}: no {what}; this task has nothing to evaluate, so leave it out of --tasks")
    table = datasets.table.InMemoryTable(pa.table({name: [getattr(e, name) for e in rows] for name in COLUMNS}))
    features = datasets.Features({name: datasets.Value("string") for name in COLUMNS})
    # A fingerprint from the files' stamp: `Dataset.from_dict` would hash every row instead.
    fingerprint = hashlib.sha256(repr((str(root), stamp, lume_split, lume_task, lume_kind)).encode()).hexdigest()[:16]
    return {"test": datasets.Dataset(table, info=datasets.DatasetInfo(features=features), fingerprint=fingerprint)}


def process_regurgitation(doc: dict, results: list[str]) -> dict:
    """ROUGE-L recall of the generation against the row's `output` (texts through the official CSV round trip)."""
    return {"rougeL_recall": scoring.score_row("regurgitation", doc["output"], results[0])}


def process_knowledge(doc: dict, results: list[str]) -> dict:
    """Exact match after strip().lower() of the generation and the row's `output` (through the CSV round trip)."""
    return {"exact_match": scoring.score_row("knowledge", doc["output"], results[0])}

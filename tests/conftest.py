"""Shared fixtures: a tiny memorised target that every test of the suite may use.

`tiny_target` is the embedded benchmark's recipe at a smaller size (2 documents per task and
split, 6 non-members, 6 world facts: 46 training rows), built once per test session into a
temporary cache. Set `SIMU_BENCH_TEST_CACHE=DIR` to keep it in DIR between runs (the cache key
still rebuilds it whenever the data, the config or the code version changes).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simu_bench.data.synthetic import SyntheticConfig
from simu_bench.target.build import Prepared, TargetConfig, load_model, prepare

TINY_DATA = SyntheticConfig(documents_per_task=2, nonmember_documents=6, world_facts=6)
# Same model and recipe as the default, smaller batches so that 46 rows still take several
# steps per epoch (memorised in ~30 epochs, ~180 steps).
TINY_TARGET = TargetConfig(vocab_size=1024, batch_size=8)


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    configured = os.environ.get("SIMU_BENCH_TEST_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("simu-bench-cache")


@pytest.fixture(scope="session")
def tiny_target(tiny_cache) -> Prepared:
    """The tiny memorised target: `.data_dir`, `.target_dir` (save_pretrained folder), `.data`."""
    return prepare(TINY_DATA, TINY_TARGET, seed=0, cache=tiny_cache, progress=False)


@pytest.fixture
def tiny_model_and_tokenizer(tiny_target):
    """A fresh (model, tokenizer) loaded from `tiny_target` for each test, so tests may train it."""
    return load_model(tiny_target.target_dir)

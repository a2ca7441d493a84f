"""Shared fixtures: one torch thread, the tiny unlearning tokenizer and data, a tiny memorised target.

`tiny_target` is the embedded benchmark's recipe at a smaller size (2 documents per task and
split, 6 non-members, 6 world facts: 46 training rows), built once per test session into a
temporary cache. Set `SIMU_BENCH_TEST_CACHE=DIR` to keep it in DIR between runs (the cache key
still rebuilds it whenever the data, the config or the code version changes). `MICRO_DATA` and
`MICRO_TARGET` make a model small enough to build in about a second, for cache and determinism
checks that build their own.

`tokenizer` and `data` are the millisecond-sized tokenizer and forget/retain set of
`unlearn_helpers`, for the unlearning tests.

The fast lane, `python -m pytest -m "not slow"`, leaves out every test marked `slow`. Besides the
tests that carry the mark themselves, `pytest_collection_modifyitems` marks a test slow when
- it uses, directly or through other fixtures, a fixture that trains a target to memorisation
  or runs simu-bench end to end (`tiny_target`, and any fixture decorated with `@slow_fixture`),
- it builds the wheel (`packaging`), or
- it is a speed benchmark (tests/benchmarks/: timed with --benchmark-enable, run once otherwise).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from simu_bench.data.synthetic import SyntheticConfig
from simu_bench.target_model.cache import Prepared, prepare
from simu_bench.target_model.load import load_model
from simu_bench.target_model.settings import TargetConfig

TINY_DATA = SyntheticConfig(documents_per_task=2, nonmember_documents=6, world_facts=6)
# Two layers whatever the embedded default is, so the suite stays fast; smaller batches so
# that 46 rows still take several steps per epoch (memorised in ~30 epochs, ~180 steps).
TINY_TARGET = TargetConfig(vocab_size=1024, hidden_size=128, num_layers=2, intermediate_size=512, batch_size=8)
MICRO_DATA = SyntheticConfig(documents_per_task=1, nonmember_documents=3, world_facts=3)
MICRO_TARGET = TargetConfig(vocab_size=300, hidden_size=32, num_layers=2, intermediate_size=64, num_heads=2,
                            max_epochs=2, batch_size=4)


@pytest.fixture(autouse=True)
def one_seed_by_default(monkeypatch):
    """`run` without --seeds runs seed 0 in tests (the command's default is five seeds): the tests
    check what a run stores, and five seeds of every method would only make them slower."""
    from simu_bench.pipeline import plan

    monkeypatch.setattr(plan, "DEFAULT_SEEDS", "0")


@pytest.fixture(autouse=True)
def one_worker_by_default(monkeypatch):
    """`run` without --workers starts one worker in tests (the command's default is one per core):
    helper processes would make every test that runs the command slower, and the tests of
    --workers ask for it."""
    from simu_bench.pipeline import workers

    monkeypatch.setattr(workers, "default_workers", lambda plan: 1)


@pytest.fixture(scope="session", autouse=True)
def one_thread():
    """One intra-op torch thread for the whole run: tiny matrices gain nothing from threads, and
    on a busy 2-core machine two threads wait on each other in every matmul and the tests crawl."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tokenizer():
    """`unlearn_helpers.tiny_tokenizer()`: a byte-level BPE trained on the tiny data set."""
    from unlearn_helpers import tiny_tokenizer

    return tiny_tokenizer()


@pytest.fixture(scope="module")
def data():
    """`unlearn_helpers.tiny_data()`: 4 forget and 4 retain rows."""
    from unlearn_helpers import tiny_data

    return tiny_data()


@pytest.fixture(scope="session")
def tiny_cache(tmp_path_factory) -> Path:
    configured = os.environ.get("SIMU_BENCH_TEST_CACHE")
    return Path(configured) if configured else tmp_path_factory.mktemp("simu-bench-cache")


def slow_fixture(fixture_function):
    """Put under `@pytest.fixture` when the fixture trains a target to memorisation or runs
    simu-bench end to end: every test that uses it is then `slow`, out of the fast lane."""
    fixture_function.slow = True
    return fixture_function


def pytest_collection_modifyitems(config, items):
    """Marks slow tests (see the module doc); skips tests marked `vllm` where vLLM is not
    importable (`scripts/vllm_cpu_check.sh` builds a venv with it on CPU)."""
    import importlib.util

    benchmarks = Path(__file__).parent / "benchmarks"
    no_vllm = importlib.util.find_spec("vllm") is None
    for item in items:
        if no_vllm and item.get_closest_marker("vllm"):
            item.add_marker(pytest.mark.skip(reason="vLLM is not installed (scripts/vllm_cpu_check.sh builds a venv)"))
        info = getattr(item, "_fixtureinfo", None)  # what pytest resolved for the test's fixtures
        definitions = info.name2fixturedefs.values() if info else ()
        if (
            any(getattr(fixture.func, "slow", False) for chain in definitions for fixture in chain)
            or item.get_closest_marker("packaging")
            or benchmarks in item.path.parents
        ):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
@slow_fixture
def tiny_target(tiny_cache) -> Prepared:
    """The tiny memorised target: `.data_dir`, `.target_dir` (save_pretrained folder), `.data`."""
    return prepare(TINY_DATA, TINY_TARGET, seed=0, cache=tiny_cache, progress=False)


@pytest.fixture
def tiny_model_and_tokenizer(tiny_target):
    """A fresh (model, tokenizer) loaded from `tiny_target` for each test, so tests may train it."""
    return load_model(tiny_target.target_dir)


@pytest.fixture
def no_training(monkeypatch):
    """`prepare` without the fine-tune: `finetune` returns at once, reporting one epoch of one
    step that memorised every row, so tests of the cache and the data finish in a second."""
    from simu_bench.target_model import build, finetune

    def skip(model, tokenizer, rows, config, seed, progress=True):
        return finetune.FinetuneResult(epochs=1, steps=1, tokens_trained=1, final_loss=0.0, final_answer_loss=0.0,
                                       memorised=1.0)

    monkeypatch.setattr(build, "finetune", skip)  # the recipe calls it by name

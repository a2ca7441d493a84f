"""Speed of `prepare`: a cold build (tokenizer + training + save) and a warm, cached call.

The suite runs these once as plain tests (`--benchmark-disable`). To measure:

    pytest --benchmark-enable tests/benchmarks/test_speed_prepare.py

Both use the tiny recipe of the test suite. The default recipe, cold and warm, with peak memory:

    SIMU_BENCH_CACHE=$(mktemp -d) /usr/bin/time -v simu-bench prepare --quiet   # cold
    SIMU_BENCH_CACHE=<same dir>   /usr/bin/time -v simu-bench prepare --quiet   # warm
"""

from __future__ import annotations

import itertools

from simu_bench.target_model.cache import prepare

from conftest import TINY_DATA, TINY_TARGET


def test_speed_prepare_cold(benchmark, tmp_path):
    """Data + tokenizer + fine-tune until memorised + save, into an empty cache each round."""
    fresh = (tmp_path / f"cache{n}" for n in itertools.count())
    prepared = benchmark.pedantic(
        lambda cache: prepare(TINY_DATA, TINY_TARGET, seed=0, cache=cache, progress=False),
        setup=lambda: ((next(fresh),), {}),
        rounds=1,
        iterations=1,
    )
    assert prepared.info["memorised_rows"] == 1.0
    assert (prepared.target_dir / "model.safetensors").is_file()
    benchmark.extra_info.update({k: prepared.info[k] for k in ("parameters", "tokens_trained", "epochs", "steps")})


def test_speed_prepare_warm(benchmark, tiny_target, tiny_cache):
    """A finished cache entry: regenerate and hash the data, find the entry, load the data."""
    prepared = benchmark(lambda: prepare(TINY_DATA, TINY_TARGET, seed=0, cache=tiny_cache, progress=False))
    assert prepared.target_dir == tiny_target.target_dir

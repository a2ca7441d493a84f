"""SIMU's attribution kept in the run store (`simu_bench.simu.cache`): once per store, same bits."""

from __future__ import annotations

import json
import threading
import time

import pytest

from simu_bench.simu import attribution
from simu_bench.simu.cache import Cache
from simu_bench.unlearning import loop, registry

from unlearn_helpers import tiny_model

SETTINGS = dict(m=3, batch_size=8, copies_per_pass=None, max_length=64, positions="predicting")


@pytest.fixture
def counted(monkeypatch):
    """`attribution.attribute` with a count of its calls."""
    calls = []
    real = attribution.attribute

    def attribute(*args, **kwargs):
        calls.append(len(args[2]))
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, "attribute", attribute)
    return calls


def test_a_second_call_reads_the_same_bits_and_another_setting_recomputes(tmp_path, tokenizer, data, counted):
    model = tiny_model(tokenizer)
    cache = Cache(tmp_path)
    first = cache.attribute(model, tokenizer, data.forget, **SETTINGS)
    again = Cache(tmp_path).attribute(model, tokenizer, data.forget, **SETTINGS)  # a later run: a new object
    assert counted == [len(data.forget)] and again.dtype == first.dtype and bool((again == first).all())
    Cache(tmp_path).attribute(model, tokenizer, data.forget, **{**SETTINGS, "m": 2})
    Cache(tmp_path).attribute(model, tokenizer, data.retain, **SETTINGS)
    other = tiny_model(tokenizer, seed=1)  # other weights
    Cache(tmp_path).attribute(other, tokenizer, data.forget, **SETTINGS)
    assert len(counted) == 4
    assert len(list(tmp_path.glob("*.safetensors"))) == 4 and len(list(tmp_path.glob("*.json"))) == 4


def test_no_folder_computes_every_time(tokenizer, data, counted):
    model = tiny_model(tokenizer)
    Cache(None).attribute(model, tokenizer, data.forget, **SETTINGS)
    Cache(None).attribute(model, tokenizer, data.forget, **SETTINGS)
    assert len(counted) == 2


def test_an_edited_key_file_is_refused_with_one_line_and_recomputed(tmp_path, tokenizer, data, counted, capsys):
    model = tiny_model(tokenizer)
    first = Cache(tmp_path).attribute(model, tokenizer, data.forget, **SETTINGS)
    (key_path,) = tmp_path.glob("*.json")
    key = json.loads(key_path.read_text())
    key["arguments"]["m"] = 5  # someone edits the key by hand
    key_path.write_text(json.dumps(key))
    again = Cache(tmp_path).attribute(model, tokenizer, data.forget, **SETTINGS)
    err = capsys.readouterr().err
    assert len(counted) == 2 and bool((again == first).all())
    assert err.count("\n") == 1 and "was changed" in err and key_path.name in err
    assert json.loads(key_path.read_text())["arguments"]["m"] == 3  # rewritten with the true key
    Cache(tmp_path).attribute(model, tokenizer, data.forget, **SETTINGS)
    assert len(counted) == 2 and capsys.readouterr().err == ""


def test_two_workers_compute_the_scores_once(tmp_path, tokenizer, data, monkeypatch):
    """Two workers asking at once: the file lock makes the second wait and read the first's result."""
    model = tiny_model(tokenizer)
    real, calls = attribution.attribute, []

    def slow(*args, **kwargs):
        calls.append(1)
        time.sleep(0.5)
        return real(*args, **kwargs)

    monkeypatch.setattr(attribution, "attribute", slow)
    results = []
    workers = [threading.Thread(target=lambda: results.append(
        Cache(tmp_path).attribute(model, tokenizer, data.forget, **SETTINGS))) for _ in range(2)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert len(calls) == 1 and len(results) == 2 and bool((results[0] == results[1]).all())


def _content(path):
    """(metadata, {name: tensor bytes}) of a safetensors file."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as handle:
        tensors = {key: handle.get_tensor(key).numpy().tobytes() for key in handle.keys()}
        return handle.metadata(), tensors


@pytest.mark.parametrize("method", ["simu", "random_mask", "simu_soft"])
def test_every_seed_and_variant_reuses_the_scores_and_writes_the_same_mask(method, tmp_path, tokenizer, data,
                                                                            counted):
    """Seeds 0 and 1 of a SIMU-mask method, with and without the cache: the mask files hold
    the same tensors, bit for bit, and the same metadata (safetensors writes its metadata keys
    in no fixed order, so the files' bytes are compared through their content), and with the
    cache the attribution (forget, retain and the stability check's two forget halves) is
    computed once for both seeds."""
    overrides = ["train.max_steps=1", "train.epochs=1"]
    masks = {}
    for cached in (False, True):
        for seed in (0, 1):
            unlearner = registry.create(method, overrides)
            unlearner.cache_dir = tmp_path / "store" / ".cache" if cached else None
            loop.run(unlearner, tiny_model(tokenizer), tokenizer, data, seed=seed, progress=False)
            folder = tmp_path / f"{cached}-{seed}"
            unlearner.save_artifacts(folder)
            masks[(cached, seed)] = (_content(folder / "mask.safetensors"), json.loads(
                (folder / "mask.json").read_text()))
    assert len(counted) == 4 * 2 + 4  # uncached: 4 attributions per seed; cached: 4 for both seeds
    for seed in (0, 1):
        (plain, plain_json), (cached, cached_json) = masks[(False, seed)], masks[(True, seed)]
        assert plain == cached
        plain_json.pop("seconds"), cached_json.pop("seconds")  # the diagnostics' time
        assert plain_json == cached_json

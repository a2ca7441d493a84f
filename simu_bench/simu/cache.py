"""SIMU's attribution scores, computed once and kept in the run store for every later run.

The integrated-gradients scores (`simu_bench.simu.attribution.attribute`) depend on the model's
weights, the examples and the attribution settings, never on the run's seed: every seed of
`simu`, and every method that takes SIMU's mask (`random_mask`, `simu_soft`, `simu_npo`, ...),
asks for the same scores. `Cache.attribute` keeps each result under ``DIR/<key hash>.safetensors``
with its key beside it in ``DIR/<key hash>.json``; the key holds a fingerprint of the weights
(and their dtype), of the examples (input and output text, in order), of the tokenizer's
vocabulary and every argument of `attribute` (m, positions, batch size, copies per pass,
max_length: the last three change float summation order, so the bits). A cached result is
bit-identical to a fresh one, so each run's mask file is unchanged.

Safety: writes are atomic (`simu_bench.files`); two workers that need the same scores take a
file lock on ``<key hash>.lock`` (``filelock``, released by the OS with the process), so one
computes and the other reads. Under torchrun (several processes in one run) the scores are computed
without the cache: each process holds only its shards and takes part in the attribution's all-reduce.
A key file that does not match its name or the scores (edited by
hand, or a half-copied store) is refused with one warning line and the scores are recomputed.
"""

from __future__ import annotations

import hashlib
import json
import logging
import sys
from pathlib import Path

import torch
from filelock import FileLock
from safetensors import safe_open
from safetensors.torch import save

from simu_bench.files import atomic_write_bytes, atomic_write_json
from simu_bench.simu import attribution
from simu_bench.unlearning import distributed

log = logging.getLogger("simu_bench.simu.cache")
FORMAT = "simu-bench-attribution-1"


def weights_fingerprint(model) -> str:
    """sha256 over every parameter and buffer: name, dtype, shape and bytes."""
    digest = hashlib.sha256()
    for name, tensor in (*model.named_parameters(), *model.named_buffers()):
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.detach().cpu().reshape(-1).contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def examples_fingerprint(examples) -> str:
    """sha256 of the examples' (input, output) texts, in order."""
    rows = json.dumps([[e.input, e.output] for e in examples], ensure_ascii=False)
    return hashlib.sha256(rows.encode()).hexdigest()


def tokenizer_fingerprint(tokenizer) -> str:
    """sha256 of the vocabulary and the special tokens (what tokenising the examples depends on)."""
    vocab = sorted(tokenizer.get_vocab().items())
    special = [tokenizer.eos_token, tokenizer.bos_token, tokenizer.pad_token]
    return hashlib.sha256(json.dumps([vocab, special]).encode()).hexdigest()


def _hash(key: dict) -> str:
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]


class Cache:
    """`attribute` with results kept in ``folder``; a None folder computes every time.

    The weights' fingerprint is taken once per model object and weights version: a run that
    changes the model (training) gets a new one.
    """

    def __init__(self, folder: Path | None):
        self.folder = None if folder is None else Path(folder)
        self._model_key: tuple[int, int, str] | None = None  # (id(model), weights version, fingerprint)
        self.hits = self.misses = 0

    def attribute(self, model, tokenizer, examples, **kwargs) -> torch.Tensor:
        """`attribution.attribute(model, tokenizer, examples, **kwargs)`, read from the cache when kept."""
        # Under torchrun every process takes part in the attribution's all-reduce: a process that
        # held the cache's file lock while computing would wait there for one that waits on the lock.
        if self.folder is None or distributed.world()[1] > 1:
            return attribution.attribute(model, tokenizer, examples, **kwargs)
        key = self._key(model, tokenizer, examples, kwargs)
        name = _hash(key)
        path, key_path = self.folder / f"{name}.safetensors", self.folder / f"{name}.json"
        self.folder.mkdir(parents=True, exist_ok=True)
        with FileLock(str(self.folder / f"{name}.lock"), thread_local=False):
            scores = self._read(path, key_path, key, name)
            if scores is not None:
                self.hits += 1
                return scores.to(next(model.parameters()).device)
            self.misses += 1
            scores = attribution.attribute(model, tokenizer, examples, **kwargs)
            self._write(path, key_path, key, name, scores)
        return scores

    def _key(self, model, tokenizer, examples, kwargs) -> dict:
        version = sum(p._version for p in model.parameters())  # in-place updates bump it
        if self._model_key is None or self._model_key[:2] != (id(model), version):
            self._model_key = (id(model), version, weights_fingerprint(model))
        return {"format": FORMAT, "weights": self._model_key[2], "examples": examples_fingerprint(examples),
                "rows": len(examples), "tokenizer": tokenizer_fingerprint(tokenizer),
                "arguments": {k: kwargs[k] for k in sorted(kwargs)}, "torch": torch.__version__}

    def _read(self, path: Path, key_path: Path, key: dict, name: str) -> torch.Tensor | None:
        if not path.exists():
            return None
        try:
            stored = json.loads(key_path.read_text(encoding="utf-8"))
            with safe_open(str(path), framework="pt") as handle:
                bound = (handle.metadata() or {}).get("key")
                scores = handle.get_tensor("scores")
        except Exception as error:  # unreadable, missing or not ours: recompute
            _say(f"attribution cache {path} could not be read ({error}); recomputing it")
            return None
        if stored != key or _hash(stored) != name or bound != name:
            _say(f"attribution cache {path}: its key file {key_path} was changed and no longer matches the "
                 f"scores; ignoring it and recomputing the scores")
            return None
        return scores

    def _write(self, path: Path, key_path: Path, key: dict, name: str, scores: torch.Tensor) -> None:
        atomic_write_json(key_path, key)
        atomic_write_bytes(path, save({"scores": scores.float().cpu().contiguous()}, metadata={"key": name}))


def _say(line: str) -> None:
    """One line on stderr (the user's terminal) and in the run's log."""
    print(line, file=sys.stderr)
    log.info("%s", line)

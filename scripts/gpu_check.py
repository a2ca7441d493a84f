"""GPU check: a random OLMo-1B-shaped model in bf16, 20 steps of each method, 64 generations with hf and vllm.

    bash scripts/gpu_check.sh                      # on a machine with a CUDA GPU
    python scripts/gpu_check.py --device cpu --shape tiny --steps 2 --rows 4 --backends hf   # a smoke run

Prints, per method: seconds per optimizer step, peak GPU memory and training tokens per second;
per backend: generated tokens per second; and the parity of vLLM's text with HF's. The tokenizer
is the embedded benchmark's (built by `simu-bench prepare`, cached); the weights are random, so
the text is noise: this measures speed, memory and agreement, not unlearning.
"""

from __future__ import annotations

import argparse
import time

import torch

SHAPES = {
    "olmo-1b": dict(hidden_size=2048, intermediate_size=8192, num_hidden_layers=16, num_attention_heads=16),
    "tiny": dict(hidden_size=64, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--shape", choices=sorted(SHAPES), default="olmo-1b")
    parser.add_argument("--dtype", default="bfloat16")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rows", type=int, default=64, help="rows generated per backend")
    parser.add_argument("--backends", default="hf,vllm")
    args = parser.parse_args()

    from transformers import AutoTokenizer, OlmoConfig, OlmoForCausalLM

    from simu_bench.evaluation.backends import Backend, check_backend
    from simu_bench.evaluation.evaluator import evaluate
    from simu_bench.target_model.cache import prepare
    from simu_bench.unlearning import loop, registry

    prepared = prepare(None, progress=False)
    tokenizer = AutoTokenizer.from_pretrained(prepared.target_dir)
    dtype = getattr(torch, args.dtype)
    cuda = args.device.startswith("cuda")

    def fresh():
        torch.manual_seed(0)
        config = OlmoConfig(vocab_size=len(tokenizer), pad_token_id=tokenizer.pad_token_id,
                            eos_token_id=tokenizer.eos_token_id, bos_token_id=None, **SHAPES[args.shape])
        return OlmoForCausalLM(config).to(device=args.device, dtype=dtype)

    data = prepared.data
    for method in ("fo_graddiff", "so_graddiff", "simu"):
        model = fresh()
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        overrides = [f"train.max_steps={args.steps}", "train.batch_size=4", "train.grad_accum_steps=1",
                     "train.warmup_ratio=0.0"]
        if method == "simu":
            overrides.append("options.copies_per_pass=1")
        unlearner = registry.create(method, overrides)
        started = time.perf_counter()
        result = loop.run(unlearner, model, tokenizer, data, seed=0, progress=False)
        seconds = time.perf_counter() - started
        tokens = args.steps * 4 * 2 * 64  # rough: 4 pairs of ~64 tokens per step
        peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
        print(f"{method}: {result.status}, {result.steps} steps, {seconds / max(result.steps, 1):.3f} s/step "
              f"(attribution and set-up included), peak {peak:.2f} GiB, ~{tokens / seconds:.0f} training tokens/s")
        del model, unlearner
        if cuda:
            torch.cuda.empty_cache()

    model = fresh().eval()
    half = max(args.rows // 2, 1)
    rows = type(data)(forget=data.forget[:half], retain=data.retain[:half])
    texts = {}
    for name in [n.strip() for n in args.backends.split(",") if n.strip()]:
        backend = check_backend(name)
        started = time.perf_counter()
        result = evaluate(model, tokenizer, rows, max_new_tokens=64, batch_size=64,
                          backend=backend if name != "hf" else Backend())
        seconds = time.perf_counter() - started
        generated = sum(len(tokenizer(s["generation"])["input_ids"]) for s in result.samples)
        texts[name] = {(s["split"], s["id"]): s["generation"] for s in result.samples}
        print(f"{name}: {len(result.samples)} generations, {generated / seconds:.0f} new tokens/s"
              + (f", parity with hf {result.generation['parity']:.3f}" if result.generation else ""))
    if "hf" in texts and "vllm" in texts:
        same = sum(texts["vllm"].get(key) == text for key, text in texts["hf"].items())
        print(f"parity over all {len(texts['hf'])} rows: {same / len(texts['hf']):.3f}")


if __name__ == "__main__":
    main()

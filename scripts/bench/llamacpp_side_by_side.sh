#!/usr/bin/env bash
# Runs llama.cpp and Squeeze on the same machine, one after the other, on the test model:
#   1. llama-bench (pp512, tg128; 1 and 2 threads) on F32, F16, Q4_0, IQ4_NL and Q3_K_S made from the
#      test model with llama-quantize (no importance matrix);
#   2. squeeze bench (prefill 512, decode 128; 1 and 2 threads) on F32, F16 and the quantized
#      directories given as LABEL=DIR;
#   3. perplexity throughput, llama.cpp protocol, 512-token chunks, 32 chunks of wiki.test.txt, F32
#      weights, 2 threads: llama-perplexity against `squeeze perplexity --protocol llamacpp`.
# Usage: bash scripts/bench/llamacpp_side_by_side.sh LLAMA_CPP_BUILD_BIN_DIR SQUEEZE_BIN [LABEL=DIR ...]
# llama.cpp: the copy vendored in the llama-cpp-python 0.3.36 source package (pip download
#   --no-binary :all: llama-cpp-python==0.3.36), built with
#   cmake -B build -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_CURL=OFF &&
#   cmake --build build --target llama-bench llama-perplexity llama-quantize
set -euo pipefail
LB="$1"; BIN="$2"; shift 2
MODEL="${SQUEEZE_MODEL:-$HOME/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
TEXT="${TEXT:-$(cd "$(dirname "$0")/../.." && pwd)/../shared/data/wiki.test.txt}"
WORK="${WORK:-$HOME/.cache/squeeze/llamacpp}"
REPS="${REPS:-3}"
mkdir -p "$WORK"
echo "# machine: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) CPUs; load: $(cut -d' ' -f1-3 /proc/loadavg)"
[ -f "$WORK/f32.gguf" ] || "$LB/llama-quantize" --allow-requantize "$MODEL" "$WORK/f32.gguf" F32 > "$WORK/quantize.log" 2>&1
for t in F16 Q4_0 IQ4_NL Q3_K_S; do
  f="$WORK/$(echo $t | tr 'A-Z' 'a-z').gguf"
  [ -f "$f" ] || "$LB/llama-quantize" "$WORK/f32.gguf" "$f" "$t" >> "$WORK/quantize.log" 2>&1
done
echo "## llama-bench (-p 512 -n 128 -r $REPS)"
for t in f32 f16 q4_0 iq4_nl q3_k_s; do
  "$LB/llama-bench" -m "$WORK/$t.gguf" -p 512 -n 128 -t 1,2 -r "$REPS" -o md 2>/dev/null | grep -E "^\| .*(pp|tg)" || true
done
echo "## squeeze bench (--prompt 512 --decode 128)"
Q=()
for a in "$@"; do Q+=(--quantized "$a"); done
"$BIN" bench --model "$MODEL" --weights f32,f16 "${Q[@]}" --threads 1,2 --prompt 512 --decode 128 --skip-kernels
echo "## perplexity throughput (llama.cpp protocol, -c 512, 32 chunks, F32, 2 threads)"
"$LB/llama-perplexity" -m "$WORK/f32.gguf" -f "$TEXT" -c 512 --chunks 32 -t 2 2>&1 | grep -E "Final estimate|tokens per second|seconds per pass|total time" || true
"$BIN" perplexity --model "$MODEL" --text "$TEXT" --protocol llamacpp --context 512 --windows 32 --dtype f32 --threads 2 2>/dev/null

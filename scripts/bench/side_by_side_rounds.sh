#!/usr/bin/env bash
# Decode and prefill speed of llama.cpp and Squeeze on the test model, interleaved: ROUNDS rounds, each
# running llama-bench on every GGUF type and `squeeze bench` on every weight type, so both see the same
# machine load; prints every round (README and docs/performance.md report the median of the rounds).
# Usage: bash scripts/bench/side_by_side_rounds.sh LLAMA_CPP_BIN_DIR SQUEEZE_BIN ROUNDS LABEL=DIR ...
# The GGUF types are made by scripts/bench/llamacpp_side_by_side.sh (in $WORK).
set -euo pipefail
LB="$1"; BIN="$2"; ROUNDS="$3"; shift 3
MODEL="${SQUEEZE_MODEL:-$HOME/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
WORK="${WORK:-$HOME/.cache/squeeze/llamacpp}"
Q=()
for a in "$@"; do Q+=(--quantized "$a"); done
for r in $(seq 1 "$ROUNDS"); do
  echo "## round $r, load $(cut -d' ' -f1 /proc/loadavg)"
  for t in f16 q4_0 iq4_nl q3_k_s; do
    "$LB/llama-bench" -m "$WORK/$t.gguf" -p 512 -n 128 -t 1,2 -r 2 -o csv 2>/dev/null \
      | python3 -c 'import csv,sys
for row in csv.DictReader(sys.stdin):
    kind = "pp512" if row["n_prompt"] != "0" else "tg128"
    print("llama.cpp,%s,%s,%s,%.1f" % (sys.argv[1], row["n_threads"], kind, float(row["avg_ts"])))' "$t"
  done
  "$BIN" bench --model "$MODEL" --weights f16 "${Q[@]}" --head q8 --threads 1,2 --prompt 512 --decode 128 --skip-kernels --json \
    | python3 -c 'import json,sys
for m in json.load(sys.stdin)["models"]:
    print("squeeze,%s,%d,pp512,%.1f" % (m["weights"], m["threads"], m["prefillTokensPerSecond"]))
    print("squeeze,%s,%d,tg128,%.1f" % (m["weights"], m["threads"], m["decodeTokensPerSecond"]))'
done

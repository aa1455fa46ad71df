#!/usr/bin/env bash
# Reproduces the quality table (README, docs/quantization.md) on the test model: quantizes SmolLM2-135M with several
# configurations and measures perplexity (GPTQ protocol, first WINDOWS windows of 512 tokens of
# wiki.test.txt) with the exact (float-table) kernels.
# Usage: bash scripts/bench/quality_table.sh FISHER.safetensors [WINDOWS]
#   FISHER: made by `squeeze sensitivity --calibration ../shared/data/wiki.train.txt --samples 100 --seqlen 512 --seed 0`
set -euo pipefail
FISHER="$1"; WINDOWS="${2:-64}"
BIN="$(swift build -c release --show-bin-path)/squeeze"
MODEL="${SQUEEZE_MODEL:-$HOME/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf}"
TEXT="${TEXT:-../shared/data/wiki.test.txt}"
WORK="${WORK:-$HOME/.cache/squeeze/quality}"
mkdir -p "$WORK"
ppl() { "$BIN" perplexity --model "$1" --text "$TEXT" --context 512 --windows "$WINDOWS" --kernels "${2:-exact}" --json | python3 -c 'import json,sys; r=json.load(sys.stdin); print("%.4f" % r["perplexity"])'; }
row() { # label dir bits
  local bpw; bpw=$(python3 -c 'import json,sys; print("%.2f" % json.load(open(sys.argv[1]))["bitsPerWeight"])' "$2.report.json")
  echo "| $1 | $bpw | $(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print("{:,.0f}".format(sum(t["squaredError"] for t in r["tensors"])))' "$2.report.json") | $(ppl "$2") |"
}
q() { # name args...
  local name="$1"; shift
  [ -d "$WORK/$name" ] || "$BIN" quantize --model "$MODEL" --output "$WORK/$name" --json-report "$WORK/$name.report.json" "$@" > /dev/null
}
q fisher-w4-s45 --bits 4 --sensitivity "$FISHER" --sparsity 0.45
q fisher-w4 --bits 4 --sensitivity "$FISHER"
q fisher-w3-s45 --bits 3 --sensitivity "$FISHER" --sparsity 0.45
q fisher-w3 --bits 3 --sensitivity "$FISHER"
q none-w3 --bits 3
q rtn-w4 --bits 4 --method rtn
q rtn-w3 --bits 3 --method rtn
echo "| configuration | bits per linear weight | sum of (w - Q)^2 | PPL ($WINDOWS windows) |"
echo "| --- | --- | --- | --- |"
echo "| FP (Q4_1 dequantized to F32) | 32 | 0 | $(ppl "$MODEL") |"
row "SqueezeLLM 4-bit, 0.45% sparse, Fisher" "$WORK/fisher-w4-s45"
row "SqueezeLLM 4-bit, dense, Fisher" "$WORK/fisher-w4"
row "SqueezeLLM 3-bit, 0.45% sparse, Fisher" "$WORK/fisher-w3-s45"
row "SqueezeLLM 3-bit, dense, Fisher" "$WORK/fisher-w3"
row "k-means 3-bit, no sensitivity" "$WORK/none-w3"
row "RTN 4-bit (GPTQ quantizer)" "$WORK/rtn-w4"
row "RTN 3-bit (GPTQ quantizer)" "$WORK/rtn-w3"

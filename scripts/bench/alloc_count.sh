#!/usr/bin/env bash
# Counts heap allocations (libc malloc calls) made while decoding: single-sequence decoding per token
# (the same bench at two decode lengths, differencing the malloc calls whose stack passes through
# DecoderModel.forward), and batched decoding over `bench --batch 8`'s 96 steps (DecoderModel.forwardBatch).
# Needs root (a perf uprobe on malloc). Usage: bash scripts/bench/alloc_count.sh BIN QUANTIZED_DIR
set -euo pipefail
BIN=${1:?usage: alloc_count.sh BIN QUANTIZED_DIR}
DIR=${2:?usage: alloc_count.sh BIN QUANTIZED_DIR}
LIBC=$(ldd "$BIN" | awk '$1 ~ /^libc\.so/ {print $3}')
command -v perf >/dev/null || { echo "alloc_count: perf is not installed" >&2; exit 1; }
perf probe -q -x "$LIBC" malloc 2>/dev/null || true
perf list 2>/dev/null | grep "probe_libc:malloc" >/dev/null || { echo "alloc_count: cannot probe malloc in $LIBC (needs root)" >&2; exit 1; }
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
count() {  # decode-length batch-args... -> "forward forwardBatch" malloc counts
    local n=$1; shift
    perf record -q -e probe_libc:malloc -g -o "$TMP/p.data" "$BIN" bench --skip-kernels --weights "" \
        --quantized "w=$DIR" --head q8 --threads 2 --prompt 16 --decode "$n" "$@" >"$TMP/out.txt" 2>&1 \
        || { echo "alloc_count: the bench failed:" >&2; tail -5 "$TMP/out.txt" >&2; exit 1; }
    perf script -i "$TMP/p.data" 2>/dev/null | awk 'BEGIN{RS=""} /DecoderModelC7forward/ {f++} /forwardBatch/ {b++} END{print f+0, b+0}'
}
count 100 >"$TMP/c1"; read -r f1 _ <"$TMP/c1"
count 300 >"$TMP/c2"; read -r f2 _ <"$TMP/c2"
echo "single sequence: $(( (f2 - f1) / 200 )) mallocs per decoded token in forward ($f1 / $f2 for 100 / 300 tokens)"
# The batched benchmark runs a fixed 3 x 32 steps of 8 sequences.
count 16 --batch 8 >"$TMP/c3"; read -r _ b <"$TMP/c3"
echo "batch of 8: $b mallocs in forwardBatch over 96 decode steps (bench --batch 8: 3 x 32 steps)"

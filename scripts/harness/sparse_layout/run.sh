#!/usr/bin/env bash
# Times the sparse product's layouts on a quantized model's own sparse matrices and on uniform
# synthetic ones: the group order of commit e945286 (one nonzero at a time, rows interleaved in
# groups of 32) against the current sliced layout (Sources/CSqueezeKernels/sparse.c).
# Usage: scripts/harness/sparse_layout/run.sh QUANTIZED_DIR   (e.g. ~/.cache/squeeze/quality/fisher-w4-s45)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd); root=$(cd "$here/../../.." && pwd); S=$root/Sources/CSqueezeKernels
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
git -C "$root" show e945286:Sources/CSqueezeKernels/sparse.c \
  | sed 's/sq_csr/old_csr/g; s/sq_sparse.h/old_sparse.h/; s/SQ_CSR_GROUP/OLD_CSR_GROUP/g' > "$work/old_sparse.c"
git -C "$root" show e945286:Sources/CSqueezeKernels/include/sq_sparse.h \
  | sed 's/sq_csr/old_csr/g; s/SQ_SPARSE_H/OLD_SPARSE_H/g; s/SQ_CSR_GROUP/OLD_CSR_GROUP/g' > "$work/old_sparse.h"
python3 "$here/dump_sparse.py" "$1" "$work/mats.bin" > /dev/null
clang -O2 -I"$work" -I"$S/include" "$here/harness.c" "$work/old_sparse.c" $(ls "$S"/*.c) -o "$work/harness" -lpthread -lm
"$work/harness" "$work/mats.bin"

"""Dumps the sparse parts of two layers of a quantized model directory for harness.c.

Usage: python3 dump_sparse.py QUANTIZED_DIR OUT.bin [LAYER ...]   (default layers 3 and 20)
Format (little-endian): int32 count, then per matrix int32 rows, cols, nnz, int32 rowptr[rows+1],
int32 cols[nnz], uint16 half values[nnz]. Needs numpy and safetensors (pip).
"""
import struct
import sys

import numpy as np
from safetensors.numpy import load_file

src, out = sys.argv[1], sys.argv[2]
layers = sys.argv[3:] or ["3", "20"]
t = load_file(src + "/model.safetensors")
names = sorted(k[: -len(".rows")] for k in t if k.endswith(".rows") and any(f"layers.{l}." in k for l in layers))
with open(out, "wb") as f:
    f.write(struct.pack("<i", len(names)))
    for n in names:
        rp, ci = t[n + ".rows"].astype(np.int32), t[n + ".cols"].astype(np.int32)
        v = t[n + ".vals"].astype(np.float16)
        bits = 4 if t[n + ".lookup_table"].shape[1] == 16 else 3
        cols = t[n + ".qweight"].shape[0] * 32 // bits
        f.write(struct.pack("<iii", len(rp) - 1, cols, len(ci)))
        f.write(rp.tobytes()); f.write(ci.tobytes()); f.write(v.view(np.uint16).tobytes())
        print(n, len(rp) - 1, cols, len(ci))

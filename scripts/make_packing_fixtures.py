#!/usr/bin/env python3
"""Makes Tests/SqueezeQuantTests/Fixtures/packing_fixtures.json: random 3- and 4-bit indices and
their SqueezeLLM qweight packing, written independently of the Swift code.

Layout (SqueezeLLM squeezellm/quant.py): intweight is [in, out] (indices transposed), qweight is
uint32 [in*b/32, out] viewed as int32.
 - 4-bit: qweight[r, o] nibble t (bits 4t..4t+3) = index of input 8r+t.
 - 3-bit (`pack2`): for each group of 32 inputs, three words, filled word by word as the reference
   loop does: word0 gets values 0..9 at bit 3j and value 10's low 2 bits at bits 30-31; word1 gets
   value 10's high bit at bit 0, values 11..20 at bits 1+3(j-11) and value 21's low bit at bit 31;
   word2 gets value 21's high 2 bits at bits 0-1 and values 22..31 at bits 2+3(j-22).
Usage: python3 scripts/make_packing_fixtures.py
"""
import json
import os

import numpy as np


def pack4(intweight):
    """intweight: [in, out] ints in 0..15 -> uint32 [in/8, out]."""
    n_in, n_out = intweight.shape
    q = np.zeros((n_in // 8, n_out), dtype=np.uint64)
    for r in range(n_in // 8):
        for t in range(8):
            q[r] |= intweight[8 * r + t].astype(np.uint64) << np.uint64(4 * t)
    return (q & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def pack3(intweight):
    """The reference's pack2 loop for 3 bits: [in, out] ints in 0..7 -> uint32 [in*3/32, out]."""
    intweight = intweight.astype(np.uint64)
    n_in, n_out = intweight.shape
    q = np.zeros((n_in // 32 * 3, n_out), dtype=np.uint64)
    i = 0
    row = 0
    while row < q.shape[0]:
        for j in range(i, i + 10):
            q[row] |= intweight[j] << np.uint64(3 * (j - i))
        i += 10
        q[row] |= intweight[i] << np.uint64(30)
        row += 1
        q[row] |= (intweight[i] >> np.uint64(2)) & np.uint64(1)
        i += 1
        for j in range(i, i + 10):
            q[row] |= intweight[j] << np.uint64(3 * (j - i) + 1)
        i += 10
        q[row] |= intweight[i] << np.uint64(31)
        row += 1
        q[row] |= (intweight[i] >> np.uint64(1)) & np.uint64(0x3)
        i += 1
        for j in range(i, i + 10):
            q[row] |= intweight[j] << np.uint64(3 * (j - i) + 2)
        i += 10
        row += 1
    return (q & np.uint64(0xFFFFFFFF)).astype(np.uint32)


def main():
    rng = np.random.default_rng(20261128)
    cases = []
    for bits, shapes in ((4, [(5, 8), (7, 64), (16, 40)]), (3, [(5, 32), (7, 96), (3, 64)])):
        for rows, cols in shapes:
            idx = rng.integers(0, 1 << bits, size=(rows, cols), dtype=np.int64)  # [out, in]
            if rows >= 5:
                idx[0, :] = (1 << bits) - 1  # all ones: exercises the sign bit and straddling values
                idx[1, :] = 0
            packed = (pack4 if bits == 4 else pack3)(idx.T.copy())
            cases.append({
                "bits": bits, "rows": rows, "cols": cols,
                "indices": idx.reshape(-1).tolist(),  # row-major [out, in]
                "qweight": packed.view(np.int32).reshape(-1).tolist(),  # row-major [in*b/32, out]
            })
    here = os.path.dirname(os.path.abspath(__file__))
    out = os.path.join(here, "..", "Tests", "SqueezeQuantTests", "Fixtures", "packing_fixtures.json")
    with open(out, "w") as f:
        json.dump({"made_by": "scripts/make_packing_fixtures.py", "cases": cases}, f)
    print(f"wrote {os.path.normpath(out)} ({os.path.getsize(out)} bytes, {len(cases)} cases)")


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Makes the GGML dequantization fixtures for SqueezeFormatsTests.

Run from the repository root (needs numpy, gguf 0.19.0 and safetensors from PyPI):

    python3 scripts/make_gguf_fixtures.py [--model PATH]

Writes, under Tests/SqueezeFormatsTests/Fixtures/:
  quant_types.gguf                   one [4, 256] tensor per GGML type (F32, F16, BF16, Q4_0, Q4_1,
                                     Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS),
                                     named after the type in lower case ("q4_k"). Types that
                                     gguf.quants can quantize are quantized from random normal data;
                                     the others are random bytes with sane f16 scales patched in.
  quant_types_expected.safetensors   the F32 output of gguf.quants.dequantize for each, same names.
  quant_types_expected.json          what gguf.GGUFReader reads back from quant_types.gguf: version,
                                     metadata keys, and per tensor its type name, shape (outermost
                                     first) and byte count.
  real_model_rows.safetensors        expected F32 rows from the real test model (when it is present):
                                     rows 0-1 of blk.0.attn_q.weight (Q4_1), blk.29.ffn_down.weight
                                     (Q4_1), and rows 0-1 and the last row of token_embd.weight
                                     (Q8_0), dequantized by gguf.quants.dequantize. Tensor names are
                                     "<tensor>@<first row>" with shape [rows, columns].
The model is $SQUEEZE_MODEL, else ~/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf
(fetch it with `bash scripts/fetch-test-model.sh`).
"""
import json
import os
import sys
import argparse
import numpy as np
import gguf
from gguf import GGMLQuantizationType as T
from gguf.quants import quantize, dequantize
from safetensors.numpy import save_file

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "SqueezeFormatsTests", "Fixtures")

ROWS, COLS = 4, 256
rng = np.random.default_rng(20240601)


def f16_bytes(values):
    return np.asarray(values, dtype=np.float16).view(np.uint8)


def random_blocks(qtype, n_blocks):
    """Random block bytes for types gguf.quants cannot quantize, with f16 scales set to sane values."""
    block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
    b = rng.integers(0, 256, size=(n_blocks, type_size), dtype=np.uint8)
    d = rng.uniform(0.002, 0.05, size=n_blocks)
    dmin = rng.uniform(0.0, 0.02, size=n_blocks)
    if qtype == T.Q2_K:      # scales[16] qs[64] d dmin
        b[:, 80:82] = f16_bytes(d).reshape(-1, 2)
        b[:, 82:84] = f16_bytes(dmin).reshape(-1, 2)
    elif qtype == T.Q3_K:    # hmask[32] qs[64] scales[12] d
        b[:, 108:110] = f16_bytes(d).reshape(-1, 2)
    elif qtype in (T.Q4_K, T.Q5_K):  # d dmin scales[12] ...
        b[:, 0:2] = f16_bytes(d).reshape(-1, 2)
        b[:, 2:4] = f16_bytes(dmin).reshape(-1, 2)
    elif qtype == T.Q6_K:    # ql[128] qh[64] scales[16] d
        b[:, 208:210] = f16_bytes(d).reshape(-1, 2)
    elif qtype in (T.IQ4_NL, T.IQ4_XS):  # d first
        b[:, 0:2] = f16_bytes(d).reshape(-1, 2)
    else:
        raise ValueError(qtype)
    return b


def make_quant_types():
    writer = gguf.GGUFWriter(os.path.join(OUT, "quant_types.gguf"), arch="squeeze-test")
    writer.add_string("squeeze.fixture", "make_gguf_fixtures.py")
    expected = {}
    for qtype in [T.F32, T.F16, T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0,
                  T.Q2_K, T.Q3_K, T.Q4_K, T.Q5_K, T.Q6_K, T.IQ4_NL, T.IQ4_XS]:
        name = qtype.name.lower()
        data = rng.standard_normal((ROWS, COLS)).astype(np.float32) * 0.1
        if qtype == T.F32:
            raw = data
            writer.add_tensor(name, raw)
        elif qtype == T.F16:
            raw = data.astype(np.float16)
            writer.add_tensor(name, raw)
        elif qtype in (T.BF16, T.Q4_0, T.Q4_1, T.Q5_0, T.Q5_1, T.Q8_0):
            raw = quantize(data, qtype)
            writer.add_tensor(name, raw, raw_dtype=qtype)
        else:
            block_size, type_size = gguf.GGML_QUANT_SIZES[qtype]
            raw = random_blocks(qtype, ROWS * COLS // block_size).reshape(ROWS, -1)
            writer.add_tensor(name, raw, raw_dtype=qtype)
        ref = dequantize(raw, qtype).astype(np.float32).reshape(ROWS, COLS)
        assert np.all(np.isfinite(ref)), name
        expected[name] = np.ascontiguousarray(ref)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    reader = gguf.GGUFReader(os.path.join(OUT, "quant_types.gguf"))
    info = {"version": 3, "metadata_keys": list(reader.fields.keys())[3:],  # skip the header pseudo-fields
            "tensors": [{"name": t.name, "type": t.tensor_type.name, "shape": list(reversed(t.shape.tolist())),
                         "bytes": int(t.n_bytes)} for t in reader.tensors]}
    with open(os.path.join(OUT, "quant_types_expected.json"), "w") as f:
        json.dump(info, f, indent=1)
    save_file(expected, os.path.join(OUT, "quant_types_expected.safetensors"),
              metadata={"source": "gguf.quants.dequantize, gguf " + gguf_version()})


def gguf_version():
    try:
        from importlib.metadata import version
        return version("gguf")
    except Exception:
        return "unknown"


def make_real_rows(model):
    if not os.path.exists(model):
        print(f"model not found: {model}; run `bash scripts/fetch-test-model.sh`; skipping real_model_rows")
        return
    reader = gguf.GGUFReader(model)
    tensors = {t.name: t for t in reader.tensors}
    picks = [("blk.0.attn_q.weight", 0, 2), ("blk.29.ffn_down.weight", 0, 2),
             ("token_embd.weight", 0, 2), ("token_embd.weight", -1, 1)]
    out = {}
    for name, first, count in picks:
        t = tensors[name]
        rows = t.data  # (rows, bytes per row) for quantized types
        if first < 0:
            first = rows.shape[0] + first
        ref = dequantize(np.ascontiguousarray(rows[first:first + count]), t.tensor_type).astype(np.float32)
        out[f"{name}@{first}"] = np.ascontiguousarray(ref.reshape(count, -1))
        print(name, t.tensor_type.name, rows.shape, "rows", first, "..", first + count)
    save_file(out, os.path.join(OUT, "real_model_rows.safetensors"),
              metadata={"source": "gguf.quants.dequantize of SmolLM2-135M-Instruct.Q4_1.gguf "
                                  "(sha256 b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53)"})


def main():
    ap = argparse.ArgumentParser()
    default = os.environ.get("SQUEEZE_MODEL") or os.path.expanduser(
        "~/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--model", default=default)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    make_quant_types()
    make_real_rows(args.model)
    for f in ("quant_types.gguf", "quant_types_expected.safetensors", "real_model_rows.safetensors"):
        p = os.path.join(OUT, f)
        if os.path.exists(p):
            print(f, os.path.getsize(p), "bytes")


if __name__ == "__main__":
    main()

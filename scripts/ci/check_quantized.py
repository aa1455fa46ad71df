#!/usr/bin/env python3
"""Opens a directory written by `squeeze quantize` with the Python `safetensors` library (an
independent reader) and checks SqueezeLLM's tensor names, dtypes and shapes against config.json.

Usage: python3 scripts/ci/check_quantized.py DIR
Exit code 0 when every check passes; prints what it checked."""
import json, os, sys
from safetensors import safe_open

d = sys.argv[1]
cfg = json.load(open(os.path.join(d, "config.json")))
qc = cfg["quantization_config"]
assert qc["quant_method"] == "squeezellm", qc
b = qc["wbits"]
files = [f for f in os.listdir(d) if f.endswith(".safetensors")]
tensors = {}
for f in files:
    with safe_open(os.path.join(d, f), framework="numpy") as st:
        for k in st.keys():
            tensors[k] = st.get_tensor(k)
h, inter, L = cfg["hidden_size"], cfg["intermediate_size"], cfg["num_hidden_layers"]
hd = cfg.get("head_dim", h // cfg["num_attention_heads"])
shapes = {"self_attn.q_proj": (cfg["num_attention_heads"] * hd, h), "self_attn.k_proj": (cfg["num_key_value_heads"] * hd, h),
          "self_attn.v_proj": (cfg["num_key_value_heads"] * hd, h), "self_attn.o_proj": (h, cfg["num_attention_heads"] * hd),
          "mlp.gate_proj": (inter, h), "mlp.up_proj": (inter, h), "mlp.down_proj": (h, inter)}
n = 0
for l in range(L):
    for s, (out_f, in_f) in shapes.items():
        p = f"model.layers.{l}.{s}"
        qw, lt = tensors[p + ".qweight"], tensors[p + ".lookup_table"]
        assert str(qw.dtype) == "int32" and qw.shape == (in_f * b // 32, out_f), (p, qw.dtype, qw.shape)
        assert str(lt.dtype) == "float16" and lt.shape == (out_f, 2 ** b), (p, lt.dtype, lt.shape)
        assert p + ".weight" not in tensors, p
        if p + ".rows" in tensors:
            rows, cols, vals = tensors[p + ".rows"], tensors[p + ".cols"], tensors[p + ".vals"]
            assert str(rows.dtype) == "int32" and rows.shape == (out_f + 1,), p
            assert rows[0] == 0 and rows[-1] == cols.shape[0] == vals.shape[0], p
            assert (cols >= 0).all() and (cols < in_f).all(), p
        n += 1
for k in ["model.embed_tokens.weight", "model.norm.weight"]:
    assert k in tensors, k
print(f"check_quantized: {d}: {n} quantized layers ({b}-bit) and {len(tensors)} tensors read by the safetensors library: OK")

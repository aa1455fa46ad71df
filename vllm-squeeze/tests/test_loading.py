"""Config parsing and weight loading into vLLM's linear layers for TP 1, 2 and 4 (no workers started).

Each layer is built as rank r of a TP group (vLLM's rank functions patched), the checkpoint tensors
are fed through the parameters' weight loaders as vLLM's model loader does (with shard ids for merged
layers), and the test checks (1) where every tensor lands: qweight, lookup_table and sparse rows are
the slices the sharding says, and (2) that the ranks' products, concatenated (column-parallel) or
summed (row-parallel), equal x @ W^T of the dense, unsharded weight.
"""

import os

import pytest
import torch

from conftest import random_tensor, tp
from vllm_squeeze.config import SqueezeConfigError, make_classes
from vllm_squeeze.layout import dequantize, unpack

HIDDEN, HEAD, HEADS, KV_HEADS, INTER = 256, 64, 4, 2, 512
P = "model.layers.0"


@pytest.fixture(autouse=True)
def reference_kernel(monkeypatch):
    monkeypatch.setenv("VLLM_SQUEEZE_KERNEL", "reference")


def checkpoint(bits, density, seed=0):
    """name -> (qweight, lut, sparse) for one Llama block; shapes dict for the config."""
    dims = {
        "self_attn.q_proj": (HEADS * HEAD, HIDDEN),
        "self_attn.k_proj": (KV_HEADS * HEAD, HIDDEN),
        "self_attn.v_proj": (KV_HEADS * HEAD, HIDDEN),
        "self_attn.o_proj": (HIDDEN, HEADS * HEAD),
        "mlp.gate_proj": (INTER, HIDDEN),
        "mlp.up_proj": (INTER, HIDDEN),
        "mlp.down_proj": (HIDDEN, INTER),
    }
    ck, shapes = {}, {}
    for i, (n, (r, c)) in enumerate(dims.items()):
        q, lut, sp, _ = random_tensor(r, c, bits, density, seed=seed * 100 + i)
        ck[f"{P}.{n}"] = (q, lut, sp)
        shapes[f"{P}.{n}.qweight"] = ("I32", list(q.shape))
        shapes[f"{P}.{n}.lookup_table"] = ("F16", list(lut.shape))
        if sp is not None:
            shapes[f"{P}.{n}.rows"] = ("I32", [r + 1])
    return ck, shapes


def make_config(bits, shapes):
    Config, _ = make_classes()
    cfg = Config.from_config({"quant_method": "squeezellm", "wbits": bits})
    cfg.set_tensor_shapes(shapes)
    return cfg


def feed(layer, ck, name, shard_id=None):
    q, lut, sp = ck[name]
    parts = {"qweight": q, "lookup_table": lut}
    if sp is not None:
        parts.update(rows=sp.rowptr, cols=sp.cols, vals=sp.vals)
    for part, t in parts.items():
        param = getattr(layer, part)
        if shard_id is None:
            param.weight_loader(param, t)
        else:
            param.weight_loader(param, t, shard_id)


def build(kind, cfg, ck, rank, size):
    from vllm.model_executor.layers import linear as L

    with tp(rank, size):
        if kind == "qkv":
            layer = L.QKVParallelLinear(HIDDEN, HEAD, HEADS, KV_HEADS, bias=False, quant_config=cfg,
                                        prefix=f"{P}.self_attn.qkv_proj")
            for sid, n in zip("qkv", ("q_proj", "k_proj", "v_proj")):
                feed(layer, ck, f"{P}.self_attn.{n}", sid)
        elif kind == "gate_up":
            layer = L.MergedColumnParallelLinear(HIDDEN, [INTER, INTER], bias=False, quant_config=cfg,
                                                 prefix=f"{P}.mlp.gate_up_proj")
            feed(layer, ck, f"{P}.mlp.gate_proj", 0)
            feed(layer, ck, f"{P}.mlp.up_proj", 1)
        elif kind == "o":
            layer = L.RowParallelLinear(HEADS * HEAD, HIDDEN, bias=False, quant_config=cfg,
                                        prefix=f"{P}.self_attn.o_proj")
            feed(layer, ck, f"{P}.self_attn.o_proj")
        elif kind == "down":
            layer = L.RowParallelLinear(INTER, HIDDEN, bias=False, quant_config=cfg, prefix=f"{P}.mlp.down_proj")
            feed(layer, ck, f"{P}.mlp.down_proj")
        layer.quant_method.process_weights_after_loading(layer)
    return layer


def dense(ck, name):
    q, lut, sp = ck[name]
    bits = lut.shape[1].bit_length() - 1
    return dequantize(q, lut, bits, sp)


@pytest.mark.parametrize("bits,density", [(4, 0.0), (3, 0.0), (4, 0.01), (3, 0.02)])
@pytest.mark.parametrize("size", [1, 2, 4])
def test_qkv_column_parallel(vllm_config, bits, density, size):
    ck, shapes = checkpoint(bits, density)
    cfg = make_config(bits, shapes)
    wq, wk, wv = (dense(ck, f"{P}.self_attn.{n}") for n in ("q_proj", "k_proj", "v_proj"))
    x = torch.randn(5, HIDDEN, generator=torch.Generator().manual_seed(1))
    replicas = max(1, size // KV_HEADS)
    kv_per_rank = max(1, KV_HEADS // size) * HEAD
    q_per_rank = HEADS * HEAD // size
    for rank in range(size):
        layer = build("qkv", cfg, ck, rank, size)
        segs = layer._sq_segments
        # Where the tensors land: q rows split over ranks, k/v by KV head (replicated when heads < ranks).
        q0 = rank * q_per_rank
        kv0 = (rank // replicas) * kv_per_rank
        for seg, name, r0, n in zip(segs, ("q_proj", "k_proj", "v_proj"), (q0, kv0, kv0),
                                    (q_per_rank, kv_per_rank, kv_per_rank)):
            q, lut, sp = ck[f"{P}.self_attn.{name}"]
            assert torch.equal(seg.qweight, q[:, r0:r0 + n])
            assert torch.equal(seg.lut, lut[r0:r0 + n])
            if sp is not None:
                a, b = int(sp.rowptr[r0]), int(sp.rowptr[r0 + n])
                assert torch.equal(seg.sparse.rowptr, sp.rowptr[r0:r0 + n + 1] - a)
                assert torch.equal(seg.sparse.cols, sp.cols[a:b])
        y = layer._sq_kernel(x)
        want = torch.cat([x @ wq[q0:q0 + q_per_rank].T, x @ wk[kv0:kv0 + kv_per_rank].T,
                          x @ wv[kv0:kv0 + kv_per_rank].T], dim=1)
        torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bits,density", [(4, 0.0), (3, 0.02)])
@pytest.mark.parametrize("size", [1, 2])
def test_gate_up_column_parallel(vllm_config, bits, density, size):
    ck, shapes = checkpoint(bits, density)
    cfg = make_config(bits, shapes)
    wg, wu = dense(ck, f"{P}.mlp.gate_proj"), dense(ck, f"{P}.mlp.up_proj")
    x = torch.randn(3, HIDDEN, generator=torch.Generator().manual_seed(2))
    n = INTER // size
    full = []
    for rank in range(size):
        y = build("gate_up", cfg, ck, rank, size)._sq_kernel(x)
        full.append((y[:, :n], y[:, n:]))
    torch.testing.assert_close(torch.cat([g for g, _ in full], 1), x @ wg.T, rtol=1e-5, atol=1e-4)
    torch.testing.assert_close(torch.cat([u for _, u in full], 1), x @ wu.T, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("bits,density", [(4, 0.0), (3, 0.0), (4, 0.01), (3, 0.02)])
@pytest.mark.parametrize("size", [1, 2, 4])
@pytest.mark.parametrize("kind", ["o", "down"])
def test_row_parallel(vllm_config, bits, density, size, kind):
    ck, shapes = checkpoint(bits, density)
    cfg = make_config(bits, shapes)
    name = f"{P}.self_attn.o_proj" if kind == "o" else f"{P}.mlp.down_proj"
    w = dense(ck, name)
    cols = w.shape[1]
    x = torch.randn(4, cols, generator=torch.Generator().manual_seed(3))
    per = cols // size
    total = torch.zeros(4, HIDDEN)
    q, lut, sp = ck[name]
    g_in, g_words = (32, 3) if bits == 3 else (8, 1)
    for rank in range(size):
        layer = build(kind, cfg, ck, rank, size)
        (seg,) = layer._sq_segments
        c0 = rank * per
        assert torch.equal(seg.qweight, q[c0 // g_in * g_words:(c0 + per) // g_in * g_words])
        assert torch.equal(seg.lut, lut)
        if sp is not None:
            # The rank's sparse part is exactly the entries in its column range, shifted to 0.
            got = torch.zeros(HIDDEN, per)
            got = seg.sparse.add_to(got)
            want = sp.add_to(torch.zeros(HIDDEN, cols))[:, c0:c0 + per]
            assert torch.equal(got, want)
        total += layer._sq_kernel(x[:, c0:c0 + per])
    torch.testing.assert_close(total, x @ w.T, rtol=1e-5, atol=1e-4)


def test_three_bit_row_split_off_group_is_refused(vllm_config):
    from vllm.model_executor.layers import linear as L

    # 160 inputs over 2 ranks: rank 1 starts at input 80, not on a 3-bit group boundary (multiples of 32).
    q, lut, _, _ = random_tensor(64, 160, 3)
    cfg = make_config(3, {"x.down_proj.lookup_table": ("F16", [64, 8]), "x.down_proj.qweight": ("I32", list(q.shape))})
    with tp(1, 2):
        layer = L.RowParallelLinear(160, 64, bias=False, quant_config=cfg, prefix="x.down_proj")
        layer.qweight.weight_loader(layer.qweight, q)
        layer.lookup_table.weight_loader(layer.lookup_table, lut)
        with pytest.raises(SqueezeConfigError, match=r"x\.down_proj.*multiples of 32"):
            layer.quant_method.process_weights_after_loading(layer)


def test_config_parsing():
    Config, _ = make_classes()
    assert Config.from_config({"quant_method": "squeezellm", "wbits": 3}).weight_bits == 3
    assert Config.from_config({"wbits": "4"}).weight_bits == 4  # old SqueezeLLM quant_config.json
    assert Config.override_quantization_method({"quant_method": "squeezellm"}, None) == "squeeze"
    assert Config.override_quantization_method({"quant_method": "squeezellm"}, "squeeze") == "squeeze"
    assert Config.override_quantization_method({"quant_method": "gptq"}, None) is None
    with pytest.raises(SqueezeConfigError, match="wbits"):
        Config.from_config({"quant_method": "squeezellm"})
    with pytest.raises(SqueezeConfigError, match="wbits 5"):
        Config.from_config({"wbits": 5})
    cfg = Config.from_config({"wbits": 4})
    with pytest.raises(SqueezeConfigError, match="m.q_proj.lookup_table"):
        cfg.set_tensor_shapes({"m.q_proj.lookup_table": ("F16", [8, 12])})
    # Per-tensor widths come from the table widths.
    cfg.set_tensor_shapes({"a.lookup_table": ("F16", [8, 8]), "b.lookup_table": ("F16", [8, 16]), "b.rows": ("I32", [9])})
    assert (cfg.tensors["a"].bits, cfg.tensors["a"].sparse) == (3, False)
    assert (cfg.tensors["b"].bits, cfg.tensors["b"].sparse) == (4, True)


def test_mixed_bits_in_a_merged_layer(vllm_config):
    # gate at 3 bits, up at 4: one merged layer, two segments of different widths.
    ck3, _ = checkpoint(3, 0.01, seed=5)
    ck4, _ = checkpoint(4, 0.0, seed=6)
    ck = dict(ck4)
    ck[f"{P}.mlp.gate_proj"] = ck3[f"{P}.mlp.gate_proj"]
    shapes = {}
    for n, (q, lut, sp) in ck.items():
        shapes[n + ".lookup_table"] = ("F16", list(lut.shape))
        if sp is not None:
            shapes[n + ".rows"] = ("I32", [lut.shape[0] + 1])
    cfg = make_config(4, shapes)
    x = torch.randn(2, HIDDEN, generator=torch.Generator().manual_seed(7))
    y = build("gate_up", cfg, ck, 0, 1)._sq_kernel(x)
    want = torch.cat([x @ dense(ck, f"{P}.mlp.gate_proj").T, x @ dense(ck, f"{P}.mlp.up_proj").T], 1)
    torch.testing.assert_close(y, want, rtol=1e-5, atol=1e-4)

#!/usr/bin/env python3
"""Makes the PyTorch-checkpoint and SqueezeLLM fixtures (no network; torch + transformers + safetensors).

Outputs:
  Tests/SqueezeFormatsTests/Fixtures/pytorch/
    state_dict.pt + state_dict_expected.json   torch.save of an OrderedDict with every dtype, a
                                                transposed (non-contiguous) view, a slice at a storage
                                                offset, an nn.Parameter, nested dicts and int scalars
    evil_os_system.pt, evil_eval.pt              data.pkl calls os.system / builtins.eval (must be refused)
    offset_out_of_range.pt                       _rebuild_tensor_v2 with an offset past its storage
    complex_dtype.pt                             a ComplexFloatStorage tensor (unsupported dtype)
    short_storage.pt                             data/0 shorter than the storage's element count
    deflated.pt                                  tensor entry compressed with deflate
  Tests/SqueezeConvertTests/Fixtures/squeezellm/
    base/ (config.json, model.safetensors)      a tiny random Llama (hidden 64, 2 layers, vocab 128), F32
    w3/, w4/, w4s/ (sq-tiny-*.pt, quant_config.json, config.json)
                                                 full-state-dict SqueezeLLM checkpoints: 3-bit dense,
                                                 4-bit dense, 4-bit with CSR sparse rows (layer 0 with the
                                                 balanced kernel's startrows, layer 1 in the hybrid layout
                                                 with full_rows/full_row_indices)
    w4v1/ (sq-tiny-w4-s0.pt, quant_config.json)  LLaMA-v1 style: only the quantized layers (needs --base)
    reference_logits.json                        logits of fixed ids from transformers with the
                                                 dequantized weights W = lut[row, idx] + sparse (+ full rows)
  Tests/SqueezeQuantTests/Fixtures/gradients/
    layer_0.pt, layer_1.pt                       SqueezeLLM's chunked gradient files: dict q,k,v,o,gate,up,down
    gradients.safetensors                        the same values under Hugging Face names (for comparison)
    model/ (config.json, model.safetensors)      the tiny Llama they belong to

The packing is the reference's QuantLinearLUT.pack2 (squeezellm/quant.py) re-implemented line by line;
the sparse part follows the reference: outliers removed before rounding, then the zero mapping
(nearest-to-zero centroid) subtracted from the kept values; CSR via torch's sparse_csr.
Usage: python3 scripts/make_squeezellm_fixtures.py
"""
import collections
import io
import json
import math
import os
import pickle
import shutil
import zipfile

import numpy as np
import torch
from safetensors.torch import save_file
from transformers import LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PT_DIR = os.path.join(ROOT, "Tests/SqueezeFormatsTests/Fixtures/pytorch")
SQ_DIR = os.path.join(ROOT, "Tests/SqueezeConvertTests/Fixtures/squeezellm")
GR_DIR = os.path.join(ROOT, "Tests/SqueezeQuantTests/Fixtures/gradients")
NAMES = {"q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj", "o": "self_attn.o_proj",
         "gate": "mlp.gate_proj", "up": "mlp.up_proj", "down": "mlp.down_proj"}
TOKENS = [1, 17, 42, 99, 5, 64, 127, 3, 88, 23, 11, 70]


def fresh(d):
    if os.path.exists(d):
        shutil.rmtree(d)
    os.makedirs(d)


# ---------------------------------------------------------------- generic PyTorch fixtures

def rewrite_zip(src, dst, edit):
    """Copies the torch.save archive src to dst, applying edit(name, bytes) -> (bytes, compress_type)."""
    zin = zipfile.ZipFile(src)
    with zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data, ctype = edit(info.filename, zin.read(info.filename))
            zi = zipfile.ZipInfo(info.filename, date_time=(1980, 1, 1, 0, 0, 0))
            zi.compress_type = ctype
            zout.writestr(zi, data)


def replace_pickle(src, dst, payload):
    rewrite_zip(src, dst, lambda n, b: (payload if n.endswith("/data.pkl") else b, zipfile.ZIP_STORED))


class CallSystem:
    def __reduce__(self):
        return (os.system, ("echo pwned",))


class CallEval:
    def __reduce__(self):
        import builtins
        return (builtins.eval, ("1+1",))


class BadOffset:
    """Pickles as _rebuild_tensor_v2(storage, 100, (4,), (1,), ...) over a 4-element storage."""
    def __init__(self, storage):
        self.storage = storage

    def __reduce_ex__(self, proto):
        return (torch._utils._rebuild_tensor_v2, (self.storage, 100, (4,), (1,), False, collections.OrderedDict()))


def make_pytorch_fixtures():
    fresh(PT_DIR)
    g = torch.Generator().manual_seed(0)
    sd = collections.OrderedDict()
    sd["f32"] = torch.randn(3, 4, generator=g)
    sd["f16"] = torch.randn(5, generator=g).half()
    sd["bf16"] = torch.randn(2, 3, generator=g).bfloat16()
    sd["f64"] = torch.randn(4, generator=g).double()
    sd["i64"] = torch.tensor([-3, 0, 7, 1 << 40])
    sd["i32"] = torch.tensor([[1, -2], [3, -4]], dtype=torch.int32)
    sd["i16"] = torch.tensor([-300, 300], dtype=torch.int16)
    sd["i8"] = torch.tensor([-7, 7], dtype=torch.int8)
    sd["u8"] = torch.tensor([0, 200, 255], dtype=torch.uint8)
    sd["bool"] = torch.tensor([True, False, True])
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    sd["transposed"] = base.t()                 # non-contiguous view of base's storage
    sd["row2"] = base[2]                        # storage offset 12 into the same storage
    sd["scalar_tensor"] = torch.tensor(2.5)
    sd["param"] = torch.nn.Parameter(torch.ones(2, 2) * 3)
    sd["nested"] = {"inner": torch.tensor([9.0, 8.0]), "count": 3}
    sd["sparse_threshold.layer"] = 17
    sd["name"] = "tiny"
    sd._metadata = collections.OrderedDict({"": {"version": 1}})
    path = os.path.join(PT_DIR, "state_dict.pt")
    torch.save(sd, path)
    exp = {}
    for k, v in sd.items():
        if isinstance(v, torch.Tensor):
            exp[k] = {"shape": list(v.shape), "dtype": str(v.dtype).replace("torch.", ""),
                      "values": v.detach().double().reshape(-1).tolist()}
    exp["nested.inner"] = {"shape": [2], "dtype": "float32", "values": [9.0, 8.0]}
    with open(os.path.join(PT_DIR, "state_dict_expected.json"), "w") as f:
        zl = [{"name": i.filename, "size": i.file_size, "crc": i.CRC, "header_offset": i.header_offset,
               "method": i.compress_type} for i in zipfile.ZipFile(path).infolist()]
        json.dump({"tensors": exp, "ints": {"sparse_threshold.layer": 17, "nested.count": 3}, "zip": zl}, f, indent=1)

    small = os.path.join(PT_DIR, "_small.pt")
    torch.save({"w": torch.arange(4, dtype=torch.float32)}, small)
    replace_pickle(small, os.path.join(PT_DIR, "evil_os_system.pt"), pickle.dumps({"w": CallSystem()}, protocol=2))
    replace_pickle(small, os.path.join(PT_DIR, "evil_eval.pt"), pickle.dumps({"w": CallEval()}, protocol=4))
    torch.save({"w": BadOffset(torch.zeros(4).untyped_storage())}, os.path.join(PT_DIR, "_bad.pt"))
    # torch writes an UntypedStorage as torch.UntypedStorage (uint8 elements): the offset 100 is out of range either way.
    os.replace(os.path.join(PT_DIR, "_bad.pt"), os.path.join(PT_DIR, "offset_out_of_range.pt"))
    torch.save({"c": torch.zeros(2, dtype=torch.complex64)}, os.path.join(PT_DIR, "complex_dtype.pt"))
    rewrite_zip(small, os.path.join(PT_DIR, "short_storage.pt"),
                lambda n, b: (b[:8] if n.endswith("/data/0") else b, zipfile.ZIP_STORED))
    rewrite_zip(small, os.path.join(PT_DIR, "deflated.pt"),
                lambda n, b: (b, zipfile.ZIP_DEFLATED if n.endswith("/data/0") else zipfile.ZIP_STORED))
    os.remove(small)


# ---------------------------------------------------------------- SqueezeLLM fixtures

def round_to_nearest_pole_sim(w, poles):
    """squeezellm/quant.py: round w to the nearest value in poles (first on ties)."""
    stack = [(w - c).abs() for c in poles]
    diff = torch.stack(stack)
    idx = diff.argmin(axis=0)
    aug = 0
    for i, c in enumerate(poles):
        aug += (idx == i) * c
    return aug


def pack2(intweight_rows, bits):
    """QuantLinearLUT.pack2's packing loop: intweight_rows [out, in] -> int32 qweight [in*bits/32, out]."""
    intweight = torch.from_numpy(np.asarray(intweight_rows)).to(torch.int)
    intweight = intweight.t().contiguous()
    intweight = intweight.numpy().astype(np.uint32)
    qweight = np.zeros((intweight.shape[0] // 32 * bits, intweight.shape[1]), dtype=np.uint32)
    i = 0
    row = 0
    while row < qweight.shape[0]:
        if bits in [2, 4, 8]:
            for j in range(i, i + (32 // bits)):
                qweight[row] |= intweight[j] << (bits * (j - i))
            i += 32 // bits
            row += 1
        elif bits == 3:
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i))
            i += 10
            qweight[row] |= intweight[i] << 30
            row += 1
            qweight[row] |= (intweight[i] >> 2) & 1
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 1)
            i += 10
            qweight[row] |= intweight[i] << 31
            row += 1
            qweight[row] |= (intweight[i] >> 1) & 0x3
            i += 1
            for j in range(i, i + 10):
                qweight[row] |= intweight[j] << (3 * (j - i) + 2)
            i += 10
            row += 1
    return torch.from_numpy(qweight.astype(np.int32))


def start_rows(rows, numvals, outfeatures, num_threads):
    """pack2's balanced-kernel start rows (rowfactor variant)."""
    nnz_per_thread = int((numvals + num_threads - 1) / num_threads)
    sr = torch.zeros(num_threads, dtype=torch.int32)
    minidx = 0
    for i in range(num_threads):
        tmpmin = minidx
        for j in range(minidx, outfeatures):
            if nnz_per_thread * i > numvals:
                sr[i] = -1
                break
            elif rows[j] < nnz_per_thread * i:
                sr[i] = j
                tmpmin = j
            else:
                break
        minidx = tmpmin
    return sr


def quantize_linear(w, bits, sparse_frac, rng):
    """Per-row LUT (weighted-quantile centroids standing in for nuq.py's k-means) and indices.
    With sparse_frac > 0, the largest |w| are outliers: removed before rounding, kept as
    S = w - zero_mapping at their positions (as dense_plus_sparse / pack2 do)."""
    out, inp = w.shape
    k = 2 ** bits
    if sparse_frac > 0:
        thr = torch.quantile(w.abs().reshape(-1), 1 - sparse_frac)
        outliers = (w.abs() > thr).float()
    else:
        outliers = torch.zeros_like(w)
    D = w * (1 - outliers)
    lut = torch.zeros(out, k)
    idx = torch.zeros(out, inp, dtype=torch.int64)
    S = torch.zeros_like(w)
    for r in range(out):
        qs = torch.linspace(0.02, 0.98, k)
        c = torch.quantile(D[r], qs) + torch.from_numpy(rng.normal(0, 1e-4, k)).float()
        c, _ = torch.sort(c)
        lut[r] = c
        idx[r] = torch.stack([(D[r] - cc).abs() for cc in c]).argmin(axis=0)
        zero_mapping = round_to_nearest_pole_sim(torch.zeros(1), c)
        S[r] = (w[r] - zero_mapping) * outliers[r]
    return lut, idx, S


def dequant(lut, idx, S):
    return torch.gather(lut, 1, idx) + S


def tiny_config():
    return LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                       rms_norm_eps=1e-5, rope_theta=10000.0, tie_word_embeddings=False,
                       bos_token_id=1, eos_token_id=2, torch_dtype="float32")


def save_config(cfg, d):
    """config.json as transformers writes it, plus the flat rope_theta older readers (and Squeeze) use."""
    cfg.save_pretrained(d)
    p = os.path.join(d, "config.json")
    with open(p) as f:
        j = json.load(f)
    j["rope_theta"] = 10000.0
    with open(p, "w") as f:
        json.dump(j, f, indent=2, sort_keys=True)


def logits_of(model):
    with torch.no_grad():
        return model(torch.tensor([TOKENS])).logits[0].double()


def make_squeezellm_fixtures():
    fresh(SQ_DIR)
    torch.manual_seed(1)
    rng = np.random.default_rng(1)
    cfg = tiny_config()
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # less uniform weights than the init, so the LUTs differ per row
        for p in model.parameters():
            p.mul_(1.0 + 2.0 * torch.rand_like(p))
            if p.dim() == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))
    base_dir = os.path.join(SQ_DIR, "base")
    os.makedirs(base_dir)
    original = {k: v.clone() for k, v in model.state_dict().items()}
    save_file({k: v.contiguous() for k, v in original.items()}, os.path.join(base_dir, "model.safetensors"),
              metadata={"format": "pt"})
    save_config(cfg, base_dir)
    reference = {"tokens": TOKENS, "original": logits_of(model).reshape(-1).tolist(), "vocab": cfg.vocab_size}

    variants = [("w3", 3, 0.0), ("w4", 4, 0.0), ("w4s", 4, 0.02), ("w4v1", 4, 0.0)]
    for name, bits, frac in variants:
        d = os.path.join(SQ_DIR, name)
        os.makedirs(d)
        sd = collections.OrderedDict()
        keep_all = name != "w4v1"
        if keep_all:
            for k, v in original.items():
                if not any(f".{n}.weight" in k for n in NAMES.values()):
                    sd[k] = v.clone()
        model.load_state_dict(original)
        for layer in range(cfg.num_hidden_layers):
            for short, sub in NAMES.items():
                lname = f"model.layers.{layer}.{sub}"
                w = original[lname + ".weight"].float()
                lut, idx, S = quantize_linear(w, bits, frac, rng)
                W = dequant(lut, idx, S)
                sd[lname + ".qweight"] = pack2(idx.numpy(), bits)
                sd[lname + ".lookup_table"] = lut.float()
                if frac > 0:
                    csr = S.to_sparse(layout=torch.sparse_csr)
                    rows = csr.crow_indices().to(torch.int32)
                    cols = csr.col_indices().to(torch.int32)
                    vals = csr.values().to(torch.float32)
                    if layer == 1:
                        # Hybrid kernel layout: the topX rows with most nonzeros are taken out of the CSR
                        # part and stored densely as full_rows[:, j] (input-major), added to output row
                        # full_row_indices[j] (DenseMatVecKernel: mul[full_row_indices[col]] += sum_k full_rows[k, col] * vec[k]).
                        topX = 2
                        counts = (rows[1:] - rows[:-1])
                        top = torch.argsort(counts, descending=True, stable=True)[:topX].sort().values
                        full = torch.zeros(w.shape[1], topX)
                        S2 = S.clone()
                        for j, r in enumerate(top.tolist()):
                            full[:, j] = S[r]
                            S2[r] = 0
                        # Also a dense contribution that no sparse value had, so folding must add, not replace.
                        full[0, 0] += 0.25
                        W = dequant(lut, idx, S2)
                        for j, r in enumerate(top.tolist()):
                            W[r] += full[:, j]
                        csr = S2.to_sparse(layout=torch.sparse_csr)
                        rows = csr.crow_indices().to(torch.int32)
                        cols = csr.col_indices().to(torch.int32)
                        vals = csr.values().to(torch.float32)
                        sd[lname + ".full_rows"] = full
                        sd[lname + ".full_row_indices"] = top.to(torch.int32)
                    sd[lname + ".rows"] = rows
                    sd[lname + ".cols"] = cols
                    sd[lname + ".vals"] = vals
                    if layer == 0:
                        sd[lname + ".startrows"] = start_rows(rows, vals.shape[0], w.shape[0], 4 * w.shape[0])
                with torch.no_grad():
                    model.get_submodule(lname).weight.copy_(W)
        if frac > 0:
            for layer in range(cfg.num_hidden_layers):
                for sub in NAMES.values():
                    lname = f"model.layers.{layer}.{sub}"
                    sd["sparse_threshold." + lname] = int(sd[lname + ".vals"].shape[-1])
            # Real checkpoints keep the non-quantized tensors in the model's dtype: F16 here.
            for k in list(sd.keys()):
                if isinstance(sd[k], torch.Tensor) and not any(k.endswith(s) for s in (
                        "qweight", "lookup_table", "rows", "cols", "vals", "full_rows", "full_row_indices", "startrows")):
                    sd[k] = sd[k].half()
                    with torch.no_grad():
                        model.get_submodule(k.rsplit(".", 1)[0]).weight.copy_(sd[k].float())
        stem = f"sq-tiny-w{bits}-s{int(frac * 1000)}"
        torch.save(sd, os.path.join(d, stem + ".pt"))
        with open(os.path.join(d, "quant_config.json"), "w") as f:
            json.dump({"wbits": bits}, f, indent=4)
        if keep_all:
            save_config(cfg, d)
        reference[name] = logits_of(model).reshape(-1).tolist()
        model.load_state_dict(original)
    with open(os.path.join(SQ_DIR, "reference_logits.json"), "w") as f:
        json.dump(reference, f)


# ---------------------------------------------------------------- gradient chunks

def make_gradient_fixtures():
    fresh(GR_DIR)
    torch.manual_seed(2)
    cfg = tiny_config()
    cfg.num_hidden_layers = 2
    model = LlamaForCausalLM(cfg)
    mdir = os.path.join(GR_DIR, "model")
    os.makedirs(mdir)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, os.path.join(mdir, "model.safetensors"),
              metadata={"format": "pt"})
    save_config(cfg, mdir)
    flat = {}
    for layer in range(cfg.num_hidden_layers):
        data = {}
        for short, sub in NAMES.items():
            w = model.get_submodule(f"model.layers.{layer}.{sub}").weight
            g = torch.rand_like(w) ** 4 * 1e-6
            if layer == 1:
                g = g.bfloat16()   # the gradient tool's model is usually BF16
            data[short] = g
            flat[f"model.layers.{layer}.{sub}.weight"] = g.contiguous()
        # chunk_models.py: torch.save(data, os.path.join(args.output_path, f"layer_{i}.pt"))
        torch.save(data, os.path.join(GR_DIR, f"layer_{layer}.pt"))
    save_file(flat, os.path.join(GR_DIR, "gradients.safetensors"))


if __name__ == "__main__":
    make_pytorch_fixtures()
    make_squeezellm_fixtures()
    make_gradient_fixtures()
    for d in (PT_DIR, SQ_DIR, GR_DIR):
        for dp, _, fs in os.walk(d):
            for f in fs:
                p = os.path.join(dp, f)
                assert os.path.getsize(p) < 1 << 20, p
    print("fixtures written")

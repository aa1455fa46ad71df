#!/usr/bin/env python3
"""Writes a synthetic LLaMA-family checkpoint at a real model's shapes, for memory/time/speed checks.

usage: python3 scripts/scale/make_checkpoint.py SHAPE [--layers N] [--out DIR] [--seed S]
       SHAPE: tinyllama-1.1b | llama2-7b | llama2-13b

Writes DIR (default: $SQUEEZE_CACHE or ~/.cache/squeeze, then scale/SHAPE[-LN]): config.json
(LlamaForCausalLM), F16 safetensors in shards of at most 2 GiB with model.safetensors.index.json,
and a tokenizer (SmolLM2's tokenizer.json from ../shared/reference, so the vocabulary is its 49152
tokens, not LLaMA's 32000: the embedding and head are 1.5x LLaMA's). Never committed: it is made
at run time, into a cache outside git, and reused when its config matches.

Weights are deterministic (numpy PCG64 seeded per tensor) and heavy-tailed: N(0, 0.02^2) with 0.1%
of the entries scaled by 5-30x, so the quantizer's outlier paths have work; norm weights near 1.
Random weights carry no language: this checkpoint measures memory, time and speed only, never
quality (perplexity on it is meaningless).
"""
import argparse
import hashlib
import json
import os
import shutil
import sys

import numpy as np
from safetensors.numpy import save_file

SHAPES = {
    # name: hidden, intermediate, layers, heads, kv heads, max positions
    "tinyllama-1.1b": (2048, 5632, 22, 32, 4, 2048),
    "llama2-7b": (4096, 11008, 32, 32, 32, 4096),
    "llama2-13b": (5120, 13824, 40, 40, 40, 4096),
}
SHARD_BYTES = 2 << 30
HERE = os.path.dirname(os.path.abspath(__file__))
TOKENIZER = os.path.join(HERE, "..", "..", "..", "shared", "reference", "smollm2-tokenizer.json")


def find_tokenizer():
    for p in [os.environ.get("SQUEEZE_SCALE_TOKENIZER", ""), TOKENIZER, "/work/shared/reference/smollm2-tokenizer.json"]:
        if p and os.path.exists(p):
            return p
    sys.exit("make_checkpoint: no tokenizer.json found (set SQUEEZE_SCALE_TOKENIZER)")


def tensor(name, shape, seed, kind):
    """Deterministic values of one tensor as float16."""
    h = int.from_bytes(hashlib.sha256(f"{seed}:{name}".encode()).digest()[:8], "little")
    rng = np.random.Generator(np.random.PCG64(h))
    n = int(np.prod(shape))
    if kind == "norm":
        v = 1.0 + 0.05 * rng.standard_normal(n, dtype=np.float32)
    else:
        v = 0.02 * rng.standard_normal(n, dtype=np.float32)
        k = max(1, n // 1000)
        idx = rng.integers(0, n, size=k)
        v[idx] *= rng.uniform(5, 30, size=k).astype(np.float32)
    return v.astype(np.float16).reshape(shape)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("shape", choices=sorted(SHAPES))
    ap.add_argument("--layers", type=int, help="blocks (default: the model's)")
    ap.add_argument("--out")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    hidden, ffn, layers, heads, kv, maxpos = SHAPES[a.shape]
    if a.layers:
        layers = a.layers
    tok_path = find_tokenizer()
    tok = json.load(open(tok_path))
    vocab = len(tok["model"]["vocab"]) + sum(1 for t in tok.get("added_tokens", []) if t["id"] >= len(tok["model"]["vocab"]))
    cache = os.environ.get("SQUEEZE_CACHE", os.path.expanduser("~/.cache/squeeze"))
    out = a.out or os.path.join(cache, "scale", a.shape + (f"-L{layers}" if a.layers else ""))
    config = {
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": hidden,
        "intermediate_size": ffn, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv, "max_position_embeddings": maxpos, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "vocab_size": vocab, "tie_word_embeddings": False, "torch_dtype": "float16",
        "hidden_act": "silu", "bos_token_id": 1, "eos_token_id": 2,
        "squeeze_synthetic": {"shape": a.shape, "seed": a.seed, "generator": "scripts/scale/make_checkpoint.py v1"},
    }
    done = os.path.join(out, ".complete")
    if os.path.exists(done) and json.load(open(os.path.join(out, "config.json"))) == config:
        print(out)
        return
    if os.path.exists(out):
        shutil.rmtree(out)
    os.makedirs(out)
    names = [("model.embed_tokens.weight", (vocab, hidden), "w")]
    for l in range(layers):
        p = f"model.layers.{l}."
        hd = hidden // heads
        names += [
            (p + "input_layernorm.weight", (hidden,), "norm"),
            (p + "self_attn.q_proj.weight", (heads * hd, hidden), "w"),
            (p + "self_attn.k_proj.weight", (kv * hd, hidden), "w"),
            (p + "self_attn.v_proj.weight", (kv * hd, hidden), "w"),
            (p + "self_attn.o_proj.weight", (hidden, heads * hd), "w"),
            (p + "post_attention_layernorm.weight", (hidden,), "norm"),
            (p + "mlp.gate_proj.weight", (ffn, hidden), "w"),
            (p + "mlp.up_proj.weight", (ffn, hidden), "w"),
            (p + "mlp.down_proj.weight", (hidden, ffn), "w"),
        ]
    names += [("model.norm.weight", (hidden,), "norm"), ("lm_head.weight", (vocab, hidden), "w")]
    # Shards of at most SHARD_BYTES, in order.
    groups, cur, size = [], [], 0
    for n, s, k in names:
        b = 2 * int(np.prod(s))
        if cur and size + b > SHARD_BYTES:
            groups.append(cur)
            cur, size = [], 0
        cur.append((n, s, k))
        size += b
    groups.append(cur)
    weight_map, total = {}, 0
    for i, g in enumerate(groups):
        fname = f"model-{i + 1:05d}-of-{len(groups):05d}.safetensors"
        tensors = {n: tensor(n, s, a.seed, k) for n, s, k in g}
        save_file(tensors, os.path.join(out, fname), metadata={"format": "pt"})
        for n, s, _ in g:
            weight_map[n] = fname
            total += 2 * int(np.prod(s))
        print(f"{fname}: {len(g)} tensors", file=sys.stderr)
    json.dump({"metadata": {"total_size": total}, "weight_map": weight_map},
              open(os.path.join(out, "model.safetensors.index.json"), "w"), indent=2)
    shutil.copy(tok_path, os.path.join(out, "tokenizer.json"))
    json.dump({"model_max_length": maxpos, "tokenizer_class": "PreTrainedTokenizerFast"},
              open(os.path.join(out, "tokenizer_config.json"), "w"))
    json.dump(config, open(os.path.join(out, "config.json"), "w"), indent=2)
    open(done, "w").write("ok\n")
    print(out)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Makes Tests/SqueezeConvertTests/Fixtures/gguf_hf/: a tiny random Llama GGUF and what Hugging Face
transformers' own GGUF loading makes of it, the reference for `squeeze convert --to safetensors`.

    python3 scripts/make_gguf_hf_fixtures.py [--squeeze .build/release/squeeze] [--real MODEL.gguf]

No network. Needs torch, transformers (5.24.0 used), gguf, numpy.

1. A tiny random LlamaForCausalLM (2 layers, hidden 64, 4 query heads, 2 KV heads so the K
   permutation is the grouped-query one, untied LM head) from a seeded config, with weights
   rounded to F16.
2. A tiny byte-level BPE vocabulary: the 256 byte tokens and the first 700 GPT-2 merges (from
   Tests/SqueezeTokenizerTests/Fixtures/gpt2/merges.txt), plus four control tokens.
3. Written as GGUF with gguf's GGUFWriter following llama.cpp's convert_hf_to_gguf.py: `llama.*`
   hyper-parameters, llama.cpp tensor names, Q and K rows permuted (its `permute`: per head, the
   rotate-half halves interleaved), 2-D weights F16, norms F32, `tokenizer.ggml.*` with model
   `gpt2`, pre-tokenizer `llama-bpe`, merges, token types, BOS/EOS and add_bos_token.
4. Loaded back with transformers' GGUF loading (`AutoModelForCausalLM.from_pretrained(dir,
   gguf_file=...)`, `AutoTokenizer.from_pretrained(dir, gguf_file=...)`); stored: F32 logits at
   every position of fixed ids, and the tokenizer's ids of a few strings (with and without special
   tokens). Checked on the way: the GGUF-loaded model's logits equal the original model's.

With --squeeze BIN, also runs `BIN convert tiny.gguf --to safetensors --dtype f32`, loads the
converted directory with transformers (AutoModelForCausalLM, AutoTokenizer) and prints the max
logit difference to the GGUF-loaded model and any tokenization difference (a manual check; CI
runs the Swift side only). With --real MODEL.gguf (and --squeeze) the same for a real model.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile

import numpy as np
import torch
import gguf
import transformers
from transformers import AutoModelForCausalLM, AutoTokenizer, LlamaConfig, LlamaForCausalLM

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/SqueezeConvertTests/Fixtures/gguf_hf")
GPT2_MERGES = os.path.join(ROOT, "Tests/SqueezeTokenizerTests/Fixtures/gpt2/merges.txt")
NMERGES = 700
SPECIAL = ["<|begin_of_text|>", "<|end_of_text|>", "<|im_start|>", "<|im_end|>"]
IDS = [[956, 72, 101, 108, 108, 111, 11, 290, 995, 0, 13, 284, 345, 1000 % 960, 5, 9]]
TEXTS = ["Hello world", " the cat sat on the mat.", "I'm here, aren't you?", "numbers 12345 and 3.14",
         "<|im_start|>user\nHi there<|im_end|>", "tabs\tand\nnewlines\n\n", "café naïve 日本"]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b); cs.append(256 + n); n += 1
    return dict(zip(bs, map(chr, cs)))


def vocabulary():
    tokens = [bytes_to_unicode()[b] for b in range(256)]
    with open(GPT2_MERGES, encoding="utf-8") as f:
        merges = [l.rstrip("\n") for l in f if not l.startswith("#version")][:NMERGES]
    for m in merges:
        a, b = m.split(" ")
        tokens.append(a + b)
    assert len(set(tokens)) == len(tokens)
    types = [gguf.TokenType.NORMAL] * len(tokens) + [gguf.TokenType.CONTROL] * len(SPECIAL)
    return tokens + SPECIAL, types, merges


def permute(w, n_head, n_head_kv):
    # llama.cpp convert_hf_to_gguf.py LlamaModel.permute
    if n_head_kv is not None and n_head != n_head_kv:
        n_head = n_head_kv
    return w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def write_gguf(model, cfg, tokens, types, merges, path):
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny-random-llama")
    w.add_context_length(cfg.max_position_embeddings)
    w.add_embedding_length(cfg.hidden_size)
    w.add_block_count(cfg.num_hidden_layers)
    w.add_feed_forward_length(cfg.intermediate_size)
    w.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    w.add_head_count(cfg.num_attention_heads)
    w.add_head_count_kv(cfg.num_key_value_heads)
    w.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    w.add_rope_freq_base(cfg.rope_parameters["rope_theta"] if hasattr(cfg, "rope_parameters") and cfg.rope_parameters else cfg.rope_theta)
    w.add_vocab_size(cfg.vocab_size)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("gpt2")
    w.add_tokenizer_pre("llama-bpe")
    w.add_token_list(tokens)
    w.add_token_types(types)
    w.add_token_merges(merges)
    w.add_bos_token_id(tokens.index("<|begin_of_text|>"))
    w.add_eos_token_id(tokens.index("<|end_of_text|>"))
    w.add_add_bos_token(True)
    names = {"model.embed_tokens.weight": "token_embd.weight", "model.norm.weight": "output_norm.weight",
             "lm_head.weight": "output.weight"}
    per = {"input_layernorm": "attn_norm", "post_attention_layernorm": "ffn_norm", "self_attn.q_proj": "attn_q",
           "self_attn.k_proj": "attn_k", "self_attn.v_proj": "attn_v", "self_attn.o_proj": "attn_output",
           "mlp.gate_proj": "ffn_gate", "mlp.up_proj": "ffn_up", "mlp.down_proj": "ffn_down"}
    for name, t in model.state_dict().items():
        a = t.detach().float().numpy()
        if name in names:
            g = names[name]
        else:
            parts = name.split(".")
            g = f"blk.{parts[2]}.{per['.'.join(parts[3:-1])]}.weight"
        if name.endswith("q_proj.weight"):
            a = permute(a, cfg.num_attention_heads, cfg.num_attention_heads)
        if name.endswith("k_proj.weight"):
            a = permute(a, cfg.num_attention_heads, cfg.num_key_value_heads)
        a = np.ascontiguousarray(a.astype(np.float32 if a.ndim == 1 else np.float16))
        w.add_tensor(g, a)
    w.write_header_to_file(); w.write_kv_data_to_file(); w.write_tensors_to_file(); w.close()


def logits_of(model, ids):
    with torch.no_grad():
        return model(torch.tensor(ids)).logits.float().numpy()


def tokenize_all(tok):
    return [{"text": t, "ids": tok(t)["input_ids"], "ids_no_special": tok(t, add_special_tokens=False)["input_ids"]}
            for t in TEXTS]


def compare_converted(squeeze, gguf_path, ids, label):
    d = tempfile.mkdtemp(prefix="squeeze-gguf-hf-")
    out = os.path.join(d, "converted")
    subprocess.run([squeeze, "convert", gguf_path, "--to", "safetensors", "--dtype", "f32", "--output", out], check=True)
    gdir, gname = os.path.dirname(os.path.abspath(gguf_path)), os.path.basename(gguf_path)
    ref = AutoModelForCausalLM.from_pretrained(gdir, gguf_file=gname, dtype=torch.float32)
    conv = AutoModelForCausalLM.from_pretrained(out, dtype=torch.float32)
    a, b = logits_of(ref, ids), logits_of(conv, ids)
    same = (a.argmax(-1) == b.argmax(-1)).mean()
    print(f"[{label}] converted vs transformers-from-GGUF: max |logit diff| {np.abs(a - b).max():.3g} "
          f"(logit range {a.min():.2f}..{a.max():.2f}), same argmax {same * 100:.1f}%")
    t_ref = AutoTokenizer.from_pretrained(gdir, gguf_file=gname)
    t_conv = AutoTokenizer.from_pretrained(out)
    for t in TEXTS:
        x, y = t_ref(t)["input_ids"], t_conv(t)["input_ids"]
        print(f"[{label}] tokenizer {'same' if x == y else 'DIFFERENT'}: {t!r}" + ("" if x == y else f" {x} vs {y}"))
    shutil.rmtree(d)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--squeeze", help="built squeeze binary: also check its conversion in transformers")
    ap.add_argument("--real", help="a real GGUF to check the same way (needs --squeeze)")
    args = ap.parse_args()
    torch.manual_seed(0)
    tokens, types, merges = vocabulary()
    cfg = LlamaConfig(vocab_size=len(tokens), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256, rms_norm_eps=1e-5,
                      rope_theta=10000.0, tie_word_embeddings=False, bos_token_id=tokens.index("<|begin_of_text|>"),
                      eos_token_id=tokens.index("<|end_of_text|>"))
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():
        for n, p in model.named_parameters():
            if p.ndim == 1:
                p.copy_(1.0 + 0.1 * torch.randn_like(p))   # norms: not all ones, so a wrong norm shows
            else:
                p.copy_((p * 2.0).half().float())         # F16-exact weights, larger than the default init
    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "tiny-llama.gguf")
    write_gguf(model, cfg, tokens, types, merges, path)

    ref = AutoModelForCausalLM.from_pretrained(OUT, gguf_file="tiny-llama.gguf", dtype=torch.float32).eval()
    ids = [[i % cfg.vocab_size for i in row] for row in IDS]
    lr = logits_of(ref, ids)
    lo = logits_of(model, ids)
    diff = float(np.abs(lr - lo).max())
    print("transformers-from-GGUF vs the original model: max |logit diff|", diff)
    assert diff < 1e-4, "GGUF writing or transformers' GGUF loading disagrees with the original model"
    tok = AutoTokenizer.from_pretrained(OUT, gguf_file="tiny-llama.gguf")
    ref_cfg = ref.config
    fixture = {
        "source": f"transformers {transformers.__version__} AutoModelForCausalLM/AutoTokenizer.from_pretrained(gguf_file=tiny-llama.gguf), torch {torch.__version__}",
        "gguf": "tiny-llama.gguf",
        "ids": ids,
        "logits_shape": list(lr.shape),
        "logits": [round(float(x), 6) for x in lr.reshape(-1)],
        "config": {k: getattr(ref_cfg, k) for k in ["vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                                                     "num_attention_heads", "num_key_value_heads", "rms_norm_eps",
                                                     "max_position_embeddings", "tie_word_embeddings", "bos_token_id",
                                                     "eos_token_id"]},
        "rope_theta": 10000.0,
        "tokenizer": {"bos_token": tok.bos_token, "eos_token": tok.eos_token, "cases": tokenize_all(tok)},
    }
    with open(os.path.join(OUT, "reference.json"), "w") as f:
        json.dump(fixture, f, ensure_ascii=False)
    print("wrote", path, os.path.getsize(path), "bytes")
    if args.squeeze:
        compare_converted(args.squeeze, path, ids, "tiny")
        if args.real:
            compare_converted(args.squeeze, args.real, [[1, 504, 414, 46682, 18669, 314, 3807, 281, 260, 2240, 282]], "real")


if __name__ == "__main__":
    main()

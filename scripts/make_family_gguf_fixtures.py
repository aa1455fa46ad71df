#!/usr/bin/env python3
"""Makes Tests/SqueezeModelsTests/Fixtures/families_gguf/: tiny random Qwen2 and GPT-2 models written as
GGUF by llama.cpp's own convert_hf_to_gguf.py, with transformers' logits and tokenizer ids as reference.

    python3 scripts/make_family_gguf_fixtures.py [--llama-cpp DIR]

DIR is a llama.cpp source tree (default: the copy vendored in llama-cpp-python 0.3.36, unpacked in
/tmp/lcpp; see scripts/llamacpp_side_by_side.sh for how it was fetched). No network. Needs torch,
transformers (5.24.0 used), tokenizers, safetensors, numpy, plus what convert_hf_to_gguf.py imports.

For each family (qwen2: Qwen2ForCausalLM, 4 query heads and 2 KV heads, q/k/v biases, untied head,
config vocab_size padded past the tokenizer's like real Qwen2 checkpoints; gpt2: GPT2LMHeadModel,
Conv1D weights, tied head, learned positions):

1. A byte-level BPE tokenizer trained with the `tokenizers` library on a few lines of text (the 256
   byte tokens plus merges up to about 360 tokens, and the family's special tokens), with the family's
   real pre-tokenizer: Qwen2's split regex + ByteLevel(use_regex=False) and NFC normalizer, GPT-2's
   ByteLevel regex. Saved with the model as a Hugging Face directory (hf/, not committed).
2. A model from a seeded config, re-initialised with larger scales than transformers' default (as
   scripts/make_family_fixtures.py does, so the argmax is meaningful) and every parameter rounded to
   F16, so the F16 GGUF holds exactly the weights of the F32 reference.
3. Converted with llama.cpp's convert_hf_to_gguf.py (`--outtype f16`), run in this process with one
   monkeypatch: `TextModel.get_vocab_base_pre` returns "qwen2" / "gpt-2" (the converter identifies a
   pre-tokenizer by hashing the ids of a check string, and a freshly trained vocabulary has no known
   hash). For GPT-2, config.json gets `n_ctx` (= n_positions, as in the real gpt2 checkpoints), which
   the converter's GPT2Model requires and transformers 5 no longer writes.
4. Stored in reference.json per family: fixed token ids, the F32 logits at every position
   (transformers, float32, eager attention), the config fields, and the HF tokenizer's ids of a few
   strings (with and without special tokens).

Writes <family>.gguf and reference.json (both families) in the output directory.
"""
import argparse, json, os, shutil, sys, tempfile, zlib

import numpy as np
import torch
import transformers
from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM
from make_family_fixtures import reinit as reinit_scaled  # same folder (sys.path[0])

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/SqueezeModelsTests/Fixtures/families_gguf")
LLAMA_CPP = "/tmp/lcpp/llama_cpp_python-0.3.36/vendor/llama.cpp"
T = 16
QWEN2_REGEX = (r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+"
               r"|\s+(?!\S)|\s+")
CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "I'm sure they'll say it's the best thing we've ever done, aren't you?",
    "Numbers like 12345, 3.14 and 2024 appear in text; so do tabs\tand\nnewlines.",
    "def main():\n    print('hello world')\n    return 0\n",
    "Squeeze runs small language models on the CPU: load, quantize, generate.",
    "café, naïve, résumé, Ünïcödé — and 日本語のテキスト too.",
    "the the the and and of of to to in in is is it it that that",
]
TEXTS = ["Hello world", " the cat sat on the mat.", "I'm here, aren't you? They'll see.", "numbers 12345 and 3.14",
         "tabs\tand\nnewlines\n\n  spaces   here", "café naïve 日本", "def f(x):\n    return x*2\n",
         "<|im_start|>user\nHi there<|im_end|>", "text<|endoftext|>more"]


def tokenizer_for(family):
    tok = Tokenizer(models.BPE())
    if family == "qwen2":
        special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        tok.normalizer = normalizers.NFC()
        tok.pre_tokenizer = pre_tokenizers.Sequence([
            pre_tokenizers.Split(Regex(QWEN2_REGEX), behavior="isolated", invert=False),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    else:
        special = ["<|endoftext|>"]
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=360, min_frequency=1, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), special_tokens=[])
    tok.train_from_iterator(CORPUS * 3, trainer)
    tok.add_special_tokens(special)
    if family == "qwen2":
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", pad_token="<|endoftext|>",
                                       additional_special_tokens=["<|im_start|>", "<|im_end|>"])
    else:
        fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<|endoftext|>", eos_token="<|endoftext|>",
                                       unk_token="<|endoftext|>")
    return fast


def reinit(model, g):
    """make_family_fixtures.py's scaled re-initialisation (same draws), then every weight rounded to F16."""
    reinit_scaled(model, g)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(p.half().float())  # F16-exact, so the F16 GGUF holds these very weights


def build(family, hf_dir):
    tok = tokenizer_for(family)
    n_tok = len(tok)
    g = torch.Generator().manual_seed(zlib.crc32(family.encode()))
    if family == "qwen2":
        eos = tok.convert_tokens_to_ids("<|endoftext|>")
        cfg = Qwen2Config(vocab_size=n_tok + 5, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                          num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                          rms_norm_eps=1e-6, rope_theta=1000000.0, tie_word_embeddings=False,
                          use_sliding_window=False, bos_token_id=eos, eos_token_id=eos)
        model = Qwen2ForCausalLM(cfg)
    else:
        eos = tok.convert_tokens_to_ids("<|endoftext|>")
        cfg = GPT2Config(vocab_size=n_tok, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                         activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0,
                         layer_norm_epsilon=1e-5, bos_token_id=eos, eos_token_id=eos)
        model = GPT2LMHeadModel(cfg)
    cfg._attn_implementation = "eager"
    model = model.float().eval()
    reinit(model, g)
    model.save_pretrained(hf_dir, safe_serialization=True)
    tok.save_pretrained(hf_dir)
    if family == "gpt2":
        p = os.path.join(hf_dir, "config.json")
        c = json.load(open(p))
        c["n_ctx"] = c["n_positions"]
        json.dump(c, open(p, "w"), indent=2)
    ids = torch.randint(0, n_tok, (1, T), generator=g)
    with torch.no_grad():
        logits = model(ids).logits[0].float().numpy()
    return model, cfg, tok, ids[0].tolist(), logits


def convert(llama_cpp, family, hf_dir, out_path):
    """Runs llama.cpp's convert_hf_to_gguf.py in-process, with the pre-tokenizer name pinned."""
    sys.path.insert(0, llama_cpp)
    import convert_hf_to_gguf
    from conversion import base
    pre = {"qwen2": "qwen2", "gpt2": "gpt-2"}[family]
    base.TextModel.get_vocab_base_pre = lambda self, tokenizer: pre
    argv = sys.argv
    sys.argv = ["convert_hf_to_gguf.py", hf_dir, "--outtype", "f16", "--outfile", out_path]
    try:
        convert_hf_to_gguf.main()
    finally:
        sys.argv = argv


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--llama-cpp", default=LLAMA_CPP, help="llama.cpp source tree with convert_hf_to_gguf.py")
    ap.add_argument("--out", default=OUT)
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    work = tempfile.mkdtemp(prefix="squeeze-family-gguf-")
    ref = {"transformers": transformers.__version__, "torch": torch.__version__, "families": {}}
    for family in ["qwen2", "gpt2"]:
        hf_dir = os.path.join(work, family)
        model, cfg, tok, ids, logits = build(family, hf_dir)
        out_path = os.path.join(args.out, family + ".gguf")
        convert(args.llama_cpp, family, hf_dir, out_path)
        c = cfg.to_dict()
        entry = {
            "ids": ids, "logits": [float(x) for x in logits.reshape(-1)], "vocab_size": cfg.vocab_size,
            "config": {k: c[k] for k in sorted(c) if isinstance(c[k], (int, float, bool)) and k in (
                "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "tie_word_embeddings",
                "n_embd", "n_layer", "n_head", "n_positions", "n_inner", "layer_norm_epsilon",
                "bos_token_id", "eos_token_id")},
            "rope_theta": float(getattr(cfg, "rope_theta", None) or (cfg.rope_parameters or {}).get("rope_theta", 0) or 0)
                          if family == "qwen2" else None,
            "tokenizer": [{"text": t, "ids": tok(t)["input_ids"], "ids_no_special": tok(t, add_special_tokens=False)["input_ids"]}
                          for t in TEXTS],
            "tokenizer_size": len(tok),
        }
        ref["families"][family] = entry
        print(f"{family}: {os.path.getsize(out_path)} bytes, logits {logits.min():.2f}..{logits.max():.2f}, "
              f"vocab {cfg.vocab_size} (tokenizer {len(tok)})")
    with open(os.path.join(args.out, "reference.json"), "w") as f:
        json.dump(ref, f, indent=None, separators=(",", ":"))
        f.write("\n")
    shutil.rmtree(work)


if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Makes the model-family fixtures for SqueezeModelsTests and SqueezeQuantTests with Hugging Face
transformers (no download: every model is built from a config and randomly initialised).

Run from the repository root (needs torch, transformers and safetensors from PyPI):

    python3 scripts/make_family_fixtures.py

Writes, under Tests/SqueezeModelsTests/Fixtures/families/<family>/ for llama, llamabias (biases on
q/k/v/o and on the MLP, linear rope_scaling 2, tied head), llama3rope (Llama 3.1 rope_scaling),
mistral (sliding window 5, shorter than the 12-token test sequence), qwen2, opt (pre-LN), opt350m
(post-LN, word_embed_proj_dim 16 != hidden 32, project_in/project_out) and gpt2:

  config.json, model.safetensors   the model as `save_pretrained` writes it (F32, safe_serialization)
  reference.safetensors            `input_ids` (I64 [12]); `logits` (F32 [12, vocab]) of the model in
                                   float32 with eager attention; and `sqgrad.<weight name>` for every
                                   linear weight of every block, in the checkpoint's own name and shape
                                   (GPT-2's Conv1D weights are [in, out]): the elementwise square of the
                                   gradient of `model(ids, labels=ids).loss` (mean next-token
                                   cross-entropy over the 12-token window), i.e. the Fisher
                                   sensitivity of one window.

Weights are re-drawn with larger scales than transformers' default init (std 0.02 makes every
logit nearly equal, so an argmax comparison would test nothing): matrices N(0, 1/fan_in) * 1.5,
embeddings N(0, 1), norm weights 1 + N(0, 0.1), biases N(0, 0.1).
"""
import os
import zlib
import torch
from safetensors.torch import save_file
import transformers
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, OPTConfig, OPTForCausalLM, Qwen2Config, Qwen2ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "SqueezeModelsTests", "Fixtures", "families")
T = 12
VOCAB = 128


def families():
    common = dict(vocab_size=VOCAB, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                  num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                  bos_token_id=1, eos_token_id=2)
    yield "llama", LlamaForCausalLM, LlamaConfig(**common, rms_norm_eps=1e-5, tie_word_embeddings=False)
    yield "llamabias", LlamaForCausalLM, LlamaConfig(**common, rms_norm_eps=1e-5, tie_word_embeddings=True,
                                                     attention_bias=True, mlp_bias=True,
                                                     rope_scaling={"rope_type": "linear", "factor": 2.0})
    yield "llama3rope", LlamaForCausalLM, LlamaConfig(**common, rms_norm_eps=1e-5, tie_word_embeddings=False,
                                                      rope_theta=500000.0,
                                                      rope_scaling={"rope_type": "llama3", "factor": 8.0,
                                                                    "low_freq_factor": 1.0, "high_freq_factor": 4.0,
                                                                    "original_max_position_embeddings": 16})
    yield "mistral", MistralForCausalLM, MistralConfig(**common, sliding_window=5, rms_norm_eps=1e-5,
                                                       tie_word_embeddings=False)
    yield "qwen2", Qwen2ForCausalLM, Qwen2Config(**common, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                                 use_sliding_window=False)
    opt = dict(vocab_size=VOCAB, hidden_size=32, ffn_dim=64, num_hidden_layers=2, num_attention_heads=4,
               max_position_embeddings=64, bos_token_id=1, eos_token_id=2, pad_token_id=0,
               activation_function="relu", dropout=0.0, attention_dropout=0.0)
    yield "opt", OPTForCausalLM, OPTConfig(**opt, do_layer_norm_before=True, word_embed_proj_dim=32)
    yield "opt350m", OPTForCausalLM, OPTConfig(**opt, do_layer_norm_before=False, word_embed_proj_dim=16)
    yield "gpt2", GPT2LMHeadModel, GPT2Config(vocab_size=VOCAB, n_embd=32, n_layer=2, n_head=4, n_positions=64,
                                              activation_function="gelu_new", resid_pdrop=0.0, embd_pdrop=0.0,
                                              attn_pdrop=0.0, bos_token_id=1, eos_token_id=2)


def linear_weight_names(family, model):
    """The weights of every block that Squeeze quantizes, under the checkpoint's names."""
    names = []
    for n, p in model.named_parameters():
        if not n.endswith(".weight") or p.dim() != 2:
            continue
        if family.startswith(("llama", "mistral", "qwen2")) and ".layers." in n:
            names.append(n)
        elif family.startswith("opt") and ".layers." in n:
            names.append(n)
        elif family == "gpt2" and ".h." in n:
            names.append(n)
    return names


def reinit(model, g):
    with torch.no_grad():
        for n, p in model.named_parameters():
            if n.endswith("bias"):
                p.copy_(torch.randn(p.shape, generator=g) * 0.1)
            elif p.dim() == 1:
                p.copy_(1 + torch.randn(p.shape, generator=g) * 0.1)
            elif "embed" in n or n.endswith("wte.weight") or n.endswith("wpe.weight"):
                p.copy_(torch.randn(p.shape, generator=g))
            else:
                conv1d = n.startswith("transformer.h.")  # GPT-2 Conv1D: [in, out]
                fan_in = p.shape[0] if conv1d else p.shape[1]
                p.copy_(torch.randn(p.shape, generator=g) * 1.5 / fan_in ** 0.5)


def main():
    torch.manual_seed(0)
    for i, (family, cls, config) in enumerate(families()):
        g = torch.Generator().manual_seed(zlib.crc32(family.encode()))
        config._attn_implementation = "eager"
        model = cls(config).float().eval()
        reinit(model, g)
        d = os.path.join(OUT, family)
        os.makedirs(d, exist_ok=True)
        model.save_pretrained(d, safe_serialization=True)
        for extra in ("generation_config.json",):
            p = os.path.join(d, extra)
            if os.path.exists(p):
                os.remove(p)
        ids = torch.randint(3, VOCAB, (1, T), generator=g)
        out = model(ids, labels=ids)
        out.loss.backward()
        ref = {"input_ids": ids[0].to(torch.int64).contiguous(),
               "logits": out.logits[0].detach().float().contiguous()}
        params = dict(model.named_parameters())
        for n in linear_weight_names(family, model):
            ref["sqgrad." + n] = (params[n].grad.detach() ** 2).float().contiguous()
        save_file(ref, os.path.join(d, "reference.safetensors"),
                  metadata={"transformers": transformers.__version__, "torch": torch.__version__,
                            "loss": repr(out.loss.item()), "tokens": str(T)})
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{family}: loss {out.loss.item():.4f}, {len(ref) - 2} gradients, {size} bytes")


if __name__ == "__main__":
    main()

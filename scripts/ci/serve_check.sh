#!/usr/bin/env bash
# Starts `squeeze serve` on a free loopback port, waits for /health, runs the official `openai`
# Python client against it (scripts/ci/openai_client_check.py), then a bounded load test
# (scripts/bench/load_test.py: 8 clients x 20 requests, errors must be 0; LOAD=0 skips it), stops the
# server with SIGTERM (it must exit 0 by itself) and exits non-zero if anything failed. Builds nothing.
#   usage: bash scripts/ci/serve_check.sh PATH/TO/squeeze [MODEL]
#   env: LOAD=0 to skip the load test; LOAD_CLIENTS, LOAD_REQUESTS, LOAD_MAX_TOKENS (8, 20, 8).
# Needs: python3 with `openai` installed (pip install openai); the test model (default: the cache).
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=${1:?usage: serve_check.sh PATH/TO/squeeze [MODEL]}
MODEL=${2:-${SQUEEZE_MODEL:-$HOME/.cache/squeeze/models/SmolLM2-135M-Instruct.Q4_1.gguf}}
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1]); s.close()')
BASE="http://127.0.0.1:$PORT"
LOG=$(mktemp /tmp/squeeze-serve.XXXXXX.log)

"$BIN" serve --model "$MODEL" --host 127.0.0.1 --port "$PORT" --context 1024 >"$LOG" 2>&1 &
PID=$!
cleanup() {
    if kill -0 "$PID" 2>/dev/null; then
        kill -TERM "$PID" 2>/dev/null
        for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
        kill -KILL "$PID" 2>/dev/null || true
    fi
}
trap cleanup EXIT

ready=0
for _ in $(seq 1 600); do
    if ! kill -0 "$PID" 2>/dev/null; then echo "serve_check: the server exited early:"; cat "$LOG"; exit 1; fi
    if python3 -c "import urllib.request,sys; urllib.request.urlopen('$BASE/health', timeout=1)" 2>/dev/null; then ready=1; break; fi
    sleep 0.2
done
if [ "$ready" != 1 ]; then echo "serve_check: no /health after 120 s"; cat "$LOG"; exit 1; fi

python3 scripts/ci/openai_client_check.py "$BASE"
status=$?

if [ "$status" = 0 ] && [ "${LOAD:-1}" != 0 ]; then
    uptime
    python3 scripts/bench/load_test.py "$BASE" --clients "${LOAD_CLIENTS:-8}" --requests "${LOAD_REQUESTS:-20}" \
        --max-tokens "${LOAD_MAX_TOKENS:-8}" --ttft 5 || status=1
fi

# Clean shutdown on SIGTERM: the server must exit by itself with status 0.
kill -TERM "$PID"
for _ in $(seq 1 100); do kill -0 "$PID" 2>/dev/null || break; sleep 0.1; done
if kill -0 "$PID" 2>/dev/null; then echo "serve_check: the server did not exit within 10 s of SIGTERM"; status=1
else wait "$PID"; rc=$?; if [ "$rc" != 0 ]; then echo "serve_check: the server exited with $rc after SIGTERM"; cat "$LOG"; status=1; fi; fi
[ "$status" = 0 ] && echo "serve_check: OK" || { echo "serve_check: FAILED"; tail -20 "$LOG"; }
exit "$status"

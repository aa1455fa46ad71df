#!/usr/bin/env bash
# What 0.45% sparse costs in decode speed, interleaved: ROUNDS rounds, each running `squeeze bench`
# for every given binary on the dense and 0.45%-sparse 4- and 3-bit Fisher models of the quality table
# (--head q8, 1 and 2 threads, 256 decoded tokens after 16). Prints one CSV line per measurement
# (round, binary label, weights, threads, decode tokens/s), then for each binary, width and thread
# count the sparse cost of each round (1 - sparse / dense of the same round) and its median.
# Usage: bash scripts/bench/sparse_cost_rounds.sh ROUNDS LABEL=SQUEEZE_BIN ...   (QUALITY=dir of the models)
set -euo pipefail
ROUNDS=$1; shift
Q="${QUALITY:-$HOME/.cache/squeeze/quality}"
out=$(mktemp); trap 'rm -f "$out"' EXIT
for r in $(seq 1 "$ROUNDS"); do
  for b in "$@"; do
    "${b#*=}" bench --skip-kernels --weights "" --quantized w4=$Q/fisher-w4 --quantized w4s=$Q/fisher-w4-s45 \
      --quantized w3=$Q/fisher-w3 --quantized w3s=$Q/fisher-w3-s45 --head q8 --threads 1,2 --prompt 16 --decode 256 --json \
      | python3 -c 'import json,sys
for m in json.load(sys.stdin)["models"]:
    print("%s,%s,%s,%d,%.1f" % (sys.argv[1], sys.argv[2], m["weights"], m["threads"], m["decodeTokensPerSecond"]))' "$r" "${b%%=*}" \
      | tee -a "$out"
  done
done
python3 - "$out" <<'PY'
import collections, statistics, sys
runs = collections.defaultdict(dict)
for line in open(sys.argv[1]):
    r, b, w, t, v = line.strip().split(",")
    runs[(r, b)][(w.split("+")[0], t)] = float(v)
cost = collections.defaultdict(list)
for (r, b), d in sorted(runs.items()):
    for bits in ("w4", "w3"):
        for t in ("1", "2"):
            cost[(b, bits, t)].append(100 * (1 - d[(bits + "s", t)] / d[(bits, t)]))
for (b, bits, t), c in sorted(cost.items()):
    print("%s %s %s thread(s): sparse cost per round %s; median %.1f%%" % (b, bits, t, " ".join("%.1f" % x for x in c), statistics.median(c)))
PY

#!/usr/bin/env python3
"""Times two `squeeze` binaries on the same models, interleaved round by round (old, new, old, new, ...),
and prints each configuration's median prefill and decode tokens/s for both, so a refactor can be
checked for speed on a machine whose speed drifts from minute to minute.

    python3 scripts/bench/compare_binaries.py OLD_BIN NEW_BIN ROUNDS -- BENCH_ARGS...

BENCH_ARGS go to `squeeze bench` (with --json added), e.g.
    --skip-kernels --weights "" --quantized w4=DIR --head q8 --threads 1,2 --prompt 512 --decode 128
"""
import json, statistics, subprocess, sys

def run(binary, args):
    out = subprocess.run([binary, "bench", *args, "--json"], check=True, capture_output=True, text=True).stdout
    return {(m["weights"], m["threads"]): m for m in json.loads(out)["models"]}

def main():
    if len(sys.argv) < 5 or sys.argv[4] != "--":
        sys.exit(__doc__)
    old, new, rounds, args = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[5:]
    got = {"old": [], "new": []}
    for r in range(rounds):
        for label, binary in (("old", old), ("new", new)):
            got[label].append(run(binary, args))
            print(f"round {r + 1} {label} done", file=sys.stderr)
    keys = sorted(got["old"][0])
    print("| weights | threads | prefill old | prefill new | decode old | decode new | decode new/old |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    for k in keys:
        med = {lab: {f: statistics.median(rnd[k][f] for rnd in got[lab])
                     for f in ("prefillTokensPerSecond", "decodeTokensPerSecond")} for lab in got}
        print(f"| {k[0]} | {k[1]} | {med['old']['prefillTokensPerSecond']:.1f} | {med['new']['prefillTokensPerSecond']:.1f} "
              f"| {med['old']['decodeTokensPerSecond']:.1f} | {med['new']['decodeTokensPerSecond']:.1f} "
              f"| {med['new']['decodeTokensPerSecond'] / med['old']['decodeTokensPerSecond']:.3f} |")

if __name__ == "__main__":
    main()

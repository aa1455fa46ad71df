#!/usr/bin/env python3
"""Bounded load test of a running `squeeze serve` (loopback only; stops by itself).

usage: python3 scripts/bench/load_test.py http://127.0.0.1:PORT [--clients 8] [--requests 20] [--max-tokens 32]
                                    [--compare] [--single-requests 4] [--rounds 1] [--ttft 5]

Each client sends --requests streaming completions one after another (greedy, fixed length, EOS
ignored so every request decodes --max-tokens tokens). Prints total generated tokens/s, request
latency p50/p99, and errors; exits 1 if any request failed. --compare first runs one client alone
(the single-stream baseline, --single-requests requests) and prints the speed-up of the concurrent
run. --rounds N repeats the measurement N times, single stream and concurrent run alternating (so a
drifting machine affects both alike), and prints the medians and the median of the per-round
speed-ups. --ttft N first measures the time to first token of N short prompts on the idle server
(median)."""
import argparse
import http.client
import json
import statistics
import sys
import threading
import time
from urllib.parse import urlparse

PROMPTS = ["Once upon a time", "The history of Rome", "def quicksort(a):", "Water is made of",
           "My favourite season is", "The best way to learn", "In the year 2050,", "Dear diary, today"]


def one_request(host, port, prompt, max_tokens, key):
    """Streams one completion; returns (latency s, ttft s, completion tokens)."""
    conn = http.client.HTTPConnection(host, port, timeout=300)
    body = json.dumps({"prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "stream": True,
                       "ignore_eos": True, "stream_options": {"include_usage": True}})
    headers = {"Content-Type": "application/json"}
    if key:
        headers["Authorization"] = "Bearer " + key
    t0 = time.perf_counter()
    conn.request("POST", "/v1/completions", body, headers)
    resp = conn.getresponse()
    if resp.status != 200:
        raise RuntimeError(f"status {resp.status}: {resp.read()[:200]!r}")
    ttft, tokens, done = None, 0, False
    for raw in resp:
        line = raw.decode().strip()
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            break
        obj = json.loads(data)
        if "error" in obj:
            raise RuntimeError(obj["error"])
        if ttft is None and obj.get("choices") and obj["choices"][0].get("text"):
            ttft = time.perf_counter() - t0
        if obj.get("usage"):
            tokens = obj["usage"]["completion_tokens"]
    conn.close()
    if not done:
        raise RuntimeError("stream ended without [DONE]")
    return time.perf_counter() - t0, ttft or 0.0, tokens


def run(host, port, clients, requests, max_tokens, key):
    latencies, errors, tokens = [], [], [0]
    lock = threading.Lock()

    def client(i):
        for r in range(requests):
            try:
                lat, _, n = one_request(host, port, PROMPTS[(i + r) % len(PROMPTS)], max_tokens, key)
                with lock:
                    latencies.append(lat)
                    tokens[0] += n
            except Exception as e:  # counted, reported
                with lock:
                    errors.append(repr(e))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    return wall, latencies, errors, tokens[0]


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")


def report(label, clients, requests, wall, latencies, errors, tokens):
    tps = tokens / wall if wall > 0 else 0
    print(f"{label}: {clients} clients x {requests} requests: {tokens} tokens in {wall:.1f} s = {tps:.1f} tokens/s; "
          f"latency p50 {pct(latencies, 50):.2f} s, p99 {pct(latencies, 99):.2f} s; errors {len(errors)}")
    for e in errors[:5]:
        print("  error:", e)
    return tps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("base_url")
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--requests", type=int, default=20)
    ap.add_argument("--max-tokens", type=int, default=32)
    ap.add_argument("--compare", action="store_true", help="also run one client alone and print the speed-up")
    ap.add_argument("--single-requests", type=int, default=4, help="requests of the single-stream baseline")
    ap.add_argument("--rounds", type=int, default=1, help="repeat single stream + concurrent run N times")
    ap.add_argument("--ttft", type=int, default=0, help="measure time to first token on N short prompts first")
    ap.add_argument("--api-key", default=None)
    a = ap.parse_args()
    u = urlparse(a.base_url)
    if u.hostname not in ("127.0.0.1", "localhost", "::1"):
        sys.exit(f"refusing non-loopback address {u.hostname}")
    host, port = u.hostname, u.port or 80
    if not (1 <= a.clients <= 64 and 1 <= a.requests <= 1000 and 1 <= a.max_tokens <= 1024
            and 1 <= a.single_requests <= 1000 and 1 <= a.rounds <= 20):
        sys.exit("bounds: clients 1..64, requests 1..1000, max-tokens 1..1024, single-requests 1..1000, rounds 1..20")
    # Warm-up (not counted).
    one_request(host, port, "Hello", 2, a.api_key)
    if a.ttft:
        ttfts = [one_request(host, port, "Hi", 1, a.api_key)[1] for _ in range(a.ttft)]
        print(f"time to first token (idle, short prompt): median {statistics.median(ttfts) * 1000:.0f} ms, "
              f"max {max(ttfts) * 1000:.0f} ms over {a.ttft}")
    errors_total = 0
    singles, concurrents, ratios = [], [], []
    for rnd in range(a.rounds):
        prefix = f"round {rnd + 1}: " if a.rounds > 1 else ""
        single = None
        if a.compare:
            n1 = a.single_requests
            w, l, e, t = run(host, port, 1, n1, a.max_tokens, a.api_key)
            single = report(prefix + "single stream", 1, n1, w, l, e, t)
            errors_total += len(e)
            singles.append(single)
        w, l, e, t = run(host, port, a.clients, a.requests, a.max_tokens, a.api_key)
        tps = report(prefix + "concurrent", a.clients, a.requests, w, l, e, t)
        errors_total += len(e)
        concurrents.append(tps)
        if single:
            ratios.append(tps / single)
            print(f"{prefix}speed-up over a single stream: {tps / single:.2f}x")
    if a.rounds > 1:
        line = f"medians over {a.rounds} rounds: concurrent {statistics.median(concurrents):.1f} tokens/s"
        if ratios:
            line += (f", single stream {statistics.median(singles):.1f} tokens/s, speed-up {statistics.median(ratios):.2f}x"
                     f" (rounds {min(ratios):.2f}x-{max(ratios):.2f}x)")
        print(line)
    print(f"errors: {errors_total}")
    return 1 if errors_total else 0


if __name__ == "__main__":
    sys.exit(main())

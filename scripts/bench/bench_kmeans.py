#!/usr/bin/env python3
"""Per-row weighted k-means: Squeeze's engines against scikit-learn, in one run, on one core.

For n in (4096, 11008) and b in (3, 4): ROWS rows of N(0, 0.02^2) weights with positive random
sensitivities (seeded). scikit-learn runs KMeans(n_clusters=2^b, n_init="auto", max_iter=50,
random_state=0) with the sensitivities as sample_weight (the reference's per-row call, float32
input, one thread); Squeeze runs `squeeze bench-kmeans` on the same rows. Errors are
sum F (w - c[label])^2 in float64. Times are CPU times (process_time for scikit-learn with one thread, the thread's CPU clock for
Squeeze), best of REPEATS runs per row.

Usage: swift build -c release && python3 scripts/bench/bench_kmeans.py [--rows 24] [--repeats 3]
       [--binary .build/release/squeeze]
"""
import argparse
import json
import os
import subprocess
import tempfile
import time

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import numpy as np  # noqa: E402
from sklearn.cluster import KMeans  # noqa: E402

try:
    from threadpoolctl import threadpool_limits  # noqa: E402
except ImportError:  # pragma: no cover
    threadpool_limits = None


def sklearn_row(x, f, k, repeats):
    best = float("inf")
    err = None
    for _ in range(repeats):
        t0 = time.process_time()
        km = KMeans(n_clusters=k, n_init="auto", max_iter=50, random_state=0)
        km.fit(x.reshape(-1, 1), sample_weight=f)
        labels = km.labels_
        centers = km.cluster_centers_.reshape(-1)
        t1 = time.process_time()
        best = min(best, t1 - t0)
        err = float(np.sum(f.astype(np.float64) * (x.astype(np.float64) - centers[labels].astype(np.float64)) ** 2))
    return best * 1e3, err


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=24)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--binary", default=os.path.join(os.path.dirname(__file__), "..", "..", ".build", "release", "squeeze"))
    ap.add_argument("--json", help="also write all per-row figures to this file")
    args = ap.parse_args()

    table = []
    everything = {}
    ctx = threadpool_limits(limits=1) if threadpool_limits else None
    for n in (4096, 11008):
        rng = np.random.default_rng(1000 + n)
        x = (rng.standard_normal((args.rows, n)) * 0.02).astype(np.float32)
        f = (rng.random((args.rows, n)) * rng.random((args.rows, n)) + 1e-3).astype(np.float32)
        with tempfile.TemporaryDirectory() as d:
            xv, fv = os.path.join(d, "values.f32"), os.path.join(d, "weights.f32")
            x.tofile(xv)
            f.tofile(fv)
            for b in (3, 4):
                k = 1 << b
                sk = [sklearn_row(x[r], f[r], k, args.repeats) for r in range(args.rows)]
                out = subprocess.run(
                    [args.binary, "bench-kmeans", "--values", xv, "--weights", fv, "--rows", str(args.rows),
                     "--cols", str(n), "--bits", str(b), "--engines", "optimal,lloyd", "--repeats", str(args.repeats)],
                    check=True, capture_output=True, text=True).stdout
                rep = json.loads(out)
                sk_t = np.array([t for t, _ in sk])
                sk_e = np.array([e for _, e in sk])
                everything[f"n{n}_b{b}"] = {"sklearn": [{"ms": t, "err": e} for t, e in sk], "squeeze": rep}
                table.append(("sklearn", b, n, sk_t.mean(), 1.0, 1.0, "-", "-"))
                for eng in ("optimal", "lloyd"):
                    rows = rep["engines"][eng]
                    t = np.array([r["milliseconds"] for r in rows])
                    e = np.array([r["weightedError"] for r in rows])
                    lower_all = bool(np.all(e < sk_e))
                    not_higher = int(np.sum(e <= sk_e * (1 + 1e-9)))
                    table.append((eng, b, n, t.mean(), sk_t.sum() / t.sum(), e.sum() / sk_e.sum(),
                                  "yes" if lower_all else "no", f"{not_higher}/{len(rows)}"))
    if ctx is not None:
        ctx.unregister() if hasattr(ctx, "unregister") else None
    print(f"{'engine':8} {'b':>2} {'n':>6} {'ms/row':>9} {'speedup':>9} {'err ratio':>10} "
          f"{'lower on every row':>19} {'rows <= sklearn':>16}")
    for eng, b, n, t, sp, er, low, le in table:
        print(f"{eng:8} {b:>2} {n:>6} {t:>9.3f} {sp:>8.1f}x {er:>10.4f} {low:>19} {le:>16}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(everything, fh)


if __name__ == "__main__":
    main()

"""Time and memory of ``map_all`` (mAP@All, paper-spec §4.1) against naive per-query loops, same run.

Usage::

    .venv/bin/python benchmarks/bench_metrics.py                  # 20,000 x 20,000 x 128-d, 65 classes
    .venv/bin/python benchmarks/bench_metrics.py --n 2000 --dim 64 --naive-queries 100

Data: ``n`` queries and ``n`` gallery items, float32 ``[n, dim]`` = class centre + Gaussian noise, labels
uniform over ``--classes`` classes. Steps:

1. ``map_all`` on everything, timed (wall clock and CPU time of the process), then the process peak RSS
   (``ru_maxrss``). Everything runs with ``--threads`` BLAS threads (default 1, as the naive loops), so the
   CPU-time ratio is the one a busy shared machine disturbs least.
2. ``map_all`` again under ``tracemalloc`` for the peak of Python/numpy allocations during the call.
3. Two naive references on the first ``--naive-queries`` queries, extrapolated linearly to ``n`` queries
   (labelled as such): "CoDA loop" = ``cdist`` row, stable argsort, cumulative precision/recall and the
   ``VOCap`` envelope as a Python loop (CoDA's ``eval_AP_inner``/``VOCap`` structure); "numpy per query" =
   the same with the envelope vectorised. Their per-query APs are checked against ``per_query_ap``.
"""

from __future__ import annotations

import argparse
import os
import resource
import time
import tracemalloc

# isort: off
import u2cdr_bench  # noqa: F401 - pins the numerical kernels (U2CDR_REPRO) before numpy loads

# isort: on
import numpy as np
from scipy.spatial.distance import cdist

from u2cdr_bench.metrics import map_all, per_query_ap


def make_data(n: int, dim: int, classes: int, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((classes, dim)).astype(np.float32)
    ql = rng.integers(0, classes, n)
    gl = rng.integers(0, classes, n)
    qf = centres[ql] + 1.5 * rng.standard_normal((n, dim), dtype=np.float32)
    gf = centres[gl] + 1.5 * rng.standard_normal((n, dim), dtype=np.float32)
    return qf, ql, gf, gl


def naive_voc_coda_loop(dist_row: np.ndarray, rel_all: np.ndarray) -> float:
    """One query as in CoDA (stable sort instead of CoDA's unstable one); envelope as a Python loop."""
    order = np.argsort(dist_row, kind="stable")
    rel = rel_all[order]
    tp = np.cumsum(rel)
    fp = np.cumsum(~rel)
    rec = tp / rel.sum()
    prec = tp / (tp + fp)
    mrec = np.concatenate(([0.0], rec, [1.0]))
    mpre = np.concatenate(([0.0], prec, [0.0]))
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    step = mrec[1:] != mrec[:-1]
    return float(np.sum((mrec[1:][step] - mrec[:-1][step]) * mpre[1:][step]))


def naive_voc_numpy(dist_row: np.ndarray, rel_all: np.ndarray) -> float:
    """One query, fully vectorised: stable argsort, precision at the relevant ranks, reversed cummax."""
    rel = rel_all[np.argsort(dist_row, kind="stable")]
    prec = np.cumsum(rel)[rel] / (np.flatnonzero(rel) + 1)
    return float(np.maximum.accumulate(prec[::-1]).mean())


def run_naive(qf, ql, gf, gl, m: int, fn) -> tuple[float, np.ndarray]:
    t0 = time.perf_counter()
    aps = np.full(m, np.nan)
    g64 = gf.astype(np.float64)
    for i in range(m):
        rel_all = gl == ql[i]
        if rel_all.any():
            row = cdist(qf[i : i + 1].astype(np.float64), g64)[0]
            aps[i] = fn(row, rel_all)
    return time.perf_counter() - t0, aps


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="queries = gallery items (default 20000)")
    ap.add_argument("--dim", type=int, default=128, help="feature dimension (default 128)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--classes", type=int, default=65, help="number of classes (default 65, Office-Home)")
    ap.add_argument("--chunk", type=int, default=512, help="map_all query chunk (default 512)")
    ap.add_argument("--naive-queries", type=int, default=200, help="queries timed for the naive loops")
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads for everything (default 1)")
    args = ap.parse_args()
    from threadpoolctl import threadpool_limits

    threadpool_limits(args.threads)

    qf, ql, gf, gl = make_data(args.n, args.dim, args.classes, args.seed)
    m = min(args.naive_queries, args.n)
    print(
        f"data: {args.n} queries x {args.n} gallery x {args.dim}-d float32, {args.classes} classes, "
        f"seed {args.seed}; cpus {os.cpu_count()}, BLAS threads {args.threads}"
    )
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    t0, c0 = time.perf_counter(), time.process_time()
    value = map_all(qf, ql, gf, gl, chunk=args.chunk)
    t_fast, c_fast = time.perf_counter() - t0, time.process_time() - c0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"map_all = {value:.4f}  time {t_fast:.2f} s wall, {c_fast:.2f} s CPU  (chunk {args.chunk})")
    print(f"process peak RSS: {rss_before:.0f} MiB before the call, {rss_after:.0f} MiB after")

    tracemalloc.start()
    map_all(qf, ql, gf, gl, chunk=args.chunk)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"tracemalloc peak during map_all (numpy + Python allocations): {peak / 2**20:.0f} MiB")

    ref = per_query_ap(qf[:m], ql[:m], gf, gl, chunk=args.chunk).voc
    for label, fn in (("CoDA loop", naive_voc_coda_loop), ("numpy per query", naive_voc_numpy)):
        c0 = time.process_time()
        t_sub, aps = run_naive(qf, ql, gf, gl, m, fn)
        c_sub = time.process_time() - c0
        t_ext, c_ext = t_sub * args.n / m, c_sub * args.n / m
        diff = np.nanmax(np.abs(aps - ref))
        print(
            f"naive ({label}): {t_sub:.2f} s on {m} queries -> EXTRAPOLATED {t_ext:.1f} s for {args.n}; "
            f"speed-up of map_all x{t_ext / t_fast:.1f} wall, x{c_ext / c_fast:.1f} CPU; "
            f"max |AP diff| vs per_query_ap {diff:.1e}"
        )


if __name__ == "__main__":
    main()

"""Time one UEM run per digits pair and show where the time goes.

Each run goes through the real runner (protocol class lists, fit, embed, detector, metrics) with the digits
profile's default schedule; the records are written to a temporary folder and thrown away. Per run it prints
the seconds and the share of the total spent in

* ``stage1`` / ``stage2``: IDSE / CDSM training steps (clustering excluded),
* ``kmeans``: Elbow + K-means + prototype merging during fit, plus UEM's open-set detector (its own Elbow,
  K-means, merging and delta searches; open-set only),
* ``eval``: embedding both domains and computing the metrics,
* ``other``: data loading, memory-bank initialisation, bookkeeping.

Usage::

    .venv/bin/python benchmarks/bench_uem.py                       # all six pairs, open-set
    .venv/bin/python benchmarks/bench_uem.py --pairs mnist:optdigits --setting close-set --epochs-scale 0.5
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import faiss
import torch
from grid_times import uem_time_parts

from u2cdr_bench.data import DataOptions
from u2cdr_bench.runner import Runner, plan


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pairs", default=None, help="QUERY:GALLERY,... (default: all digits pairs)")
    ap.add_argument("--setting", default="open-set", help="close-set, partial or open-set")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--method", default="uem", help="uem or one of its ablations")
    ap.add_argument(
        "--threads", type=int, default=1, help="torch and faiss threads (1 is fastest on a busy box)"
    )
    ap.add_argument("--cache-dir", type=Path, default=None)
    args = ap.parse_args(argv)

    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    options = DataOptions(cache_dir=args.cache_dir, quiet=True)
    configs = plan(
        args.method, "digits", args.setting, args.pairs, [args.seed], options, epochs_scale=args.epochs_scale
    )
    cols = "".join(f"{c:>14}" for c in ("stage1", "stage2", "kmeans", "eval"))
    header = f"{'pair':<22}{'total':>8}{cols}{'other':>8}  mAP   acc    FR"
    print(f"{args.method} {args.setting} epochs-scale {args.epochs_scale} threads {args.threads}")
    print(header)
    totals: list[float] = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(options, Path(tmp), force=True)
        for cfg in configs:
            t0 = time.perf_counter()
            rec = runner.run(cfg)
            total = time.perf_counter() - t0
            totals.append(total)
            parts = uem_time_parts(rec)
            other = total - sum(parts.values())
            cells = "".join(f"{v:8.1f}s{100 * v / total:4.0f}%" for v in parts.values())
            m = rec["metrics"]
            acc, fr = m.get("openset_accuracy"), m.get("false_rejection")
            acc_s = f"{acc:5.1f} {fr:5.1f}" if acc is not None and fr is not None else "    -     -"
            pair = f"{cfg.query}:{cfg.gallery}"
            print(f"{pair:<22}{total:7.1f}s{cells}{other:7.1f}s {m['map_all']:5.1f} {acc_s}", flush=True)
    if totals:
        print(f"mean {sum(totals) / len(totals):.1f}s, max {max(totals):.1f}s over {len(totals)} runs")
        print("acc = open-set detection accuracy on private queries, FR = shared queries flagged private (%)")


if __name__ == "__main__":
    main()

"""Feature-extraction throughput (images per second) of a backbone on real images.

Extracts a few views of the first ``--limit`` images of one domain into a *temporary* cache (so the numbers
measure extraction, never a cache hit) and prints one JSON line per view kind plus a summary::

    python benchmarks/bench_extract.py --data-dir ../shared/data --dataset pacs --domain photo --limit 256
    python benchmarks/bench_extract.py --backbone resnet18 --threads 2 --views clean,aug

Each timing covers decoding, the view's transform (resize + crop, or the augmentation) and the forward
passes (eval mode, BatchNorm folded, channels-last, ``torch.inference_mode``), i.e. what a first run pays.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import torch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-dir", type=Path, default=os.environ.get("U2CDR_DATA", "../shared/data"))
    ap.add_argument("--dataset", default="pacs")
    ap.add_argument("--domain", default="photo")
    ap.add_argument("--backbone", default="effnet-lite0")
    ap.add_argument("--limit", type=int, default=256, help="images of the domain to use (0 = all)")
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0 = torch's default)")
    ap.add_argument("--views", default="clean,aug,strong,fourier,phase", help="view kinds, comma-separated")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from u2cdr_bench.data.real import discover_domain, partner_pool
    from u2cdr_bench.data.registry import get_dataset
    from u2cdr_bench.features import ImageSet, View, extract_views

    spec = get_dataset(args.dataset)
    manifest = spec.extra["manifest"]
    domain = spec.domain(args.domain).name
    paths, names, labels, _ = discover_domain(manifest, domain, args.data_dir)
    n = len(paths) if args.limit <= 0 else min(args.limit, len(paths))
    files = ImageSet(f"bench-{args.dataset}", domain, tuple(paths[:n]), tuple(names[:n]), labels[:n])
    pool = partner_pool(manifest, args.data_dir)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        # warm-up: load the weights and pay the one-off kernel set-up outside the timings
        warm = ImageSet("bench-warmup", domain, tuple(paths[:4]), tuple(names[:4]), labels[:4])
        extract_views(warm, args.backbone, [View("clean")], Path(tmp) / "warm", quiet=True)
        for kind in [k.strip() for k in args.views.split(",") if k.strip()]:
            view = View(kind, 0)  # type: ignore[arg-type]
            t0 = time.perf_counter()
            extract_views(
                files,
                args.backbone,
                [view],
                Path(tmp) / kind,
                batch_size=args.batch_size,
                quiet=True,
                partners=pool,
            )
            dt = time.perf_counter() - t0
            row = {"view": kind, "images": n, "seconds": round(dt, 2), "images_per_s": round(n / dt, 1)}
            results.append(row)
            print(json.dumps(row), flush=True)
    total = sum(r["seconds"] for r in results)
    summary = {
        "dataset": args.dataset,
        "domain": domain,
        "backbone": args.backbone,
        "images": n,
        "views": len(results),
        "seconds": round(total, 2),
        "images_per_s_all_views": round(n * len(results) / total, 1) if total else None,
        "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "torch": torch.__version__,
    }
    print(json.dumps(summary), flush=True)


if __name__ == "__main__":
    main()

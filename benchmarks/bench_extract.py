"""Feature-extraction throughput (images per second) of a backbone on real images.

Extracts a few views of the first ``--limit`` images of one domain into a *temporary* cache (so the numbers
measure extraction, never a cache hit) and prints one JSON line per view kind plus a summary::

    python benchmarks/bench_extract.py --data-dir ../shared/data --dataset pacs --domain photo --limit 256
    python benchmarks/bench_extract.py --backbone resnet18 --threads 2 --views clean,aug

Each timing covers decoding, the view's transform (resize + crop, or the augmentation), the forward passes
(eval mode, BatchNorm folded, channels-last, ``torch.inference_mode``) and the cache writes, i.e. what a first
run pays, with ``$U2CDR_DECODE_WORKERS`` decode workers (default: one when a core is free). Beside each
view, the **reference**: a bare forward of the same model on the same decoded inputs, in the same batches
(inputs prepared beforehand, untimed); ``ratio = reference time / extraction time`` (1 = decoding,
augmentation and cache writes cost nothing on top of the network; issue 13 asks >= 0.8).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

# isort: off
import u2cdr_bench  # noqa: F401 - pins the numerical kernels (U2CDR_REPRO) before torch loads

# isort: on
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

    from u2cdr_bench import features as feat
    from u2cdr_bench.backbones import parse_backbone
    from u2cdr_bench.data.images import limit_size, open_rgb
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
    spec_bb, _ = parse_backbone(args.backbone)
    model = None

    def bare_forward(files: ImageSet, view: View, pool: ImageSet, batch: int, chunk: int = 256) -> float:
        """Seconds of the forward passes alone on the view's inputs (decoded and transformed beforehand)."""
        nonlocal model
        if model is None:
            model = feat._inference_model(args.backbone)
        threads = feat._threads_from_env()  # the extraction's forward threads
        old_threads = torch.get_num_threads()
        if threads:
            torch.set_num_threads(threads)
        total = 0.0
        with torch.inference_mode():
            for lo in range(0, len(files), chunk):
                hi = min(len(files), lo + chunk)
                images = [open_rgb(p) for p in files.paths[lo:hi]]
                images = [None if im is None else limit_size(im, feat.MAX_SHORT_SIDE) for im in images]
                x = feat._view_inputs(view, images, files.names[lo:hi], spec_bb.preprocess, pool)
                for b in range(0, hi - lo, batch):
                    xb = x[b : b + batch].contiguous(memory_format=torch.channels_last)
                    t0 = time.perf_counter()
                    model(xb)
                    total += time.perf_counter() - t0
        torch.set_num_threads(old_threads)
        return total

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
            ref = bare_forward(files, view, pool, args.batch_size)
            row = {
                "view": kind,
                "images": n,
                "seconds": round(dt, 2),
                "images_per_s": round(n / dt, 1),
                "bare_forward_s": round(ref, 2),
                "ratio": round(ref / dt, 2),
                "decode_workers": (
                    feat.decode_workers(feat._threads_from_env() or None)
                    if hasattr(feat, "decode_workers")
                    else 0  # code before issue 13: no workers
                ),
            }
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

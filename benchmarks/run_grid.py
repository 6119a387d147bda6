"""Run a results grid (methods × settings × all directed pairs × seeds) into a records folder.

The grid is split round-robin over ``--workers`` so that several processes can share a machine; each process
is started with its own ``--worker I``. Finished records are skipped, so an interrupted grid resumes where it
stopped. One line per run: method, setting, pair, map_all, P@1, open-set accuracy and wall time.

    U2CDR_THREADS=1 .venv/bin/python benchmarks/run_grid.py --dataset digits --out results/digits \
        --workers 2 --worker 0 &
    U2CDR_THREADS=1 .venv/bin/python benchmarks/run_grid.py --dataset digits --out results/digits \
        --workers 2 --worker 1 &

Real data: ``--dataset pacs --data-dir ../shared/data`` (features mode, ``effnet-lite0`` unless told).
Features without stored views (``--dataset npz:PATH``): ``--feature-views NAME`` as in ``u2cdr-bench run``.
Several seeds: ``--seeds 2024,2025,2026``; another class split: ``--split-seed 1`` (issue 15).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from u2cdr_bench.data.registry import DataOptions
from u2cdr_bench.methods import method_names
from u2cdr_bench.protocols import setting_names
from u2cdr_bench.runner import Runner, plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: all registered)")
    ap.add_argument("--settings", default=None, help="comma-separated subset (default: all three)")
    ap.add_argument("--pairs", default=None, help="QUERY:GALLERY,... (default: all directed pairs)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--seeds", default=None, help="comma-separated seeds (overrides --seed): 2024,2025,2026")
    ap.add_argument("--split-seed", type=int, default=0, help="seed of the partial / open-set class split")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--backbone", default="effnet-lite0")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--worker", type=int, default=0)
    ap.add_argument(
        "--reverse", action="store_true", help="walk this share backwards (a second process on it)"
    )
    ap.add_argument("--hp", action="append", default=[], help="KEY=VALUE hyper-parameter override (probes)")
    ap.add_argument(
        "--feature-views",
        default=None,
        help="feature-space view generator for features data without stored views (run --feature-views)",
    )
    args = ap.parse_args()
    import yaml

    hparams = {k: yaml.safe_load(v) for k, _, v in (item.partition("=") for item in args.hp)}
    methods = args.methods.split(",") if args.methods else method_names()
    settings = args.settings.split(",") if args.settings else setting_names()
    seeds = [int(v) for v in args.seeds.split(",")] if args.seeds else [args.seed]
    options = DataOptions(
        data_dir=args.data_dir, backbone=args.backbone, quiet=True, feature_views=args.feature_views
    )
    runner = Runner(options, args.out)
    configs = [
        cfg
        for method in methods
        for setting in settings
        for cfg in plan(
            method,
            args.dataset,
            setting,
            args.pairs,
            seeds,
            options,
            split_seed=args.split_seed,
            epochs_scale=args.epochs_scale,
            hparams=hparams,
        )
    ]
    mine = configs[args.worker :: args.workers]
    if args.reverse:
        mine = mine[::-1]
    print(f"worker {args.worker}/{args.workers}: {len(mine)} of {len(configs)} runs", flush=True)
    for i, cfg in enumerate(mine, 1):
        t = time.perf_counter()
        rec = runner.existing(cfg) if runner.is_done(cfg) else runner.run(cfg)
        m = rec["metrics"]
        acc = m.get("openset_accuracy")
        print(
            f"[{i}/{len(mine)}] {cfg.method:16s} {cfg.setting:9s} {rec['task']['pair']:24s} s{cfg.seed} "
            f"map_all {m['map_all']:6.2f} p@1 {m['p@1']:6.2f} acc {'-' if acc is None else f'{acc:6.2f}'} "
            f"({time.perf_counter() - t:.1f} s)",
            flush=True,
        )


if __name__ == "__main__":
    main()

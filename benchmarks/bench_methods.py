"""Run time of every registered method on one digits pair, so users can budget a grid.

Prints, per method, the wall time of one run (fit, embed, evaluation) and its ratio to the `pretrained`
run measured in the same invocation (the reference: loading + evaluation only).

    .venv/bin/python benchmarks/bench_methods.py [--pair mnist:optdigits] [--setting open-set] \\
        [--epochs-scale 1]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from u2cdr_bench.data.registry import DataOptions
from u2cdr_bench.methods import method_names
from u2cdr_bench.runner import Runner, plan


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--pair", default="mnist:optdigits")
    ap.add_argument("--setting", default="open-set")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--methods", default=None, help="comma-separated subset")
    args = ap.parse_args()
    methods = args.methods.split(",") if args.methods else method_names()
    if "pretrained" in methods:
        methods.remove("pretrained")
    methods.insert(0, "pretrained")
    options = DataOptions(quiet=True)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(options, Path(tmp), force=True)
        for m in methods:
            (cfg,) = plan(
                m, "digits", args.setting, args.pair, [args.seed], options, epochs_scale=args.epochs_scale
            )
            rec = runner.run(cfg)
            t = rec["timings"]
            rows.append((m, t["total_s"], t["fit_s"], t["eval_s"], rec["metrics"]["map_all"]))
            print(
                f"{m:18s} total {t['total_s']:7.1f} s  fit {t['fit_s']:7.1f} s  eval {t['eval_s']:5.1f} s  "
                f"map_all {rec['metrics']['map_all']:.1f}",
                flush=True,
            )
    ref = rows[0][1]
    print(
        f"\ndigits {args.pair} {args.setting}, epochs-scale {args.epochs_scale}; "
        "ratio = total / pretrained total"
    )
    print(f"{'method':18s} {'total (s)':>10s} {'ratio':>8s}")
    for m, total, *_ in rows:
        print(f"{m:18s} {total:10.1f} {total / ref:8.1f}")
    grid_min = sum(r[1] for r in rows[1:]) * 18 / 60
    print(f"{'grid of 18 runs':18s} (6 pairs x 3 settings, 1 seed): about {grid_min:.0f} min for all methods")


if __name__ == "__main__":
    main()

"""Write the committed reference records of the CI metric regression grid (results/reference/).

Grid: every registered method × the three settings × two digits pairs (optdigits:printed, printed:optdigits),
seed 2024, ``--epochs-scale 0.1`` (a short schedule). Re-run after an intended change of numbers:

    .venv/bin/python benchmarks/make_reference.py [--methods uem,pcs]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from u2cdr_bench.data.registry import DataOptions
from u2cdr_bench.methods import method_names
from u2cdr_bench.protocols import setting_names
from u2cdr_bench.runner import Runner, plan

PAIRS = "optdigits:printed,printed:optdigits"
SEED = 2024
EPOCHS_SCALE = 0.1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=Path("results/reference"))
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: all registered)")
    args = ap.parse_args()
    methods = args.methods.split(",") if args.methods else method_names()
    options = DataOptions(quiet=True)
    runner = Runner(options, args.out, force=True)
    for method in methods:
        for setting in setting_names():
            for cfg in plan(method, "digits", setting, PAIRS, [SEED], options, epochs_scale=EPOCHS_SCALE):
                t = time.perf_counter()
                rec = runner.run(cfg)
                m = rec["metrics"]
                print(
                    f"{method:16s} {setting:9s} {rec['task']['pair']}: map_all {m['map_all']:.2f} "
                    f"p@1 {m['p@1']:.2f} acc {m.get('openset_accuracy')} ({time.perf_counter() - t:.1f} s)",
                    flush=True,
                )


if __name__ == "__main__":
    main()

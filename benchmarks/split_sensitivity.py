"""How much the class split moves a result, next to how much the seed moves it (issue 15, item 5).

The partial and open-set settings keep a random half of the classes on one side
(:mod:`u2cdr_bench.protocols`, ``--split-seed``; docs/paper-spec.md leaves which classes unsaid). This
script reads the current-code records (:func:`versus_current.current_values`: same code fingerprint, no
override, ``epochs_scale`` 1) of two folders, one made with split seed 0 (``--base``, e.g. ``results/pacs``)
and one with another split seed (``--other``, e.g. ``results/pacs-split1`` from ``run_grid.py --split-seed
1``), and prints per (setting, method), with ``A(split, seed)`` the average of the metric over the pairs:

* ``split 0`` and ``split S``: ``A(0, seed)`` and ``A(S, seed)`` at the one seed both folders hold
  (``--seed``);
* ``Δ split``: ``A(S, seed) − A(0, seed)``, and ``|Δ| pair``: the mean over pairs of the absolute per-pair
  change (a split reshuffles which pairs are hard even when the average holds);
* ``seed std``: the population std (ddof 0, as ``table --stats``) of ``A(0, s)`` over the base folder's
  seeds, and ``seed range``: max − min of those averages; ``|Δ| pair (seeds)``: the mean over pairs and over
  the other seeds ``s`` of ``|A_pair(0, s) − A_pair(0, seed)|``, the per-pair change a seed alone makes, to
  set beside ``|Δ| pair``;
* ``− ref``: the method's average minus the reference's (``--versus``, UEM) at each split, so a change of the
  order of methods shows.

Only methods with every pair at ``--seed`` in both folders are listed. A report of results (test labels):
nothing that runs reads it.

    .venv/bin/python benchmarks/split_sensitivity.py --base results/pacs --other results/pacs-split1 \\
        --split-seed 1 --dataset pacs --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from u2cdr_bench.data.registry import DataOptions
from u2cdr_bench.methods import method_names
from u2cdr_bench.records import load_records
from u2cdr_bench.runner import Runner

sys.path.insert(0, str(Path(__file__).resolve().parent))
from versus_current import current_values  # noqa: E402 - the sibling script's reader of current-code records

Values = dict[tuple[str, str], dict[tuple[str, int], float]]


def _pair_values(cells: dict[tuple[str, int], float], seed: int) -> dict[str, float]:
    return {p: v for (p, s), v in cells.items() if s == seed and math.isfinite(v)}


def sensitivity_rows(
    base: Values, other: Values, setting: str, seed: int, reference: str = "uem"
) -> list[list[Any]]:
    """Rows ``[method, split 0, split S, Δ split, |Δ| pair, seed std, seed range, |Δ| pair (seeds),
    − ref (0), − ref (S)]`` of one setting (module docstring), registry order; methods without every pair
    of the base folder's ``seed`` cells in both folders are left out."""
    pairs = sorted({p for (m, st), cells in base.items() if st == setting for (p, s) in cells if s == seed})
    if not pairs:
        return []

    def complete(values: Values, method: str) -> dict[str, float] | None:
        got = _pair_values(values.get((method, setting), {}), seed)
        return got if all(p in got for p in pairs) else None

    ref0, ref1 = complete(base, reference), complete(other, reference)
    rows = []
    for method in method_names():
        v0, v1 = complete(base, method), complete(other, method)
        if v0 is None or v1 is None:
            continue
        a0 = float(np.mean([v0[p] for p in pairs]))
        a1 = float(np.mean([v1[p] for p in pairs]))
        cells = base[(method, setting)]
        seeds = sorted(
            {s for (p, s) in cells if all(math.isfinite(cells.get((q, s), math.nan)) for q in pairs)}
        )
        per_seed = [float(np.mean([cells[(p, s)] for p in pairs])) for s in seeds]
        others = [s for s in seeds if s != seed]
        moves = [abs(cells[(p, s)] - v0[p]) for s in others for p in pairs]
        seed_pair = float(np.mean(moves)) if moves else math.nan
        rows.append(
            [
                method,
                a0,
                a1,
                a1 - a0,
                float(np.mean([abs(v1[p] - v0[p]) for p in pairs])),
                float(np.std(per_seed)) if len(per_seed) > 1 else math.nan,
                max(per_seed) - min(per_seed) if len(per_seed) > 1 else math.nan,
                seed_pair,
                a0 - float(np.mean([ref0[p] for p in pairs])) if ref0 else math.nan,
                a1 - float(np.mean([ref1[p] for p in pairs])) if ref1 else math.nan,
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="records made with split seed 0")
    ap.add_argument("--other", type=Path, required=True, help="records made with --split-seed")
    ap.add_argument("--split-seed", type=int, default=1)
    ap.add_argument("--seed", type=int, default=2024, help="the training seed both folders hold")
    ap.add_argument("--dataset", default="pacs", help="dataset of the records (for the code fingerprint)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--versus", default="uem")
    ap.add_argument("--metric", default="map_all")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    options = DataOptions(data_dir=args.data_dir, quiet=True)
    base, _ = current_values(load_records(args.base), Runner(options, args.base), args.metric, 0)
    other, _ = current_values(
        load_records(args.other), Runner(options, args.other), args.metric, args.split_seed
    )
    s = args.split_seed
    header = ["method", "split 0", f"split {s}", "Δ split", "|Δ| pair", "seed std", "seed range"]
    header += ["|Δ| pair (seeds)", f"− {args.versus} (0)", f"− {args.versus} ({s})"]
    for setting in ("partial", "open-set"):
        rows = sensitivity_rows(base, other, setting, args.seed, args.versus)
        print(f"\n{setting} ({args.metric}, seed {args.seed}; seed spread over the base folder's seeds)\n")
        fmt = "pipe" if args.markdown else "simple"
        print(tabulate(rows, headers=header, floatfmt=".2f", tablefmt=fmt) if rows else "no complete method")


if __name__ == "__main__":
    main()

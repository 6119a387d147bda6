"""A reference method against every other, on the records of the *current* code only (issue 15's evidence).

``u2cdr-bench table --stats --versus uem`` reads every record of a folder; while a grid is being regenerated,
a folder mixes records of older code (another code fingerprint, :mod:`u2cdr_bench.fingerprint`) with current
ones, and a table built from both says so with its mark but still averages them. This script keeps only the
records whose fingerprint equals the one this checkout's code gives the same config (the test of
``Runner.status``), split seed ``--split-seed``, no hyper-parameter override, ``epochs_scale`` 1, and prints,
per setting:

* the reference's rank among the methods that have a current record on **every** (pair, seed) cell the
  reference has ("complete" methods): by the average of the metric over those cells, and by the average
  per-cell rank (rank 1 = best, ties averaged; the Friedman blocks are single (pair, seed) cells here);
* for every other method with at least one current cell in common with the reference: the number of common
  cells, the mean paired difference (method − reference) on them, how many cells the method is higher, and
  the two-sided Wilcoxon signed-rank p-value with its rank-biserial r
  (:func:`u2cdr_bench.tables.stats.wilcoxon_signed_rank`; the cells of one pair under several seeds are read
  as independent, the assumption ``table --stats`` names) and its Holm adjustment over the setting's whole
  family of tests (every row of the setting), sorted by the mean difference, the "strongest" first.

"Strongest" is this mean paired difference on common cells, computed from test labels: a report of results,
never a choice of anything that runs. Methods whose name starts with ``<reference>-`` (the ablations) are
listed apart, after the baselines.

    .venv/bin/python benchmarks/versus_current.py results/digits --dataset digits
    .venv/bin/python benchmarks/versus_current.py results/pacs --dataset pacs --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tabulate import tabulate

from u2cdr_bench.data.registry import DataOptions
from u2cdr_bench.methods import method_names
from u2cdr_bench.protocols import setting_names
from u2cdr_bench.records import load_records
from u2cdr_bench.runner import RunConfig, Runner
from u2cdr_bench.tables.stats import average_ranks, holm, wilcoxon_signed_rank

Cell = tuple[str, int]  # (pair "query:gallery", seed)


def current_values(
    records: list[dict[str, Any]], runner: Runner, metric: str, split_seed: int
) -> tuple[dict[tuple[str, str], dict[Cell, float]], int]:
    """``{(method, setting): {(pair, seed): value}}`` of the current-code records, and how many were stale."""
    out: dict[tuple[str, str], dict[Cell, float]] = defaultdict(dict)
    stale = 0
    known = set(method_names())
    for rec in records:
        cfg = rec["config"]
        if cfg["method"] not in known or cfg.get("hparams") or float(cfg.get("epochs_scale", 1.0)) != 1.0:
            continue
        if int(cfg.get("split_seed", 0)) != split_seed:
            continue
        want = runner.code(RunConfig(**cfg))["fingerprint"]
        if (rec.get("code") or {}).get("fingerprint") != want:
            stale += 1
            continue
        value = rec["metrics"].get(metric)
        cell = (f"{cfg['query']}:{cfg['gallery']}", int(cfg["seed"]))
        out[(cfg["method"], cfg["setting"])][cell] = math.nan if value is None else float(value)
    return out, stale


def setting_report(
    values: dict[tuple[str, str], dict[Cell, float]], setting: str, reference: str
) -> tuple[list[str], list[list[Any]]]:
    """Summary lines and the table rows of one setting (see the module docstring)."""
    ref = {c: v for c, v in values.get((reference, setting), {}).items() if math.isfinite(v)}
    if not ref:
        return [f"{setting}: no current {reference} record"], []
    cells = sorted(ref)
    methods = [m for m in method_names() if m != reference and (m, setting) in values]
    complete = [
        m for m in methods if all(math.isfinite(values[(m, setting)].get(c, math.nan)) for c in cells)
    ]
    lines = [f"{setting}: {reference} has {len(cells)} current cells (pairs × seeds)"]
    if complete:
        names = [reference, *complete]
        scores = np.array([[ref[c]] + [values[(m, setting)][c] for m in complete] for c in cells])
        means = scores.mean(axis=0)
        ranks = average_ranks(scores)
        by_mean = 1 + int((means > means[0]).sum())
        by_rank = 1 + int((ranks < ranks[0]).sum())
        lines.append(
            f"  {reference}: {means[0]:.2f} on average, rank {by_mean} of {len(names)} by the average, "
            f"rank {by_rank} of {len(names)} by the average per-cell rank ({ranks[0]:.2f}); complete "
            f"methods: {', '.join(complete)}"
        )
    rows = []
    for m in methods:
        other = values[(m, setting)]
        common = [c for c in cells if math.isfinite(other.get(c, math.nan))]
        if not common:
            continue
        d = np.array([other[c] - ref[c] for c in common])
        test = wilcoxon_signed_rank(d)
        kind = "ablation" if m.startswith(f"{reference}-") else "baseline"
        rows.append(
            [
                kind,
                m,
                len(common),
                "yes" if m in complete else "no",
                round(float(d.mean()), 2),
                f"{int((d > 0).sum())}/{len(d)}",
                test.p,
                test.r,
            ]
        )
    for row, adjusted in zip(rows, holm([r[6] for r in rows]), strict=True):
        row.insert(7, adjusted)
    rows.sort(key=lambda r: (r[0] != "baseline", -r[4]))
    return lines, rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("folder", type=Path)
    ap.add_argument("--dataset", default="digits", help="dataset of the records (for the code fingerprint)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--versus", default="uem", help="the reference method")
    ap.add_argument("--metric", default="map_all")
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args()
    runner = Runner(DataOptions(data_dir=args.data_dir, quiet=True), args.folder)
    values, stale = current_values(load_records(args.folder), runner, args.metric, args.split_seed)
    print(f"{args.folder}: {args.metric}, split seed {args.split_seed}; {stale} older-code records left out")
    header = ["", "method", "cells", "complete", f"mean − {args.versus}", "higher", "Wilcoxon p", "Holm p"]
    header.append("r")
    for setting in setting_names():
        lines, rows = setting_report(values, setting, args.versus)
        print()
        print("\n".join(lines))
        if rows:
            print(tabulate(rows, headers=header, floatfmt=("", "", "", "", ".2f", "", ".2g", ".2g", ".2f")))


if __name__ == "__main__":
    main()

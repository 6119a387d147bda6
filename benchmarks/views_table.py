"""The issue-18 table: each method's mAP@All per pair under each source of training views.

Each ``--runs LABEL=DIR`` is a records folder of one view source (e.g. ``cached=/tmp/views18/a`` for PACS
with its cached aug-plus views, ``none=/tmp/views18/npz-none`` for the npz of clean features without views,
``noise=...`` for a feature-space generator). Prints markdown: one row per (method, view source) with the
12 pairs and their average, then one row per view source with the mean over every trained method and pair
(``pretrained`` left out: it reads no views), its mean difference to the first source and its pair wins
over the ``none`` source.

    .venv/bin/python benchmarks/views_table.py --setting close-set \\
        --runs "cached aug-plus (a)=/tmp/views18/a" "none (b)=/tmp/views18/npz-none" \\
        "noise=/tmp/views18/npz-noise" "dropout=/tmp/views18/npz-dropout" "mix=/tmp/views18/npz-mix"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from u2cdr_bench.records import load_records

PAIRS = ["A→C", "A→P", "A→S", "C→A", "C→P", "C→S", "P→A", "P→C", "P→S", "S→A", "S→C", "S→P"]


def collect(folder: Path, setting: str, seed: int) -> dict[tuple[str, str], float]:
    """``(method, pair) -> map_all`` of the folder's records of ``setting`` and ``seed``."""
    out: dict[tuple[str, str], float] = {}
    if not folder.is_dir():
        return out
    for rec in load_records(folder):
        cfg = rec["config"]
        if cfg["setting"] == setting and int(cfg["seed"]) == seed:
            out[(cfg["method"], rec["task"]["pair"])] = float(rec["metrics"]["map_all"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", nargs="+", required=True, help="LABEL=DIR, the first is the reference")
    ap.add_argument("--methods", default="pretrained,uem,cds,pcs,dn2a")
    ap.add_argument("--setting", default="close-set")
    ap.add_argument("--seed", type=int, default=2024)
    args = ap.parse_args()
    sources = [(label, Path(d)) for label, _, d in (r.partition("=") for r in args.runs)]
    data = {label: collect(folder, args.setting, args.seed) for label, folder in sources}
    methods = args.methods.split(",")
    print("| method | views | " + " | ".join(PAIRS) + " | Avg |")
    print("|---|---|" + "---:|" * (len(PAIRS) + 1))
    for m in methods:
        for label, _ in sources if m != "pretrained" else sources[:1]:
            vals = [data[label].get((m, p)) for p in PAIRS]
            if all(v is None for v in vals):
                continue
            cells = ["–" if v is None else f"{v:.1f}" for v in vals]
            avg = f"{np.mean(vals):.1f}" if all(v is not None for v in vals) else "–"
            name = "(no training)" if m == "pretrained" else label
            print(f"| {m} | {name} | " + " | ".join(cells) + f" | {avg} |")
    trained = [m for m in methods if m != "pretrained"]
    ref = sources[0][0]
    none = next((label for label, _ in sources if label.startswith("none")), None)
    print()
    print(f"| views | mean over {len(trained)} methods × {len(PAIRS)} pairs | minus {ref} | wins over none |")
    print("|---|---:|---:|---:|")
    for label, _ in sources:
        keys = [(m, p) for m in trained for p in PAIRS]
        if not all(k in data[label] for k in keys):
            print(f"| {label} | incomplete ({sum(k in data[label] for k in keys)}/{len(keys)}) | | |")
            continue
        vals = np.array([data[label][k] for k in keys])
        diff = vals - np.array([data[ref].get(k, np.nan) for k in keys])
        wins = "–"
        if none is not None and all(k in data[none] for k in keys):
            wins = f"{int((vals > np.array([data[none][k] for k in keys])).sum())}/{len(keys)}"
        print(f"| {label} | {vals.mean():.2f} | {np.nanmean(diff):+.2f} | {wins} |")


if __name__ == "__main__":
    main()

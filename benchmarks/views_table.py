"""The issue-18 table: each method's mAP@All per pair under each source of training views.

Each ``--runs LABEL=DIR`` (or ``LABEL=DIR1+DIR2``) is a records folder of one view source: for example
``cached=/tmp/views18/a`` for PACS with its cached aug-plus views, ``none=/tmp/views18/npz-none`` for the
npz of clean features without views, ``noise=...`` for a feature-space generator. Prints markdown: one row
per (method, view source) with the 12 pairs and their average; then one row per view source paired against
``--versus`` (default: the first source) over the (method, pair) cells both hold: the mean difference, the
cells where it is higher, the Wilcoxon signed-rank p (with at least 6 non-zero differences) and the mean
difference per method.

    .venv/bin/python benchmarks/views_table.py --setting close-set --versus noise \\
        --runs "cached aug-plus (a)=/tmp/views18/a" "none (b)=/tmp/views18/npz-none" \\
        "noise=/tmp/views18/npz-noise" "dropout=/tmp/views18/npz-dropout" "mix=/tmp/views18/npz-mix"
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from u2cdr_bench.records import load_records
from u2cdr_bench.tables.stats import wilcoxon_signed_rank

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
    ap.add_argument(
        "--versus", default=None, help="the label the others are paired against (default: the first)"
    )
    args = ap.parse_args()
    sources = [(label, d) for label, _, d in (r.partition("=") for r in args.runs)]
    data = {}
    for label, folders in sources:  # DIR1+DIR2: one source split over several folders
        data[label] = {}
        for folder in folders.split("+"):
            data[label].update(collect(Path(folder), args.setting, args.seed))
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
    ref = args.versus or sources[0][0]
    if ref not in data:
        raise SystemExit(f"--versus {ref!r} is not one of the --runs labels")
    print()
    print(
        f"Paired against `{ref}` over the (method, pair) cells both sources hold (mean difference of "
        "mAP@All, cells higher, two-sided Wilcoxon signed-rank p; per method the mean difference over its "
        "shared pairs):"
    )
    print()
    print("| views | cells | mean − " + ref + " | higher | p | " + " | ".join(trained) + " |")
    print("|---|---:|---:|---:|---:|" + "---:|" * len(trained))
    for label, _ in sources:
        if label == ref:
            continue
        keys = [(m, p) for m in trained for p in PAIRS if (m, p) in data[label] and (m, p) in data[ref]]
        if not keys:
            continue
        d = np.array([data[label][k] - data[ref][k] for k in keys])
        p = wilcoxon_signed_rank(d).p if np.count_nonzero(d) >= 6 else float("nan")
        per = []
        for m in trained:
            dm = [data[label][k] - data[ref][k] for k in keys if k[0] == m]
            per.append(f"{np.mean(dm):+.2f} ({len(dm)})" if dm else "–")
        ptxt = "–" if np.isnan(p) else f"{p:.3g}"
        print(
            f"| {label} | {len(keys)} | {d.mean():+.2f} | {int((d > 0).sum())}/{len(keys)} | {ptxt} | "
            + " | ".join(per)
            + " |"
        )


if __name__ == "__main__":
    main()

"""Summarise probe folders (one configuration each): ``u2cdr-bench table --ablation`` plus a pair filter.

Per setting the averages over pairs of mAP@All, open-set Acc and false rejection, UEM's merges, K and SN2M
agreement, and each row paired against the first (mean difference, cells higher, Wilcoxon p); the columns
are documented in :mod:`u2cdr_bench.tables.ablation`. ``--pairs`` keeps only some directed pairs (to compare
a probe run on a subset of pairs with the same subset of a full row), which the CLI does not offer.

    .venv/bin/python benchmarks/probe_table.py today=results/probes/pacs-npz/today \\
        pair=results/probes/pacs-npz/sub-merge-pair --method uem --pairs art_painting:cartoon,photo:sketch
"""

from __future__ import annotations

import argparse
from pathlib import Path

from u2cdr_bench.records import load_records
from u2cdr_bench.tables.ablation import group_by_method, render_ablation


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probes", nargs="+", help="LABEL=FOLDER")
    ap.add_argument("--method", default=None, help="only records of this method")
    ap.add_argument("--dataset", default=None)
    ap.add_argument("--metric", default="map_all")
    ap.add_argument(
        "--pairs", default=None, help="QUERY:GALLERY,... only these directed pairs (compare subset probes)"
    )
    args = ap.parse_args()
    pairs = None if args.pairs is None else {tuple(p.split(":")) for p in args.pairs.split(",")}
    groups = []
    for item in args.probes:
        label, _, folder = item.partition("=")
        recs = [
            r
            for r in load_records(Path(folder))
            if (args.method is None or r["config"]["method"] == args.method)
            and (args.dataset is None or r["config"]["dataset"] == args.dataset)
            and (pairs is None or (r["config"]["query"], r["config"]["gallery"]) in pairs)
        ]
        groups += group_by_method(label, recs)
    print(render_ablation(groups, metric=args.metric), end="")


if __name__ == "__main__":
    main()

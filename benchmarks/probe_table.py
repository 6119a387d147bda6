"""Summarise probe folders (one configuration each) of a method on a dataset: per setting, the averages over
pairs of mAP@All, open-set Acc and false rejection, and for UEM the merges and SN2M statistics.

    .venv/bin/python benchmarks/probe_table.py today=results/pacs new=/tmp/probes/new --method uem
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from u2cdr_bench.records import load_records


def last_stage1(rec: dict) -> dict | None:
    cl = [c for c in rec["method_info"].get("clusterings", []) if c.get("stage") == 1]
    return cl[-1] if cl else None


def summarise(recs: list[dict]) -> dict[str, dict[str, float]]:
    out: dict[str, dict[str, float]] = {}
    for setting in ("close-set", "partial", "open-set"):
        rs = [r for r in recs if r["config"]["setting"] == setting]
        if not rs:
            continue
        row = {"n": len(rs), "map": float(np.mean([r["metrics"]["map_all"] for r in rs]))}
        if setting == "open-set":
            row["acc"] = float(np.mean([r["metrics"]["openset_accuracy"] for r in rs]))
            row["fr"] = float(np.mean([r["metrics"]["false_rejection"] for r in rs]))
        st = [last_stage1(r) for r in rs]
        st = [s for s in st if s is not None]
        if st:
            row["merged"] = float(np.mean([s["merged"] for s in st]))
            row["runs_merging"] = float(np.mean([s["merged"] > 0 for s in st]))
            row["k"] = float(np.mean([(s["k_a"] + s["k_b"]) / 2 for s in st]))
        ag = [r["method_info"]["sn2m_agree"] for r in rs if "sn2m_agree" in r["method_info"]]
        if ag:
            row["agree"] = float(np.mean(ag))
        out[setting] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("probes", nargs="+", help="LABEL=FOLDER")
    ap.add_argument("--method", default=None, help="only records of this method")
    ap.add_argument("--dataset", default=None)
    ap.add_argument(
        "--pairs", default=None, help="QUERY:GALLERY,... only these directed pairs (compare subset probes)"
    )
    args = ap.parse_args()
    pairs = None if args.pairs is None else {tuple(p.split(":")) for p in args.pairs.split(",")}
    print(
        "| probe | runs | close mAP | partial mAP | open mAP | open Acc | FR | merges (stage-1 end) "
        "| runs with a merge | K | SN2M agree |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for item in args.probes:
        label, _, folder = item.partition("=")
        recs = load_records(Path(folder))
        recs = [
            r
            for r in recs
            if (args.method is None or r["config"]["method"] == args.method)
            and (args.dataset is None or r["config"]["dataset"] == args.dataset)
            and (pairs is None or (r["config"]["query"], r["config"]["gallery"]) in pairs)
        ]
        s = summarise(recs)

        def g(setting: str, key: str, fmt: str = "{:.1f}", s: dict = s) -> str:
            v = s.get(setting, {}).get(key)
            return "–" if v is None else fmt.format(v)

        merged = "/".join(g(st, "merged") for st in ("close-set", "partial", "open-set"))
        runs = "/".join(g(st, "runs_merging", "{:.0%}") for st in ("close-set", "partial", "open-set"))
        ks = "/".join(g(st, "k") for st in ("close-set", "partial", "open-set"))
        agree = "/".join(g(st, "agree", "{:.2f}") for st in ("close-set", "partial", "open-set"))
        n = sum(int(v["n"]) for v in s.values())
        print(
            f"| {label} | {n} | {g('close-set', 'map')} | {g('partial', 'map')} | {g('open-set', 'map')} "
            f"| {g('open-set', 'acc')} | {g('open-set', 'fr')} | {merged} | {runs} | {ks} | {agree} |"
        )


if __name__ == "__main__":
    main()

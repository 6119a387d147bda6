"""Run time per method over a results grid, read from its records (no re-running).

Every record stores the wall time of its run (``timings.total_s``: loading, fit, embedding, evaluation) and
the number of torch/faiss threads. This prints, per method, the number of runs, the mean, median and maximum
time per run, the mean ratio to ``uem`` on the same (setting, pair), and the total: what a user needs to
budget a grid. Times measured inside one grid share the same machine and load, so their ratios are
comparable; absolute seconds depend on the load (the grids here ran two single-threaded processes on a
2-core machine).

    .venv/bin/python benchmarks/grid_times.py results/digits
    .venv/bin/python benchmarks/grid_times.py results/pacs --markdown
"""

from __future__ import annotations

import argparse
import statistics
from collections import defaultdict
from pathlib import Path

from tabulate import tabulate

from u2cdr_bench.methods import method_names
from u2cdr_bench.records import load_records


def summarize(records: list[dict], reference: str = "uem") -> list[list]:
    """Rows ``[method, runs, mean s, median s, max s, ratio to reference, total min]`` in registry order."""
    times: dict[str, dict[tuple[str, str], float]] = defaultdict(dict)
    for rec in records:
        cfg = rec["config"]
        key = (cfg["setting"], f"{cfg['query']}:{cfg['gallery']}")
        times[cfg["method"]][key] = float(rec["timings"]["total_s"])
    order = [m for m in method_names() if m in times] + sorted(set(times) - set(method_names()))
    ref = times.get(reference, {})
    rows = []
    for method in order:
        t = times[method]
        vals = list(t.values())
        ratios = [t[k] / ref[k] for k in t if k in ref and ref[k] > 0]
        rows.append(
            [
                method,
                len(vals),
                round(statistics.fmean(vals), 1),
                round(statistics.median(vals), 1),
                round(max(vals), 1),
                round(statistics.fmean(ratios), 2) if ratios else None,
                round(sum(vals) / 60, 1),
            ]
        )
    return rows


def uem_time_parts(rec: dict) -> dict[str, float]:
    """Seconds of one UEM record in IDSE / CDSM steps, clustering (incl. UEM's detector) and evaluation."""
    mt, rt = rec["method_info"]["timings"], rec["timings"]
    return {
        "stage1": mt["stage1"],
        "stage2": mt["stage2"],
        "kmeans": mt["kmeans"] + mt["detector"],
        "eval": rt["embed_s"] + rt["eval_s"] - mt["detector"],
    }


def uem_stage_shares(records: list[dict], method: str = "uem") -> list[list]:
    """Rows ``[setting, runs, mean s, max s, stage1 %, stage2 %, kmeans %, eval %, other %]`` of ``method``.

    Shares of ``timings.total_s`` as in ``benchmarks/bench_uem.py``: IDSE / CDSM steps, clustering (Elbow,
    K-means, merging, UEM's detector), evaluation (embedding + metrics, detector excluded), the rest.
    """
    by_setting: dict[str, list[dict[str, float]]] = defaultdict(list)
    for rec in records:
        if rec["config"]["method"] != method:
            continue
        parts = uem_time_parts(rec)
        rt = rec["timings"]
        parts["other"] = rt["total_s"] - sum(parts.values())
        parts["total"] = rt["total_s"]
        by_setting[rec["config"]["setting"]].append(parts)
    rows = []
    for setting, runs in sorted(by_setting.items()):
        total = sum(r["total"] for r in runs)
        shares = [
            round(100 * sum(r[k] for r in runs) / total, 1)
            for k in ("stage1", "stage2", "kmeans", "eval", "other")
        ]
        rows.append(
            [
                setting,
                len(runs),
                round(total / len(runs), 1),
                round(max(r["total"] for r in runs), 1),
                *shares,
            ]
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("--reference", default="uem")
    ap.add_argument("--markdown", action="store_true")
    args = ap.parse_args()
    records = load_records(args.runs)
    rows = summarize(records, args.reference)
    headers = ["method", "runs", "mean s", "median s", "max s", f"× {args.reference}", "total min"]
    print(tabulate(rows, headers=headers, tablefmt="github" if args.markdown else "simple"))
    stages = uem_stage_shares(records)
    if stages:
        print("\nuem: share of the run time per part")
        heads = [
            "setting",
            "runs",
            "mean s",
            "max s",
            "stage1 %",
            "stage2 %",
            "kmeans %",
            "eval %",
            "other %",
        ]
        print(tabulate(stages, headers=heads, tablefmt="github" if args.markdown else "simple"))
    threads = sorted({rec["timings"].get("threads") for rec in records}, key=str)
    print(f"{len(records)} records; threads per run: {threads}")


if __name__ == "__main__":
    main()

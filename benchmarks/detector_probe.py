"""Which cluster-count estimator the generic open-set detector should use (issues 10 and 13; diagnosis).

The generic detector of every method but UEM (paper-spec §4.2, App. B.2; ``blocks/detector.py``) clusters
the query domain's features into K clusters and flags a query private when its nearest gallery item is
farther than its cluster's radius. K comes from ``detector_k`` (an estimator of
:mod:`u2cdr_bench.blocks.cluster_count`, bounded by ``detector_k_max``). This script measures, on every
open-set pair of the given datasets and for every given method that uses the generic detector (the
training-free rows by default; trained baselines with ``--methods``), each estimator's K, open-set
Acc (private queries flagged, %), false rejection (shared queries flagged, %), binary accuracy, and the
detector's seconds. Labels are read only to score the flags: this is diagnosis, used to choose one default
over all pairs of the development data, never per pair. The criterion, fixed before the PACS rows were
run: the mean of Acc − FR (Youden's J, which does not reward flagging everything) over every row of both
datasets, the binary accuracy beside it; the default changes only for a gain on both.

Each pair's embeddings come from :class:`u2cdr_bench.runner.Runner` itself: the method's
``detect_private`` is wrapped to keep its inputs, and the records go to a temporary folder.

    U2CDR_THREADS=1 .venv/bin/python benchmarks/detector_probe.py --dataset pacs --data-dir ../shared/data \\
        --json results/probes/detector/pacs.json
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_ESTIMATORS = "elbow:100,elbow:20,eigengap:100,silhouette:20"
DEFAULT_METHODS = "pretrained,pretrained-cosine,center-l2,center-whiten,kmeans-match"


def score(
    qf: np.ndarray, gf: np.ndarray, distance: str, truth: np.ndarray, est: str, k_max: int, seed: int
) -> dict:
    """The generic detector (``blocks/detector.py``, radius threshold) with estimator ``est`` on one pair."""
    from u2cdr_bench.blocks.detector import fit_generic_detector, nearest_distance
    from u2cdr_bench.metrics import false_rejection_rate, openset_accuracy, openset_binary_accuracy

    t = time.perf_counter()
    q = np.ascontiguousarray(qf, dtype=np.float32)
    centroids, spread, assign = fit_generic_detector(q, distance, seed, None, k_max, "radius", est)
    pred = nearest_distance(q, np.ascontiguousarray(gf, np.float32), distance) > spread[assign]
    return {
        "estimator": f"{est}:{k_max}",
        "k": len(centroids),
        "acc": openset_accuracy(truth, pred),
        "fr": false_rejection_rate(truth, pred),
        "binary": openset_binary_accuracy(truth, pred),
        "seconds": round(time.perf_counter() - t, 2),
    }


def line(r: dict) -> str:
    return (
        f"{r['estimator']:14s} K {r['k']:5.1f}  Acc {r['acc']:5.1f}  FR {r['fr']:5.1f}  "
        f"binary {r['binary']:5.1f}  ({r['seconds']:.1f} s)"
    )


def save(path: Path | None, rows: list[dict]) -> None:
    """Write the rows so far (after every row: an interrupted probe keeps what it measured)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(rows, indent=1) + "\n")
        tmp.replace(path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="pacs")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--methods", default=DEFAULT_METHODS)
    ap.add_argument("--estimators", default=DEFAULT_ESTIMATORS, help="NAME:K_MAX,...")
    ap.add_argument("--pairs", default=None, help="QUERY:GALLERY,... (default: every directed pair)")
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--json", type=Path, default=None, help="write the rows here as JSON")
    args = ap.parse_args()

    from u2cdr_bench.data.registry import DataOptions, get_dataset
    from u2cdr_bench.methods import Method, get_method
    from u2cdr_bench.protocols import get_protocol
    from u2cdr_bench.runner import Runner, plan

    spec = get_dataset(args.dataset)
    options = DataOptions(data_dir=args.data_dir, quiet=True)
    ests = [(e.split(":")[0], int(e.split(":")[1])) for e in args.estimators.split(",")]
    rows: list[dict] = []
    captured: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def recorder(self, qf, gf):  # stands in for Method.detect_private during the capture
        captured["x"] = (np.asarray(qf), np.asarray(gf), self.distance)
        return np.zeros(len(qf), dtype=bool)

    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(options, Path(tmp), force=True)
        for name in args.methods.split(","):
            cls = get_method(name)
            if cls.detect_private is not Method.detect_private:
                print(f"{name}: has its own open-set detector, skipped", flush=True)
                continue
            original = cls.detect_private
            cls.detect_private = recorder
            try:
                for cfg in plan(name, args.dataset, "open-set", args.pairs, [args.seed], options):
                    q, g = cfg.query, cfg.gallery
                    rec = runner.run(cfg)
                    qf, gf, distance = captured.pop("x")
                    protocol = get_protocol(spec, "open-set", 0)
                    qlab = (
                        runner._domain(spec, q, tuple(cls.views))
                        .select_classes(protocol.query_classes)
                        .labels
                    )
                    glab = (
                        runner._domain(spec, g, tuple(cls.views))
                        .select_classes(protocol.gallery_classes)
                        .labels
                    )
                    qlab, glab = np.asarray(qlab), np.asarray(glab)
                    truth = ~np.isin(qlab, np.unique(glab))
                    for est, k_max in ests:
                        row = score(qf, gf, distance, truth, est, k_max, args.seed)
                        row.update(dataset=args.dataset, method=name, pair=rec["task"]["pair"])
                        row["C_query"] = int(len(np.unique(qlab)))
                        rows.append(row)
                        print(f"{name:17s} {row['pair']:6s} " + line(row), flush=True)
                        save(args.json, rows)
            finally:
                cls.detect_private = original
    print()
    for est, k_max in ests:
        sel = [r for r in rows if r["estimator"] == f"{est}:{k_max}"]
        mean = {key: float(np.mean([r[key] for r in sel])) for key in ("k", "acc", "fr", "binary", "seconds")}
        gap = float(np.mean([r["acc"] - r["fr"] for r in sel]))
        print(
            f"runs {len(sel):3d}  " + line({**mean, "estimator": f"{est}:{k_max}"}) + f"  Acc-FR {gap:+5.1f}"
        )


if __name__ == "__main__":
    main()

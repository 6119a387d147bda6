"""What a domain's mean does under partial and open-set (issue 16; diagnosis, reads test labels).

``center-l2`` removes each domain's own mean over *its samples in the task*. Under close-set both domains hold
the same classes, so the difference of the two means is the domain shift (plus the class-frequency
difference). Under partial and open-set the query domain holds classes the gallery lacks (paper-spec §3), so
its mean also moves with the class composition: centring removes the style *and* shifts every query by the
mean of its private classes, the same effect as UEM's Eq. 8 translation (paper-spec §2.2(d)).

This script measures that effect per setting, averaged over a dataset's pairs, as mAP@All (shared-set under
open-set, as the records) of L2-normalised features after subtracting

* ``none``: nothing (= ``pretrained-cosine``);
* ``task mean``: each domain's mean over its task samples (= ``center-l2``; no labels);
* ``shared-class mean`` (oracle): each domain's mean over the samples of the *shared* classes only;
* ``balanced shared mean`` (oracle): the mean of the shared classes' per-class means.

The oracle rows read labels, so they are a diagnosis of the method, never a method or a model selection.

    .venv/bin/python benchmarks/centring_probe.py --dataset pacs --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import numpy as np

from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.metrics import evaluate
from u2cdr_bench.protocols import get_protocol, setting_names


def _l2(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def _means(x: np.ndarray, y: np.ndarray, shared: np.ndarray) -> dict[str, np.ndarray]:
    keep = np.isin(y, shared)
    return {
        "none": np.zeros(x.shape[1]),
        "task mean": x.mean(0),
        "shared-class mean (oracle)": x[keep].mean(0),
        "balanced shared mean (oracle)": np.mean([x[y == c].mean(0) for c in shared], axis=0),
    }


def _flatten(x: np.ndarray) -> np.ndarray:
    return x.reshape(len(x), -1).astype(np.float64)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="pacs")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--split-seed", type=int, default=0)
    args = ap.parse_args()
    spec = get_dataset(args.dataset)
    options = DataOptions(data_dir=args.data_dir, views=("clean",), quiet=True)
    doms = {d.name: spec.load(d.name, options) for d in spec.domains}
    pairs = [(q, g) for q in doms for g in doms if q != g] if not spec.pairs else list(spec.pairs)
    variants: list[str] = []
    rows: dict[str, dict[str, float]] = {}
    for setting in setting_names():
        proto = get_protocol(spec, setting, args.split_seed)
        scores: dict[str, list[float]] = {}
        for q, g in pairs:
            qd = doms[q].select_classes(proto.query_classes)
            gd = doms[g].select_classes(proto.gallery_classes)
            xq, yq, xg, yg = _flatten(qd.x.numpy()), qd.labels, _flatten(gd.x.numpy()), gd.labels
            shared = np.intersect1d(np.unique(yq), np.unique(yg))
            mq, mg = _means(xq, yq, shared), _means(xg, yg, shared)
            for name in mq:
                embed: Callable[[np.ndarray, np.ndarray], np.ndarray] = lambda x, m: _l2(x - m)  # noqa: E731
                keep = np.isin(yq, shared)  # shared-set mAP under open-set, as the records
                m = evaluate(embed(xq, mq[name])[keep], yq[keep], embed(xg, mg[name]), yg)["map_all"]
                scores.setdefault(name, []).append(m)
        rows[setting] = {k: float(np.mean(v)) for k, v in scores.items()}
        variants = list(scores)
        print(f"{setting}: done ({len(pairs)} pairs)", flush=True)
    print(f"\n{args.dataset}, mAP@All averaged over {len(pairs)} pairs (L2-normalised after centring)\n")
    print("| centre subtracted | " + " | ".join(rows) + " |")
    print("|---|" + "---:|" * len(rows))
    for v in variants:
        print(f"| {v} | " + " | ".join(f"{rows[s][v]:.1f}" for s in rows) + " |")


if __name__ == "__main__":
    main()

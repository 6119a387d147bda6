"""The cluster-count table of docs/uem.md: every estimator's K against the true class count C (issue 10).

For every domain of ``digits`` and ``pacs`` and every class set a run can hand a method (all classes; the
partial protocol's query half; the open-set protocol's gallery half; split seed 0), estimate K on the
domain's input features (digits: the 16x16 pixels; PACS: the frozen EfficientNet-Lite0 features) with each
estimator of :mod:`u2cdr_bench.blocks.cluster_count`, and, with ``--head random``, on the output of a
freshly initialised MLP head (what UEM's memory bank holds at its first clustering in features mode).
Labels are read here only to count C and to select the protocol's classes: this is diagnosis.

    U2CDR_EXTRA_VIEWS=none .venv/bin/python benchmarks/k_table.py --data-dir ../shared/data
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def class_sets(spec, domain_samples) -> list[tuple[str, list[str]]]:
    from u2cdr_bench.protocols import get_protocol

    partial = get_protocol(spec, "partial", 0)
    openset = get_protocol(spec, "open-set", 0)
    return [
        ("all", list(domain_samples.class_names)),
        ("partial query half", list(partial.query_classes)),
        ("open-set gallery half", list(openset.gallery_classes)),
    ]


def random_head(x: np.ndarray, seed: int) -> np.ndarray:
    import torch

    from u2cdr_bench.nets import MLPHead

    torch.manual_seed(seed)
    head = MLPHead(x.shape[1], 512, 128).eval()
    with torch.no_grad():
        return head(torch.from_numpy(x)).numpy()


def pca_projection(x: np.ndarray, dims: int = 128) -> np.ndarray:
    """``l2(PCA_dims(x - mean))``: what the features-mode StructureHead hands the memory bank at
    initialisation (fitted here on the one domain)."""
    xd = x.astype(np.float64) - x.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(xd, full_matrices=False)
    z = xd @ vt[:dims].T
    return (z / np.maximum(np.linalg.norm(z, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--datasets", default="digits,pacs")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--estimators", default="elbow:20,elbow:100,eigengap,gap,silhouette")
    ap.add_argument("--head", default="input", help="comma list of input, pca (structure head), random")
    ap.add_argument("--json", type=Path, default=None, help="also write the rows as JSON here")
    args = ap.parse_args()

    from u2cdr_bench.blocks.cluster_count import estimate_k
    from u2cdr_bench.data.registry import DataOptions, get_dataset

    options = DataOptions(data_dir=args.data_dir, quiet=True, n_views=0)
    ests = [e.split(":") for e in args.estimators.split(",")]
    rows = []
    print("| dataset | domain | classes | C | features | " + " | ".join(":".join(e) for e in ests) + " |")
    print("|---|---|---|---|---|" + "---|" * len(ests))
    for ds in args.datasets.split(","):
        spec = get_dataset(ds)
        for dom in spec.domains:
            samples = spec.load(dom.name, options)
            for set_name, classes in class_sets(spec, samples):
                sub = samples.select_classes(classes)
                x = sub.x.reshape(len(sub), -1).numpy().astype(np.float32)
                c = len(np.unique(sub.labels))
                for head in args.head.split(","):
                    feats = {"input": x, "pca": pca_projection(x)}.get(head)
                    if feats is None:
                        feats = random_head(x, 2024)
                    ks = []
                    for e in ests:
                        kw = {"k_max": int(e[1])} if len(e) > 1 else {}
                        t = time.perf_counter()
                        est = estimate_k(feats, e[0], seed=2024, **kw)
                        ks.append((est.k, time.perf_counter() - t))
                    rows.append(
                        {
                            "dataset": ds,
                            "domain": dom.name,
                            "classes": set_name,
                            "C": c,
                            "features": head,
                            "k": {":".join(e): k for e, (k, _) in zip(ests, ks, strict=True)},
                            "seconds": {":".join(e): round(s, 2) for e, (_, s) in zip(ests, ks, strict=True)},
                        }
                    )
                    cells = " | ".join(str(k) for k, _ in ks)
                    print(f"| {ds} | {dom.name} | {set_name} | {c} | {head} | {cells} |", flush=True)
    print()
    for head in args.head.split(","):
        sel = [r for r in rows if r["features"] == head]
        for e in ests:
            name = ":".join(e)
            err = np.array([r["k"][name] - r["C"] for r in sel])
            rel = np.array([abs(r["k"][name] - r["C"]) / r["C"] for r in sel])
            secs = np.mean([r["seconds"][name] for r in sel])
            print(
                f"{head:6s} {name:12s} exact {np.mean(err == 0):4.0%}  "
                f"within ±1 {np.mean(np.abs(err) <= 1):4.0%}"
                f"  mean |K-C|/C {rel.mean():.2f}  mean K-C {err.mean():+.1f}  ({secs:.1f} s)"
            )
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

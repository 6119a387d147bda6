"""How many prototypes pass Eq. 9 at UEM's start, and are the merged pairs the same class? (issue 10).

Diagnosis only: it reads labels. For every directed pair of a features npz (``--dataset npz:PATH`` layout,
e.g. ``benchmarks/features_npz.py``) and a close-set split (all classes), it builds what the structure head
holds at initialisation (features centred on the pooled mean of both domains, projected on the top
``--dims`` principal axes, L2-normalised; ``StructureHead`` in docs/uem.md), clusters each domain with
K-means for each K in ``--ks`` (``true`` = the class count, an oracle), applies Eq. 8 and the Hungarian
matching, and counts the merges under the ``global`` (Eq. 9 as printed) and ``pair`` rules. ``pure`` is the
share of merged pairs whose two clusters have the same majority class; ``d/thr`` the median ratio of a matched
pair's distance to the global threshold.

    .venv/bin/python benchmarks/merge_probe.py /work/scratch/pacs_clean.npz --ks true,elbow
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
import torch.nn.functional as F

from u2cdr_bench.blocks.kmeans import elbow_k, kmeans
from u2cdr_bench.blocks.merging import merge_prototypes
from u2cdr_bench.nets import StructureHead


def start_features(xa: np.ndarray, xb: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """What UEM's memory banks hold at the start: a :class:`StructureHead` initialised on both domains,
    L2-normalised: ``[N_A, dims]``, ``[N_B, dims]``."""
    ta, tb = torch.as_tensor(xa, dtype=torch.float32), torch.as_tensor(xb, dtype=torch.float32)
    head = StructureHead(ta.shape[1], out_dim=dims)
    head.init_from_data(torch.cat([ta, tb]))
    with torch.no_grad():
        return F.normalize(head(ta), dim=1).numpy(), F.normalize(head(tb), dim=1).numpy()


def majority(assign: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    out = np.full(k, -1)
    for c in range(k):
        lab = labels[assign == c]
        if lab.size:
            out[c] = np.bincount(lab).argmax()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("npz")
    ap.add_argument("--ks", default="true,elbow", help="comma list of K values, 'true' or 'elbow' (2..100)")
    ap.add_argument("--dims", type=int, default=128)
    args = ap.parse_args()
    data = np.load(args.npz)
    domains = [k[len("features_") :] for k in data.files if k.startswith("features_")]
    print("| pair | K rule | K_A, K_B | merged (global) | merged (pair) | pure (pair) | d/thr |")
    print("|---|---|---|---|---|---|---|")
    for qa, qb in itertools.permutations(domains, 2):
        xa, xb = start_features(data[f"features_{qa}"], data[f"features_{qb}"], args.dims)
        la, lb = data[f"labels_{qa}"], data[f"labels_{qb}"]
        for rule in args.ks.split(","):
            if rule == "true":
                ks = (len(np.unique(la)), len(np.unique(lb)))
            elif rule == "elbow":
                ks = (elbow_k(xa, 2, 100, seed=0)[0], elbow_k(xb, 2, 100, seed=0)[0])
            else:
                ks = (int(rule), int(rule))
            ca, cb = kmeans(xa, ks[0], seed=0, nredo=2), kmeans(xb, ks[1], seed=0, nredo=2)
            ma, mb = xa.mean(0), xb.mean(0)
            g = merge_prototypes(ca.centroids, cb.centroids, ma, mb, rule="global")
            p = merge_prototypes(ca.centroids, cb.centroids, ma, mb, rule="pair")
            maj_a = majority(ca.assign, la, ks[0])
            maj_b = majority(cb.assign, lb, ks[1])
            ratio = np.median(g.matched_dist / g.threshold)  # the matching is the same under both rules
            pure = [maj_a[i] == maj_b[j] for i, j in p.merged_pairs] if len(p.merged_pairs) else []
            print(
                f"| {qa[0].upper()}→{qb[0].upper()} | {rule} | {ks[0]}, {ks[1]} "
                f"| {g.num_merged} | {p.num_merged} "
                f"| {np.mean(pure) if pure else float('nan'):.2f} | {ratio:.2f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()

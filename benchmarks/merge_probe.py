"""How many prototypes pass Eq. 9 at UEM's start, and are the merged pairs the same class? (issue 10).

Diagnosis only: it reads labels. For every directed pair of a features npz (``--dataset npz:PATH`` layout,
e.g. ``benchmarks/features_npz.py``) and a close-set split (all classes), it builds what the structure head
holds at initialisation (features centred on the pooled mean of both domains, projected on the top
``--dims`` principal axes, L2-normalised; ``StructureHead`` in docs/uem.md), clusters each domain with
K-means for each K in ``--ks`` (``true`` = the class count, an oracle), applies Eq. 8 and the Hungarian
matching, and counts the merges under the ``global`` (Eq. 9 as printed) and ``pair`` rules. ``pure`` is the
share of merged pairs whose two clusters have the same majority class; ``d/thr`` the median ratio of a matched
pair's distance to the global threshold; ``match pure`` the share of *all* Hungarian pairs (merged or not)
whose two clusters have the same majority class.

``--translations`` replaces Eq. 8's mean shift by other maps of B's prototypes into A's frame, to see whether
a better alignment than the mean would let Eq. 9 pass (issue 10): ``mean`` (Eq. 8), ``iterated`` (the mean of
the matched prototypes' offsets, re-matched, five rounds), ``affine`` (per-dimension standardisation of B,
then A's mean and spread) and ``coral`` (B whitened with its covariance and re-coloured with A's, Sun et al.,
AAAI 2016). The threshold of Eq. 9 is then taken on the mapped prototypes (for ``mean`` and ``iterated`` it is
unchanged).

    .venv/bin/python benchmarks/merge_probe.py /work/scratch/pacs_clean.npz --ks true,elbow
    .venv/bin/python benchmarks/merge_probe.py /work/scratch/pacs_clean.npz --ks true,15 \
        --translations mean,iterated,affine,coral --unordered
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np
import torch
import torch.nn.functional as F

from u2cdr_bench.blocks.kmeans import elbow_k, kmeans
from u2cdr_bench.blocks.merging import hungarian_match, merge_prototypes
from u2cdr_bench.nets import StructureHead


def start_features(xa: np.ndarray, xb: np.ndarray, dims: int) -> tuple[np.ndarray, np.ndarray]:
    """What UEM's memory banks hold at the start: a :class:`StructureHead` initialised on both domains,
    L2-normalised: ``[N_A, dims]``, ``[N_B, dims]``."""
    ta, tb = torch.as_tensor(xa, dtype=torch.float32), torch.as_tensor(xb, dtype=torch.float32)
    head = StructureHead(ta.shape[1], out_dim=dims)
    head.init_from_data(torch.cat([ta, tb]))
    with torch.no_grad():
        return F.normalize(head(ta), dim=1).numpy(), F.normalize(head(tb), dim=1).numpy()


TRANSLATIONS = ("mean", "iterated", "affine", "coral")


def _cov_power(x: np.ndarray, power: float, eps: float = 1e-3) -> np.ndarray:
    """``(Cov(x) + eps I)^power`` of ``x [N, D]`` (symmetric, via its eigendecomposition)."""
    w, v = np.linalg.eigh(np.cov(x.T) + eps * np.eye(x.shape[1]))
    return (v * w**power) @ v.T


def map_b_to_a(pa: np.ndarray, pb: np.ndarray, xa: np.ndarray, xb: np.ndarray, how: str) -> np.ndarray:
    """B's prototypes ``pb [K_B, D]`` in A's frame under the translation ``how`` (module docstring)."""
    xa, xb = xa.astype(np.float64), xb.astype(np.float64)
    pa, pb = pa.astype(np.float64), pb.astype(np.float64)
    if how in ("mean", "iterated"):
        out = pb + (xa.mean(0) - xb.mean(0))
        for _ in range(5 if how == "iterated" else 0):
            rows, cols, _ = hungarian_match(pa, out)
            out = pb + (pa[rows] - pb[cols]).mean(0)
        return out
    if how == "affine":
        return (pb - xb.mean(0)) / xb.std(0) * xa.std(0) + xa.mean(0)
    if how == "coral":
        return (pb - xb.mean(0)) @ _cov_power(xb, -0.5) @ _cov_power(xa, 0.5) + xa.mean(0)
    raise ValueError(f"unknown translation {how!r}; valid: {', '.join(TRANSLATIONS)}")


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
    ap.add_argument("--translations", default="mean", help=f"comma list of {', '.join(TRANSLATIONS)}")
    ap.add_argument(
        "--unordered", action="store_true", help="one direction per pair (the rules are symmetric)"
    )
    args = ap.parse_args()
    hows = args.translations.split(",")
    bad = [h for h in hows if h not in TRANSLATIONS]
    if bad:
        raise SystemExit(f"unknown translation {bad[0]!r}; valid: {', '.join(TRANSLATIONS)}")
    data = np.load(args.npz)
    domains = [k[len("features_") :] for k in data.files if k.startswith("features_")]
    pairs = itertools.combinations(domains, 2) if args.unordered else itertools.permutations(domains, 2)
    print(
        "| pair | K rule | K_A, K_B | translation | merged (global) | merged (pair) | pure (pair) "
        "| match pure | d/thr |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for qa, qb in pairs:
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
            maj_a = majority(ca.assign, la, ks[0])
            maj_b = majority(cb.assign, lb, ks[1])
            zero = np.zeros(xa.shape[1])
            for how in hows:
                pb_in_a = map_b_to_a(ca.centroids, cb.centroids, xa, xb, how)
                # the map is applied here, so the merge itself shifts by nothing
                g = merge_prototypes(ca.centroids, pb_in_a, zero, zero, rule="global")
                p = merge_prototypes(ca.centroids, pb_in_a, zero, zero, rule="pair")
                ratio = np.median(g.matched_dist / g.threshold)  # the matching is the same under both rules
                pure = [maj_a[i] == maj_b[j] for i, j in p.merged_pairs]
                match_pure = np.mean([maj_a[i] == maj_b[j] for i, j in g.matched_pairs])
                print(
                    f"| {qa[0].upper()}→{qb[0].upper()} | {rule} | {ks[0]}, {ks[1]} | {how} "
                    f"| {g.num_merged} | {p.num_merged} "
                    f"| {np.mean(pure) if pure else float('nan'):.2f} | {match_pure:.2f} | {ratio:.2f} |",
                    flush=True,
                )


if __name__ == "__main__":
    main()

"""Estimators of the number of clusters K of an unlabeled feature set, in one registry (issue 10).

UEM estimates each domain's number of prototypes "with the Elbow method" (paper-spec §2.2(c), citing Liu &
Deng, IEEE TFS 2020, whose rule we could not obtain here); the generic open-set detector of every baseline
needs a K too (paper-spec §4.2). Every estimator maps features ``x`` ``[N, D]`` to an integer ``K >= 1`` and
a small dict of evidence for the record; all are label-free and seeded.

``elbow``
    Today's rule, kept under its name: k-means inertia over ``K = k_min..k_max`` and the knee of that curve
    (Kneedle, ``kneed.KneeLocator``). On a curve without a sharp knee Kneedle lands near
    ``(k_max - k_min) / ln(k_max / k_min)``, so K follows the search range (about 25 for 2..100, 6 for
    2..14), not the data.
``eigengap``
    Spectral eigengap (von Luxburg, "A tutorial on spectral clustering", 2007, §8.3): a symmetric kNN graph
    on the L2-normalised features with self-tuning Gaussian weights ``w_ij = exp(-d_ij^2 / (s_i s_j))``
    (``s_i`` = distance to the 7th neighbour; Zelnik-Manor & Perona, NIPS 2004), the eigenvalues
    ``0 = l_1 <= l_2 <= ...`` of its normalised Laplacian ``I - D^-1/2 W D^-1/2``, and
    ``K = argmax_k (l_{k+1} - l_k)``: the largest gap, wherever it is. ``k_max`` only bounds how many
    eigenvalues are computed.
``gap``
    Gap statistic (Tibshirani, Walther & Hastie, JRSS-B 2001): ``Gap(k) = E*[log W*_k] - log W_k`` against
    ``B`` uniform reference sets in the principal-axes box of the data, and the *first* ``k`` with
    ``Gap(k) >= Gap(k+1) - s_{k+1}``, so K does not depend on an upper bound. Computed on the top
    ``gap_dims`` principal components of the L2-normalised features (uniform boxes in 1280 dimensions are
    meaningless).
``silhouette``
    The K of the largest mean silhouette (Rousseeuw 1987) of k-means on the L2-normalised features over
    ``K = 2..k_max`` (cosine geometry).

All estimators work on a seeded random subset of at most ``max_points`` samples. Which features K is
estimated on is the caller's choice; UEM and the detectors pass it in (``docs/uem.md``, "Cluster counts").
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..registry import Registry
from .kmeans import elbow_k, kmeans

__all__ = ["ESTIMATORS", "KEstimate", "estimate_k", "estimator_names"]


@dataclass(frozen=True)
class KEstimate:
    """An estimated number of clusters and the evidence behind it (JSON-able)."""

    k: int
    estimator: str
    evidence: dict[str, Any] = field(default_factory=dict)


Estimator = Callable[..., KEstimate]
ESTIMATORS: Registry[Estimator] = Registry("cluster-count estimator")


def estimator_names() -> list[str]:
    return ESTIMATORS.names()


def _subset(x: np.ndarray, max_points: int, seed: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if len(x) > max_points:
        idx = np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))
        x = x[idx]
    return x


def _l2(x: np.ndarray) -> np.ndarray:
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


@ESTIMATORS.register("elbow", summary="knee of the k-means inertia curve over k_min..k_max (Kneedle)")
def elbow(
    x: np.ndarray, seed: int = 0, k_min: int = 2, k_max: int = 20, niter: int = 20, max_points: int = 3000
) -> KEstimate:
    k, curve = elbow_k(x, k_min=k_min, k_max=k_max, seed=seed, niter=niter, nredo=1, max_points=max_points)
    return KEstimate(int(k), "elbow", {"k_min": k_min, "k_max": k_max})


def _knn_affinity(x: np.ndarray, n_neighbors: int) -> Any:
    """Symmetric self-tuning kNN affinity (scipy CSR) of L2-normalised ``x``."""
    import faiss
    from scipy import sparse

    n = len(x)
    k = min(n_neighbors + 1, n)
    index = faiss.IndexFlatIP(x.shape[1])
    index.add(x)
    sim, nbr = index.search(x, k)
    d2 = np.maximum(2.0 - 2.0 * sim.astype(np.float64), 0.0)  # squared distance of unit vectors
    scale_col = min(7, k - 1)
    sigma = np.sqrt(d2[:, scale_col]) + 1e-12
    rows = np.repeat(np.arange(n), k)
    cols = nbr.reshape(-1)
    w = np.exp(-d2.reshape(-1) / (sigma[rows] * sigma[cols]))
    keep = rows != cols
    a = sparse.csr_matrix((w[keep], (rows[keep], cols[keep])), shape=(n, n))
    return a.maximum(a.T)


@ESTIMATORS.register("eigengap", summary="largest eigengap of a self-tuning kNN graph's normalised Laplacian")
def eigengap(
    x: np.ndarray,
    seed: int = 0,
    k_min: int = 2,
    k_max: int = 50,
    n_neighbors: int = 10,
    max_points: int = 3000,
) -> KEstimate:
    from scipy import sparse
    from scipy.sparse.linalg import eigsh

    x = _l2(_subset(x, max_points, seed))
    n = len(x)
    if n <= k_min + 1:
        return KEstimate(max(1, min(k_min, n)), "eigengap", {"reason": "too few points"})
    a = _knn_affinity(x, n_neighbors)
    deg = np.asarray(a.sum(axis=1)).ravel()
    dinv = sparse.diags(1.0 / np.sqrt(np.maximum(deg, 1e-12)))
    m = dinv @ a @ dinv  # eigenvalues 1 - l of the normalised Laplacian
    n_eig = int(min(k_max + 1, n - 2))
    v0 = np.random.default_rng(seed).standard_normal(n)
    mu = eigsh(m, k=n_eig, which="LA", v0=v0, tol=1e-6, maxiter=20 * n)[0]
    lam = np.sort(1.0 - mu)  # l_1 <= l_2 <= ...
    gaps = np.diff(lam)  # gaps[i] = l_{i+2} - l_{i+1}, i.e. the gap after the first i+1 eigenvalues
    ks = np.arange(1, len(lam))  # K for each gap
    ok = ks >= k_min
    best = int(ks[ok][np.argmax(gaps[ok])])
    return KEstimate(best, "eigengap", {"eigenvalues": np.round(lam[: min(len(lam), 30)], 5).tolist()})


def _log_wk(x: np.ndarray, k: int, seed: int, niter: int) -> float:
    return float(np.log(max(kmeans(x, k, seed=seed, niter=niter, nredo=1).inertia, 1e-12)))


@ESTIMATORS.register("gap", summary="gap statistic: first k with Gap(k) >= Gap(k+1) - s(k+1)")
def gap(
    x: np.ndarray,
    seed: int = 0,
    k_min: int = 1,
    k_max: int = 60,
    n_refs: int = 8,
    gap_dims: int = 32,
    niter: int = 20,
    max_points: int = 2000,
) -> KEstimate:
    x = _l2(_subset(x, max_points, seed)).astype(np.float64)
    x = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    z = (x @ vt[: min(gap_dims, vt.shape[0])].T).astype(np.float32)  # principal axes (Tibshirani's "b")
    lo, hi = z.min(axis=0), z.max(axis=0)
    rng = np.random.default_rng(seed)
    refs = [(lo + (hi - lo) * rng.random(z.shape)).astype(np.float32) for _ in range(n_refs)]
    k_max = int(min(k_max, len(z) - 1))
    gaps: dict[int, float] = {}
    sds: dict[int, float] = {}

    def at(k: int) -> None:
        if k in gaps:
            return
        ref = np.array([_log_wk(r, k, seed + 17 * b + k, niter) for b, r in enumerate(refs)])
        gaps[k] = float(ref.mean() - _log_wk(z, k, seed + k, niter))
        sds[k] = float(ref.std() * np.sqrt(1.0 + 1.0 / n_refs))

    k = max(1, k_min)
    while k < k_max:
        at(k)
        at(k + 1)
        if gaps[k] >= gaps[k + 1] - sds[k + 1]:
            break
        k += 1
    return KEstimate(int(k), "gap", {"gap": {str(i): round(v, 4) for i, v in sorted(gaps.items())}})


@ESTIMATORS.register("silhouette", summary="k of the largest mean silhouette (cosine) over 2..k_max")
def silhouette(
    x: np.ndarray, seed: int = 0, k_min: int = 2, k_max: int = 30, niter: int = 20, max_points: int = 2000
) -> KEstimate:
    from sklearn.metrics import silhouette_score

    x = _l2(_subset(x, max_points, seed))
    k_max = int(min(k_max, len(x) - 1))
    scores = {}
    for k in range(max(2, k_min), k_max + 1):
        labels = kmeans(x, k, seed=seed + k, niter=niter, nredo=1).assign
        if len(np.unique(labels)) < 2:
            continue
        scores[k] = float(silhouette_score(x, labels, metric="euclidean"))
    if not scores:
        return KEstimate(1, "silhouette", {})
    best = max(scores, key=lambda k: (scores[k], -k))
    return KEstimate(
        int(best), "silhouette", {"silhouette": {str(k): round(v, 4) for k, v in scores.items()}}
    )


def estimate_k(x: np.ndarray, estimator: str = "eigengap", seed: int = 0, **kwargs: Any) -> KEstimate:
    """Run the named estimator on ``x`` ``[N, D]`` (unknown names raise a UserError listing the valid ones).

    ``kwargs`` are passed on when the estimator takes them (e.g. ``k_max``); others are ignored, so callers
    can hand every estimator the same options.
    """
    import inspect

    fn = ESTIMATORS.get(estimator)
    params = inspect.signature(fn).parameters
    return fn(x, seed=seed, **{k: v for k, v in kwargs.items() if k in params})

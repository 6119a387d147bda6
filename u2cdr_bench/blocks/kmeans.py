"""K-means (faiss) and the Elbow estimate of the number of clusters (paper-spec §2.2(c), §7 #4).

``kmeans`` wraps ``faiss.Kmeans`` (Lloyd iterations, ``nredo`` restarts keeping the best objective)
with UCDIR's settings (niter 20, nredo 5). ``elbow_k`` runs k-means over a range of K and picks the knee
of the inertia curve (Liu & Deng, IEEE TFS 2020, cited by the paper) with ``kneed.KneeLocator``
(convex, decreasing); when no knee is found the K with the largest second difference of the curve is used.
"""

from __future__ import annotations

from dataclasses import dataclass

import faiss
import numpy as np


@dataclass(frozen=True)
class KMeansResult:
    """Centroids ``[K, D]``, assignment ``[N]`` and inertia (sum of squared distances to the centroids)."""

    centroids: np.ndarray
    assign: np.ndarray
    inertia: float

    @property
    def k(self) -> int:
        return len(self.centroids)


def kmeanspp_init(x: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """k-means++ seeding (Arthur & Vassilvitskii 2007): ``[k, D]`` initial centroids drawn by D² sampling."""
    n = len(x)
    centers = np.empty((k, x.shape[1]), dtype=np.float32)
    centers[0] = x[rng.integers(n)]
    d2 = ((x - centers[0]) ** 2).sum(1).astype(np.float64)
    for i in range(1, k):
        total = d2.sum()
        j = rng.choice(n, p=d2 / total) if total > 0 else rng.integers(n)
        centers[i] = x[j]
        d2 = np.minimum(d2, ((x - centers[i]) ** 2).sum(1))
    return centers


def _lloyd_float64(x: np.ndarray, init: np.ndarray, niter: int) -> KMeansResult:
    """Lloyd iterations in float64 from ``init`` (the ``float64-clustering`` switch of
    :mod:`u2cdr_bench.reproducibility`): assignments and inertia do not depend on float32 SIMD rounding.
    An emptied cluster keeps its previous centre."""
    xd = x.astype(np.float64)
    c = init.astype(np.float64)
    sq = (xd * xd).sum(1)

    def assign_of(c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        d = sq[:, None] - 2.0 * xd @ c.T + (c * c).sum(1)[None, :]
        a = d.argmin(1)
        return a, np.maximum(d[np.arange(len(xd)), a], 0.0)

    for _ in range(max(1, niter)):
        a, _ = assign_of(c)
        counts = np.bincount(a, minlength=len(c))
        sums = np.zeros_like(c)
        np.add.at(sums, a, xd)
        full = counts > 0
        c[full] = sums[full] / counts[full, None]
    a, d = assign_of(c)
    return KMeansResult(c.astype(np.float32), a.astype(np.int64), float(d.sum()))


def kmeans(
    x: np.ndarray,
    k: int,
    seed: int = 0,
    niter: int = 20,
    nredo: int = 5,
    spherical: bool = False,
) -> KMeansResult:
    """Cluster ``x`` (``[N, D]``) into ``k`` clusters (``k`` clamped to ``[1, N]``).

    Each of the ``nredo`` restarts is seeded by k-means++ from a numpy Generator derived from ``seed``,
    then refined by ``niter`` faiss Lloyd iterations; the restart with the lowest inertia is kept.
    """
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = int(max(1, min(k, n)))
    rng = np.random.default_rng(seed)
    best: KMeansResult | None = None
    from ..reproducibility import float64_clustering

    in_float64 = float64_clustering() and not spherical
    for _ in range(max(1, nredo)):
        init = kmeanspp_init(x, k, rng)
        if in_float64:
            res = _lloyd_float64(x, init, niter)
            rng.integers(2**31 - 1)  # keep the seed stream of the faiss path
            if best is None or res.inertia < best.inertia:
                best = res
            continue
        km = faiss.Kmeans(
            d,
            k,
            niter=niter,
            nredo=1,
            seed=int(rng.integers(2**31 - 1)),
            spherical=spherical,
            verbose=False,
            min_points_per_centroid=1,
            max_points_per_centroid=max(256, n),
        )
        km.train(x, init_centroids=init)
        dist, assign = km.index.search(x, 1)
        res = KMeansResult(
            np.asarray(km.centroids, dtype=np.float32).copy(),
            assign[:, 0].astype(np.int64),
            float(dist.sum()),
        )
        if best is None or res.inertia < best.inertia:
            best = res
    assert best is not None
    return best


def elbow_k(
    x: np.ndarray,
    k_min: int = 2,
    k_max: int = 20,
    seed: int = 0,
    niter: int = 20,
    nredo: int = 1,
    max_points: int = 3000,
) -> tuple[int, dict[int, float]]:
    """Estimate the number of clusters of ``x`` by the Elbow method.

    Returns the chosen K and the inertia curve ``{K: inertia}`` over ``K = k_min..k_max``
    (``k_max`` clamped to ``N - 1``). For speed the curve is computed on a seeded random subset of
    at most ``max_points`` points (the knee of the curve does not depend on the scale of the inertia).
    """
    from kneed import KneeLocator

    if len(x) > max_points:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), max_points, replace=False))]
    n = len(x)
    k_max = int(max(k_min, min(k_max, n - 1)))
    ks = list(range(k_min, k_max + 1))
    curve = {k: kmeans(x, k, seed=seed + k, niter=niter, nredo=nredo).inertia for k in ks}
    if len(ks) < 3:
        return ks[0], curve
    ys = np.array([curve[k] for k in ks])
    knee = KneeLocator(ks, ys, curve="convex", direction="decreasing").knee
    if knee is None:
        second = ys[:-2] - 2 * ys[1:-1] + ys[2:]
        knee = ks[1 + int(np.argmax(second))]
    return int(knee), curve

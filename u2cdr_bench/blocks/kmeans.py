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


def kmeans(
    x: np.ndarray,
    k: int,
    seed: int = 0,
    niter: int = 20,
    nredo: int = 5,
    spherical: bool = False,
) -> KMeansResult:
    """Cluster ``x`` (``[N, D]``) into ``k`` clusters (``k`` clamped to ``[1, N]``)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    n, d = x.shape
    k = int(max(1, min(k, n)))
    km = faiss.Kmeans(
        d,
        k,
        niter=niter,
        nredo=nredo,
        seed=int(seed) % (2**31 - 1),
        spherical=spherical,
        verbose=False,
        min_points_per_centroid=1,
        max_points_per_centroid=max(256, n),
    )
    km.train(x)
    dist, assign = km.index.search(x, 1)
    centroids = np.asarray(km.centroids, dtype=np.float32).copy()
    return KMeansResult(centroids, assign[:, 0].astype(np.int64), float(dist.sum()))


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

"""The generic open-set (query-private) detector used by every method but UEM (paper-spec §4.2, App. B.2).

1. K-means on the query-domain features gives clusters ``c``; K comes from the cluster-count estimator
   ``estimator`` (:mod:`u2cdr_bench.blocks.cluster_count`, bounded by ``k_max``; no labels).
2. For each cluster the threshold ``D_c`` is the largest member-to-centroid distance (``threshold="radius"``,
   the default: "max intra-cluster distance" read as distance to the cluster centre) or the largest
   distance between two of its members (``"diameter"``, the most literal reading of "maximum distance between
   two samples of that cluster"; it almost never flags a query, see ``methods.base.BASE_HPARAMS``).
3. A query is private iff the distance to its nearest gallery item exceeds ``D_c`` of its cluster
   (the comparison is implied by the paper, paper-spec §7 #19).

Distances are the method's own: ``euclidean`` or ``cosine`` (1 - cos).
"""

from __future__ import annotations

import numpy as np

from .cluster_count import estimate_k
from .kmeans import kmeans


def _dist_matrix(a: np.ndarray, b: np.ndarray, distance: str) -> np.ndarray:
    a = a.astype(np.float64)
    b = b.astype(np.float64)
    if distance == "cosine":
        an = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
        bn = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
        return 1.0 - an @ bn.T
    if distance == "euclidean":
        sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
        return np.sqrt(np.maximum(sq, 0.0))
    raise ValueError(f"distance must be euclidean or cosine, got {distance!r}")


def nearest_distance(q: np.ndarray, g: np.ndarray, distance: str, chunk: int = 1024) -> np.ndarray:
    """``[N_q]`` distance from each query to its nearest gallery item."""
    out = np.empty(len(q))
    for s in range(0, len(q), chunk):
        out[s : s + chunk] = _dist_matrix(q[s : s + chunk], g, distance).min(axis=1)
    return out


def cluster_spread(
    x: np.ndarray, assign: np.ndarray, centroids: np.ndarray, distance: str, threshold: str
) -> np.ndarray:
    """``[K]`` per-cluster threshold ``D_c`` (diameter or radius); 0 for singleton clusters."""
    k = len(centroids)
    spread = np.zeros(k)
    for c in range(k):
        members = x[assign == c]
        if len(members) == 0:
            continue
        if threshold == "diameter":
            best = 0.0
            for s in range(0, len(members), 1024):
                best = max(best, float(_dist_matrix(members[s : s + 1024], members, distance).max()))
            spread[c] = best
        elif threshold == "radius":
            spread[c] = float(_dist_matrix(members, centroids[c : c + 1], distance).max())
        else:
            raise ValueError(f"threshold must be diameter or radius, got {threshold!r}")
    return spread


def fit_generic_detector(
    query_feats: np.ndarray,
    distance: str = "euclidean",
    seed: int = 0,
    k: int | None = None,
    k_max: int = 100,
    threshold: str = "radius",
    estimator: str = "elbow",
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Steps 1-2 on query features ``[N_q, D]``: ``(centroids [K, D], D_c [K], assign [N_q])``.

    ``k`` fixes the number of query clusters (else the ``estimator`` over ``2..k_max``); with the cosine
    distance the clustering runs on the L2-normalised features. The saved-model detector
    (:mod:`u2cdr_bench.carried_detector`) stores exactly this state.
    """
    q = np.ascontiguousarray(query_feats, dtype=np.float32)
    xk = q
    if distance == "cosine":
        xk = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    if k is None:
        k = estimate_k(xk, estimator, seed=seed, k_min=2, k_max=k_max).k
    km = kmeans(xk, k, seed=seed)
    spread = cluster_spread(q, km.assign, km.centroids, distance, threshold)
    return km.centroids, spread, km.assign


def generic_private_detector(
    query_feats: np.ndarray,
    gallery_feats: np.ndarray,
    distance: str = "euclidean",
    seed: int = 0,
    k: int | None = None,
    k_max: int = 100,
    threshold: str = "radius",
    estimator: str = "elbow",
) -> np.ndarray:
    """``[N_q]`` bool, True = query judged private (steps 1-3; arguments as :func:`fit_generic_detector`)."""
    q = np.ascontiguousarray(query_feats, dtype=np.float32)
    g = np.ascontiguousarray(gallery_feats, dtype=np.float32)
    _, spread, assign = fit_generic_detector(q, distance, seed, k, k_max, threshold, estimator)
    nn = nearest_distance(q, g, distance)
    return nn > spread[assign]

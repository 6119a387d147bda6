"""Search primitives for cross-domain retrieval: numpy in, numpy out.

* :func:`knn` — exact k nearest neighbours with faiss (flat index), processed in query chunks and
  re-ranked in float64 so that the order is exact and ties go to the lower gallery index.
* :func:`iter_sq_euclidean_chunks` — chunks of the float64 squared-distance matrix
  :math:`\\|q\\|^2 + \\|g\\|^2 - 2\\,q\\cdot g` (the whole-gallery ranking behind mAP@All, paper-spec §4.1).
* :func:`pairwise_distances`, :func:`cosine_distance`, :func:`l2_normalize` — small helpers.

Distances: ``"euclidean"`` is :math:`\\|q-g\\|_2` (not squared); ``"cosine"`` is the cosine *distance*
:math:`1-\\cos(q,g)` in [0, 2]. A zero vector stays zero under :func:`l2_normalize`, so its cosine
distance to anything is 1.
"""

from __future__ import annotations

from collections.abc import Iterator

import faiss
import numpy as np
from scipy.spatial.distance import cdist

from .errors import UserError

METRICS_SUPPORTED = ("euclidean", "cosine")

# Extra candidates fetched from faiss (float32) before the exact float64 re-ranking, so that float32
# rounding cannot push a true top-k neighbour out of the candidate list.
_MIN_EXTRA = 16
# Elements per gathered [rows, candidates, dim] block during the float64 re-ranking (32 MiB).
_REFINE_BLOCK = 1 << 22


def _as_2d_float(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 2:
        raise UserError(f"{name} must be a 2-D array [N, D]; got shape {arr.shape}.")
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise UserError(f"{name} must hold numbers; got dtype {arr.dtype}.")
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    if not np.all(np.isfinite(arr)):
        raise UserError(f"{name} contains NaN or infinite values.")
    return arr


def _check_pair(a: np.ndarray, b: np.ndarray, name_a: str, name_b: str) -> tuple[np.ndarray, np.ndarray]:
    a = _as_2d_float(a, name_a)
    b = _as_2d_float(b, name_b)
    if a.shape[1] != b.shape[1]:
        raise UserError(
            f"{name_a} and {name_b} must have the same dimension; got {a.shape[1]} and {b.shape[1]}."
        )
    return a, b


def _check_metric(metric: str) -> str:
    if metric not in METRICS_SUPPORTED:
        raise UserError(f"Unknown distance '{metric}'; valid choices: {', '.join(METRICS_SUPPORTED)}.")
    return metric


def _check_chunk(chunk: int) -> int:
    if int(chunk) < 1:
        raise UserError(f"chunk must be a positive integer; got {chunk}.")
    return int(chunk)


def l2_normalize(x: np.ndarray, eps: float = 1e-12) -> np.ndarray:
    """Row-wise :math:`x_i / \\max(\\|x_i\\|_2, \\epsilon)`.

    Args:
        x: ``[N, D]`` features; float dtypes are kept, integers become float64.
        eps: floor on the norm, so that a zero row stays zero.

    Returns:
        ``[N, D]`` rows of unit norm (zero rows stay zero), a new array.
    """
    arr = np.asarray(x)
    if not np.issubdtype(arr.dtype, np.floating):
        arr = arr.astype(np.float64)
    norms = np.linalg.norm(arr, axis=-1, keepdims=True)
    return arr / np.maximum(norms, eps).astype(arr.dtype)


def cosine_distance(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Cosine distance :math:`1 - \\hat a_i \\cdot \\hat b_j` in float64, ``[Na, Nb]``."""
    a, b = _check_pair(a, b, "a", "b")
    an = l2_normalize(a.astype(np.float64))
    bn = l2_normalize(b.astype(np.float64))
    return 1.0 - an @ bn.T


def pairwise_distances(a: np.ndarray, b: np.ndarray, metric: str = "euclidean") -> np.ndarray:
    """All distances between ``a [Na, D]`` and ``b [Nb, D]`` in float64, ``[Na, Nb]``.

    ``"euclidean"`` uses :func:`scipy.spatial.distance.cdist` (direct differences, the most accurate);
    ``"cosine"`` uses :func:`cosine_distance`. Memory is ``8·Na·Nb`` bytes: for modest sizes only.
    """
    _check_metric(metric)
    a, b = _check_pair(a, b, "a", "b")
    if metric == "cosine":
        return cosine_distance(a, b)
    return cdist(a.astype(np.float64), b.astype(np.float64), "euclidean")


def iter_sq_euclidean_chunks(
    q: np.ndarray, g: np.ndarray, chunk: int = 1024
) -> Iterator[tuple[int, np.ndarray]]:
    """Yield ``(start, D)`` with ``D[i, j] = max(0, ||q_{start+i}||² + ||g_j||² - 2 q_{start+i}·g_j)``.

    All arithmetic is float64 (integer-valued features give exact squared distances as long as the sums
    stay below 2**53). ``D`` is ``[min(chunk, Nq - start), Ng]`` float64 and is a fresh array for each
    chunk, so the caller may modify it. Peak memory is about ``2·8·chunk·Ng`` bytes plus one float64 copy
    of ``g``.
    """
    chunk = _check_chunk(chunk)
    q, g = _check_pair(q, g, "queries", "gallery")
    g64 = np.ascontiguousarray(g, dtype=np.float64)
    g_sq = np.einsum("ij,ij->i", g64, g64)
    for start in range(0, q.shape[0], chunk):
        qc = np.asarray(q[start : start + chunk], dtype=np.float64)
        d = qc @ g64.T
        d *= -2.0
        d += np.einsum("ij,ij->i", qc, qc)[:, None]
        d += g_sq[None, :]
        np.maximum(d, 0.0, out=d)
        yield start, d


def _refine(
    q: np.ndarray, g: np.ndarray, cand: np.ndarray, k: int, metric: str
) -> tuple[np.ndarray, np.ndarray]:
    """Exact float64 distances to the candidates ``cand [n, c]``; keep the k smallest (ties: lower index).

    Each distance is an element-wise product summed along the feature axis, so identical gallery vectors get
    bit-identical distances (and thus tie exactly) wherever they sit in the candidate list.
    """
    n, c = cand.shape
    dim = max(q.shape[1], 1)
    rows = max(1, _REFINE_BLOCK // (c * dim))
    dist = np.empty((n, c), dtype=np.float64)
    for s in range(0, n, rows):
        qs = np.asarray(q[s : s + rows], dtype=np.float64)
        gs = np.asarray(g[cand[s : s + rows]], dtype=np.float64)  # [r, c, D]
        if metric == "euclidean":
            diff = gs - qs[:, None, :]
            dist[s : s + rows] = np.sqrt((diff * diff).sum(axis=-1))
        else:
            qn = l2_normalize(qs)
            gn = l2_normalize(gs)
            dist[s : s + rows] = 1.0 - (gn * qn[:, None, :]).sum(axis=-1)
    order = np.lexsort((cand, dist), axis=-1)[:, :k]
    return np.take_along_axis(dist, order, axis=1), np.take_along_axis(cand, order, axis=1)


def _unit_rows_for_l2(x: np.ndarray, zero_axis: int) -> np.ndarray:
    """float32 ``[N, D + 2]``: L2-normalised rows; a zero row becomes the unit vector e_{D+1+zero_axis}.

    Gallery rows use ``zero_axis=0`` and queries ``zero_axis=1``, so a zero row (cosine 0 with anything by
    convention) is at squared L2 distance 2 from every other row, as a vector with cosine 0 would be.
    """
    xn = l2_normalize(np.asarray(x, dtype=np.float32))
    out = np.zeros((xn.shape[0], xn.shape[1] + 2), dtype=np.float32)
    out[:, : xn.shape[1]] = xn
    out[~xn.any(axis=1), xn.shape[1] + zero_axis] = 1.0
    return out


def knn(
    queries: np.ndarray, gallery: np.ndarray, k: int, metric: str = "euclidean", chunk: int = 1024
) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest gallery items of every query.

    Candidates come from a faiss ``IndexFlatL2`` in float32, searched ``chunk`` queries at a time with
    ``k + max(16, k // 8)`` candidates (capped at ``Ng``). For ``"cosine"`` the index holds L2-normalised
    copies, since for unit vectors ``||â - ĝ||² = 2 - 2 cos``; two extra coordinates keep the zero-vector
    convention exact (a zero gallery row becomes e_{D+1}, a zero query e_{D+2}: cosine 0 with everything).
    The candidates are then re-ranked with exact float64 distances (direct differences for Euclidean,
    normalised products for cosine) and sorted by (distance, gallery index): **ties go to the lower
    gallery index**.

    What faiss does on ties (checked with faiss 1.15): ``IndexFlatL2`` returns exactly equal float32
    distances in ascending id order and, at the k-th place, keeps the lower ids, in both its small-batch
    and its BLAS path (its result heaps compare ids on equal distances). ``IndexFlatIP`` returns tied ids
    in descending order and cuts tie groups at the k-th place in no fixed id order, which is why it is
    not used. So a group of items tied in float64 that straddles the candidate boundary is also cut at
    the lower indices, and the whole result is deterministic.

    Args:
        queries: ``[Nq, D]`` features.
        gallery: ``[Ng, D]`` features, ``Ng >= k``.
        k: number of neighbours, ``1 <= k <= Ng``.
        metric: ``"euclidean"`` (true distance, not squared) or ``"cosine"`` (distance ``1 - cos``).
        chunk: queries per faiss search; memory is ``O(chunk · (k + 16) · 8)`` bytes beyond the index.

    Returns:
        ``(dist [Nq, k] float64, idx [Nq, k] int64)``, each row sorted by (distance, gallery index).
    """
    _check_metric(metric)
    chunk = _check_chunk(chunk)
    q, g = _check_pair(queries, gallery, "queries", "gallery")
    n_g = g.shape[0]
    k = int(k)
    if not 1 <= k <= n_g:
        raise UserError(f"k must be between 1 and the gallery size {n_g}; got {k}.")
    n_cand = min(n_g, k + max(_MIN_EXTRA, k // 8))
    if metric == "cosine":
        g32 = _unit_rows_for_l2(g, zero_axis=0)
    else:
        g32 = np.ascontiguousarray(g, dtype=np.float32)
    index = faiss.IndexFlatL2(g32.shape[1])
    index.add(g32)
    dist = np.empty((q.shape[0], k), dtype=np.float64)
    idx = np.empty((q.shape[0], k), dtype=np.int64)
    for s in range(0, q.shape[0], chunk):
        if metric == "cosine":
            q32 = _unit_rows_for_l2(q[s : s + chunk], zero_axis=1)
        else:
            q32 = np.ascontiguousarray(q[s : s + chunk], dtype=np.float32)
        _, cand = index.search(q32, n_cand)
        dist[s : s + chunk], idx[s : s + chunk] = _refine(
            q[s : s + chunk], g, cand.astype(np.int64), k, metric
        )
    return dist, idx


__all__ = [
    "METRICS_SUPPORTED",
    "cosine_distance",
    "iter_sq_euclidean_chunks",
    "knn",
    "l2_normalize",
    "pairwise_distances",
]

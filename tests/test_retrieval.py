"""Search primitives against brute force (scipy cdist / per-query loops with a stable argsort)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from u2cdr_bench.errors import UserError
from u2cdr_bench.retrieval import (
    cosine_distance,
    iter_sq_euclidean_chunks,
    knn,
    l2_normalize,
    pairwise_distances,
)


def brute_knn(q: np.ndarray, g: np.ndarray, k: int, metric: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-query loop: float64 distances, stable argsort (ties -> lower gallery index)."""
    q = q.astype(np.float64)
    g = g.astype(np.float64)
    dists, idxs = [], []
    for i in range(q.shape[0]):
        if metric == "euclidean":
            d = np.sqrt(((g - q[i]) ** 2).sum(axis=1))
        else:
            qn = q[i] / max(np.linalg.norm(q[i]), 1e-12)
            gn = g / np.maximum(np.linalg.norm(g, axis=1, keepdims=True), 1e-12)
            d = 1.0 - (gn * qn).sum(axis=1)
        order = np.argsort(d, kind="stable")[:k]
        dists.append(d[order])
        idxs.append(order)
    return np.array(dists), np.array(idxs)


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
@pytest.mark.parametrize(("nq", "ng", "dim", "k"), [(37, 50, 5, 1), (130, 400, 16, 10), (64, 90, 3, 90)])
def test_knn_matches_brute_force_continuous(metric: str, nq: int, ng: int, dim: int, k: int) -> None:
    rng = np.random.default_rng(nq + ng)
    q = rng.standard_normal((nq, dim)).astype(np.float32)
    g = rng.standard_normal((ng, dim)).astype(np.float32)
    dist, idx = knn(q, g, k, metric=metric, chunk=16)
    bd, bi = brute_knn(q, g, k, metric)
    assert dist.dtype == np.float64 and idx.dtype == np.int64
    assert dist.shape == idx.shape == (nq, k)
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_allclose(dist, bd, rtol=0, atol=1e-12)


def test_knn_euclidean_ties_go_to_lower_index() -> None:
    # Integer features in {-1, 0, 1}^3: only 27 distinct points, so most distances are exact ties.
    rng = np.random.default_rng(0)
    q = rng.integers(-1, 2, (60, 3)).astype(np.float32)
    g = rng.integers(-1, 2, (300, 3)).astype(np.float32)
    dist, idx = knn(q, g, 40, metric="euclidean", chunk=25)
    bd, bi = brute_knn(q, g, 40, "euclidean")
    np.testing.assert_array_equal(idx, bi)
    np.testing.assert_array_equal(dist, bd)


def test_knn_cosine_ties_between_duplicates_go_to_lower_index() -> None:
    # Gallery rows are copies of 6 vectors: copies have bit-identical cosine distances.
    rng = np.random.default_rng(1)
    base = rng.standard_normal((6, 8))
    g = base[rng.integers(0, 6, 200)]
    q = rng.standard_normal((30, 8))
    _, idx = knn(q, g, 70, metric="cosine", chunk=7)
    _, bi = brute_knn(q, g, 70, "cosine")
    np.testing.assert_array_equal(idx, bi)


def test_knn_hand_computed() -> None:
    g = np.array([[3.0, 4.0], [1.0, 0.0], [0.0, 2.0], [-1.0, 0.0]])
    q = np.array([[0.0, 0.0]])
    dist, idx = knn(q, g, 3)
    # Euclidean distances 5, 1, 2, 1: the tie (1, 1) goes to index 1 before index 3.
    np.testing.assert_array_equal(idx, [[1, 3, 2]])
    np.testing.assert_array_equal(dist, [[1.0, 1.0, 2.0]])
    dist, idx = knn(np.array([[1.0, 0.0]]), g, 4, metric="cosine")
    # cosines 0.6, 1, 0, -1 -> distances 0.4, 0, 1, 2
    np.testing.assert_array_equal(idx, [[1, 0, 2, 3]])
    np.testing.assert_allclose(dist, [[0.0, 0.4, 1.0, 2.0]], atol=1e-15)
    # Zero vectors have cosine 0 with everything (distance 1): the zero gallery row 1 ties with row 2
    # (orthogonal) and comes first by index order; a zero query ties with every gallery row.
    gz = np.array([[1.0, 1.0], [0.0, 0.0], [0.0, 3.0], [-2.0, 0.0]])
    dist, idx = knn(np.array([[1.0, 0.0], [0.0, 0.0]]), gz, 4, metric="cosine")
    np.testing.assert_array_equal(idx, [[0, 1, 2, 3], [0, 1, 2, 3]])
    np.testing.assert_allclose(dist, [[1 - np.sqrt(0.5), 1.0, 1.0, 2.0], [1.0, 1.0, 1.0, 1.0]], atol=1e-15)


def test_knn_rejects_bad_input() -> None:
    g = np.zeros((5, 3))
    with pytest.raises(UserError):
        knn(np.zeros((2, 3)), g, 6)
    with pytest.raises(UserError):
        knn(np.zeros((2, 3)), g, 0)
    with pytest.raises(UserError):
        knn(np.zeros((2, 4)), g, 1)
    with pytest.raises(UserError):
        knn(np.zeros((2, 3)), g, 1, metric="manhattan")
    with pytest.raises(UserError):
        knn(np.full((2, 3), np.nan), g, 1)


def test_sq_euclidean_chunks_cover_all_rows_exactly() -> None:
    rng = np.random.default_rng(2)
    q = rng.integers(-5, 6, (23, 4))
    g = rng.integers(-5, 6, (31, 4))
    starts, blocks = zip(*iter_sq_euclidean_chunks(q, g, chunk=5), strict=True)
    assert starts == (0, 5, 10, 15, 20)
    full = np.concatenate(blocks)
    assert full.dtype == np.float64
    # integer features: the expansion ||q||^2 + ||g||^2 - 2 q.g is exact
    np.testing.assert_array_equal(full, cdist(q, g, "sqeuclidean"))
    qf = rng.standard_normal((9, 7)).astype(np.float32)
    gf = qf[[3, 0, 8]]
    full = np.concatenate([b for _, b in iter_sq_euclidean_chunks(qf, gf, chunk=4)])
    assert full.min() >= 0.0  # clipped at 0 where rounding would go negative
    np.testing.assert_allclose(
        full, cdist(qf.astype(np.float64), gf.astype(np.float64), "sqeuclidean"), atol=1e-9
    )


def test_pairwise_and_cosine_helpers() -> None:
    a = np.array([[3.0, 4.0], [0.0, 0.0]])
    b = np.array([[1.0, 0.0], [0.0, -2.0]])
    np.testing.assert_allclose(pairwise_distances(a, b), [[np.sqrt(20.0), np.sqrt(45.0)], [1.0, 2.0]])
    # cos([3,4],[1,0]) = 0.6, cos([3,4],[0,-1]) = -0.8; the zero row stays zero -> distance 1
    expected = [[0.4, 1.8], [1.0, 1.0]]
    np.testing.assert_allclose(cosine_distance(a, b), expected, atol=1e-15)
    np.testing.assert_allclose(pairwise_distances(a, b, "cosine"), expected, atol=1e-15)
    np.testing.assert_allclose(l2_normalize(a), [[0.6, 0.8], [0.0, 0.0]])
    assert l2_normalize(np.array([[1, 1]])).dtype == np.float64
    assert l2_normalize(np.ones((2, 2), dtype=np.float32)).dtype == np.float32

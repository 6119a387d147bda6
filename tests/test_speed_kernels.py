"""Every kernel rewritten for speed (issue 13) against the implementation it replaced, on random data.

The old implementations are copied here verbatim (as of commit a373663) and serve as references: the new
code must give the same result, bit for bit where the old code's arithmetic is kept, within float rounding
where it is reordered (each test says which).
"""

from __future__ import annotations

import numpy as np
import pytest

from u2cdr_bench.metrics import PerQueryAP, _relevant_counts, per_query_ap
from u2cdr_bench.retrieval import iter_sq_euclidean_chunks

# ---------------------------------------------------------------------------------------------------------
# per_query_ap (map_all, map_all_standard, map_at_r): old = full float64 sort of every distance row
# ---------------------------------------------------------------------------------------------------------


def _old_relevant_ranks(row: np.ndarray, sorted_row: np.ndarray, rel_idx: np.ndarray) -> np.ndarray:
    s = np.sort(row[rel_idx])
    lo = np.searchsorted(sorted_row, s, side="left")
    hi = np.searchsorted(sorted_row, s, side="right")
    s_lo = np.searchsorted(s, s, side="left")
    s_hi = np.searchsorted(s, s, side="right")
    if np.array_equal(hi - lo, s_hi - s_lo):
        return lo + (np.arange(s.size) - s_lo) + 1
    order = np.argsort(row, kind="stable")
    is_rel = np.zeros(row.size, dtype=bool)
    is_rel[rel_idx] = True
    return np.flatnonzero(is_rel[order]) + 1


def old_per_query_ap(q, ql, g, gl, chunk=512) -> PerQueryAP:
    q, g = np.asarray(q), np.asarray(g)
    ql, gl = np.asarray(ql, dtype=np.int64), np.asarray(gl, dtype=np.int64)
    n_q = q.shape[0]
    voc, std, at_r = (np.full(n_q, np.nan) for _ in range(3))
    r_q = _relevant_counts(ql, gl)
    included = np.flatnonzero(r_q > 0)
    if included.size == 0:
        return PerQueryAP(voc, std, at_r)
    g_order = np.argsort(gl, kind="stable")
    g_classes, g_start, g_count = np.unique(gl[g_order], return_index=True, return_counts=True)
    rel_of = {
        int(c): np.sort(g_order[s : s + n]) for c, s, n in zip(g_classes, g_start, g_count, strict=True)
    }
    for start, dist in iter_sq_euclidean_chunks(q[included], g, chunk):
        sorted_dist = np.sort(dist, axis=1)
        for r in range(dist.shape[0]):
            qi = included[start + r]
            ranks = _old_relevant_ranks(dist[r], sorted_dist[r], rel_of[int(ql[qi])])
            n_rel = ranks.size
            prec = np.arange(1, n_rel + 1) / ranks
            envelope = np.maximum.accumulate(prec[::-1])[::-1]
            voc[qi] = envelope.mean()
            std[qi] = prec.mean()
            at_r[qi] = prec[ranks <= n_rel].sum() / n_rel
    return PerQueryAP(voc, std, at_r)


def _random_case(rng: np.random.Generator, kind: str):
    nq, ng = int(rng.integers(1, 60)), int(rng.integers(1, 90))
    d, c = int(rng.integers(1, 6)), int(rng.integers(1, 6))
    if kind == "gauss":
        qf, gf = rng.standard_normal((nq, d)), rng.standard_normal((ng, d))
    elif kind == "integer":  # small integers: many exact distance ties, also across classes
        qf, gf = rng.integers(0, 3, (nq, d)).astype(float), rng.integers(0, 3, (ng, d)).astype(float)
    else:  # float32 with duplicated gallery rows and queries equal to gallery rows (distance 0)
        gf = rng.standard_normal((ng, d)).astype(np.float32)
        gf[rng.integers(0, ng, ng // 2)] = gf[0]
        h = min(nq // 2, ng)
        qf = np.concatenate([gf[:h], rng.standard_normal((nq - h, d)).astype(np.float32)])
    return qf, rng.integers(0, c, nq), gf, rng.integers(0, c, ng), int(rng.integers(1, 20))


@pytest.mark.parametrize("kind", ["gauss", "integer", "duplicates"])
def test_per_query_ap_equals_old_full_sort_bit_for_bit(kind: str) -> None:
    rng = np.random.default_rng({"gauss": 0, "integer": 1, "duplicates": 2}[kind])
    for _ in range(60):
        qf, ql, gf, gl, chunk = _random_case(rng, kind)
        new, old = per_query_ap(qf, ql, gf, gl, chunk=chunk), old_per_query_ap(qf, ql, gf, gl, chunk=chunk)
        for a, b in zip(new, old, strict=True):
            assert np.array_equal(a, b, equal_nan=True)


def test_per_query_ap_equals_old_on_a_large_gallery_with_float32_twins() -> None:
    """2,000 x 3,000 x 16-d: the float32 band sort meets float32 twins of relevant distances (its float64
    fallback) and must still equal the old full float64 sort exactly."""
    rng = np.random.default_rng(3)
    centres = rng.standard_normal((8, 16))
    gl, ql = rng.integers(0, 8, 3000), rng.integers(0, 9, 2000)  # class 8: queries without relevant items
    gf = (centres[gl] + rng.standard_normal((3000, 16))).astype(np.float32)
    qf = (centres[ql % 8] + rng.standard_normal((2000, 16))).astype(np.float32)
    gf[::7] = np.round(gf[::7], 1)  # coarse values: float32 (and some float64) ties between items
    qf[::5] = np.round(qf[::5], 1)
    new, old = per_query_ap(qf, ql, gf, gl, chunk=300), old_per_query_ap(qf, ql, gf, gl, chunk=300)
    for a, b in zip(new, old, strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    assert np.isnan(new.voc[ql == 8]).all() and not np.isnan(new.voc[ql != 8]).any()

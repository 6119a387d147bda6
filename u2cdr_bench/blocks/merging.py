"""Cross-domain prototype translation, Hungarian matching and merging (paper-spec §2.2(d), Eqs. 8–9).

Given the K-means prototypes of two domains, ``P^A`` (``[K_A, D]``) and ``P^B`` (``[K_B, D]``), and the
means of the two domains' memory banks (or feature sets), this module builds the *unified prototypical
structure* of UEM:

1. **Translation** (Eq. 8): ``P^{B->A} = {p^B_c + (mean_A - mean_B)}``; likewise ``P^{A->B}``.
2. **Matching**: a one-to-one assignment between ``P^A`` and ``P^{B->A}`` minimising the summed Euclidean
   distance (Hungarian algorithm, ``scipy.optimize.linear_sum_assignment``; ``min(K_A, K_B)`` pairs).
   The distances are translation-invariant, so the same pairs match ``P^{A->B}`` with ``P^B``.
3. **Merge test** (Eq. 9): a matched pair ``(c, c')`` merges iff
   ``d(p^{B->A}_{c'}, p^A_c) < min(min_{i != j} d(p^A_i, p^A_j), min_{i != j} d(p^B_i, p^B_j))``.
   A domain with a single prototype has no intra-domain pair and contributes ``+inf`` to the minimum.
4. **Merged sets**: ``P^{A'}`` holds A's unmerged prototypes, B's unmerged translated prototypes and the
   midpoints ``(p^{B->A}_{c'} + p^A_c) / 2`` of the merged pairs, so ``|P^{A'}| = K_A + K_B - C_merged``.
   ``P^{B'}`` is the same set built in B's frame (it equals ``P^{A'}`` shifted by ``mean_B - mean_A``).

Row layout of the merged sets (a set has no order; this one makes the index maps trivial):

* ``P^{A'}``: rows ``0..K_A-1`` are A's prototypes, a merged one replaced by its pair's midpoint; rows
  ``K_A..`` are the translated prototypes of B's *unmerged* prototypes, in B's index order.
* ``P^{B'}``: rows ``0..K_B-1`` are B's prototypes (merged ones replaced by the midpoint in B's frame);
  rows ``K_B..`` are A's unmerged prototypes translated to B, in A's index order.

The index maps ``a_to_a``, ``b_to_a`` (``[K_A]``, ``[K_B]`` rows of ``P^{A'}``) and ``a_to_b``, ``b_to_b``
(rows of ``P^{B'}``) tell where each original prototype ended up; two prototypes of a merged pair map to the
same row. Everything is numpy; distances are computed in float64, prototypes are returned in float32.

Example::

    res = merge_prototypes(p_a, p_b, mean_a, mean_b)
    res.num_merged                      # C_merged
    res.proto_a.shape                   # (K_A + K_B - C_merged, D) = P^{A'}
    res.proto_a[res.b_to_a[j]]          # where B's prototype j lives in P^{A'}
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = [
    "MERGE_RULES",
    "MergeResult",
    "hungarian_match",
    "merge_prototypes",
    "merge_threshold",
    "min_intra_distance",
    "nearest_intra_distance",
    "pairwise_euclidean",
    "translate_prototypes",
]


def pairwise_euclidean(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``[N, M]`` float64 Euclidean distances between the rows of ``a`` ``[N, D]`` and ``b`` ``[M, D]``."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    sq = (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T
    return np.sqrt(np.maximum(sq, 0.0))


def translate_prototypes(
    prototypes: np.ndarray, source_mean: np.ndarray, target_mean: np.ndarray
) -> np.ndarray:
    """Eq. 8: move prototypes of a source domain into a target domain's frame, ``p + (mean_T - mean_S)``.

    Args:
        prototypes: ``[K, D]`` prototypes of the source domain.
        source_mean: ``[D]`` mean of the source domain's memory bank (``\\overline{M^S}``).
        target_mean: ``[D]`` mean of the target domain's memory bank (``\\overline{M^T}``).

    Returns:
        ``[K, D]`` float32 translated prototypes.
    """
    shift = np.asarray(target_mean, dtype=np.float64) - np.asarray(source_mean, dtype=np.float64)
    return (np.asarray(prototypes, dtype=np.float64) + shift[None, :]).astype(np.float32)


def min_intra_distance(prototypes: np.ndarray) -> float:
    """``min_{i != j} d(p_i, p_j)`` over the rows of ``prototypes``; ``+inf`` for fewer than two rows."""
    k = len(prototypes)
    if k < 2:
        return float("inf")
    dist = pairwise_euclidean(prototypes, prototypes)
    dist[np.arange(k), np.arange(k)] = np.inf
    return float(dist.min())


def merge_threshold(p_a: np.ndarray, p_b: np.ndarray) -> float:
    """Right-hand side of Eq. 9: ``min(min_{i!=j} d(p^A_i, p^A_j), min_{i!=j} d(p^B_i, p^B_j))``."""
    return min(min_intra_distance(p_a), min_intra_distance(p_b))


def hungarian_match(p_a: np.ndarray, p_b_in_a: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One-to-one matching of ``P^A`` with ``P^{B->A}`` on the Euclidean cost (Hungarian algorithm).

    Returns ``(rows, cols, dist)``: ``min(K_A, K_B)`` pairs ``(p^A_rows[k], p^{B->A}_cols[k])`` sorted by
    ``rows`` and their distances ``dist`` (float64), minimising ``sum(dist)``.
    """
    if len(p_a) == 0 or len(p_b_in_a) == 0:
        empty = np.zeros(0, dtype=np.int64)
        return empty, empty.copy(), np.zeros(0)
    cost = pairwise_euclidean(p_a, p_b_in_a)
    rows, cols = linear_sum_assignment(cost)
    return rows.astype(np.int64), cols.astype(np.int64), cost[rows, cols]


@dataclass(frozen=True)
class MergeResult:
    """The unified prototypical structure of two domains (see the module docstring for the row layout).

    Attributes:
        proto_a: ``[K_A + K_B - C, D]`` float32, ``P^{A'}`` in A's frame.
        proto_b: ``[K_A + K_B - C, D]`` float32, ``P^{B'}`` in B's frame.
        a_to_a, b_to_a: ``[K_A]``, ``[K_B]`` int64 rows of ``P^{A'}`` holding each A / B prototype.
        a_to_b, b_to_b: ``[K_A]``, ``[K_B]`` int64 rows of ``P^{B'}`` holding each A / B prototype.
        merged_pairs: ``[C, 2]`` int64 ``(index in P^A, index in P^B)`` of the pairs passing Eq. 9.
        matched_pairs: ``[min(K_A, K_B), 2]`` every Hungarian pair, merged or not.
        matched_dist: ``[min(K_A, K_B)]`` float64 Euclidean distance of each Hungarian pair.
        threshold: right-hand side of Eq. 9.
        shift_b_to_a: ``[D]`` float64 ``mean_A - mean_B`` (Eq. 8).
    """

    proto_a: np.ndarray
    proto_b: np.ndarray
    a_to_a: np.ndarray
    b_to_a: np.ndarray
    a_to_b: np.ndarray
    b_to_b: np.ndarray
    merged_pairs: np.ndarray
    matched_pairs: np.ndarray
    matched_dist: np.ndarray
    threshold: float
    shift_b_to_a: np.ndarray

    @property
    def num_merged(self) -> int:
        """``C^oplus``, the number of merged pairs."""
        return int(len(self.merged_pairs))

    @property
    def k_a(self) -> int:
        return int(len(self.a_to_a))

    @property
    def k_b(self) -> int:
        return int(len(self.b_to_b))

    @property
    def merged_a(self) -> np.ndarray:
        """``[K_A]`` bool, True for A's prototypes in ``P^{A,oplus}``."""
        mask = np.zeros(self.k_a, dtype=bool)
        mask[self.merged_pairs[:, 0]] = True
        return mask

    @property
    def merged_b(self) -> np.ndarray:
        """``[K_B]`` bool, True for B's prototypes in ``P^{B,oplus}``."""
        mask = np.zeros(self.k_b, dtype=bool)
        mask[self.merged_pairs[:, 1]] = True
        return mask

    def partner_of_a(self) -> np.ndarray:
        """``[K_A]`` int64: the B prototype merged with each A prototype, ``-1`` where unmerged."""
        out = np.full(self.k_a, -1, dtype=np.int64)
        out[self.merged_pairs[:, 0]] = self.merged_pairs[:, 1]
        return out


def nearest_intra_distance(prototypes: np.ndarray) -> np.ndarray:
    """``[K]``: each prototype's distance to its nearest other prototype of its set (``+inf`` if alone)."""
    k = len(prototypes)
    if k < 2:
        return np.full(k, np.inf)
    dist = pairwise_euclidean(prototypes, prototypes)
    dist[np.arange(k), np.arange(k)] = np.inf
    return dist.min(axis=1)


#: Readings of Eq. 9's right-hand side: ``global`` (literal: one threshold, the smallest intra-domain
#: prototype distance of either domain) or ``pair`` (each matched pair against its own prototypes' nearest
#: neighbours in their domains).
MERGE_RULES = ("global", "pair")


def merge_prototypes(
    p_a: np.ndarray, p_b: np.ndarray, mean_a: np.ndarray, mean_b: np.ndarray, rule: str = "global"
) -> MergeResult:
    """Eqs. 8–9 and the merged sets ``P^{A'}``, ``P^{B'}`` of paper-spec §2.2(d).

    Args:
        p_a: ``[K_A, D]`` prototypes of domain A (K-means centres of ``M^A``).
        p_b: ``[K_B, D]`` prototypes of domain B.
        mean_a: ``[D]`` mean of ``M^A``; ``mean_b``: ``[D]`` mean of ``M^B``.
        rule: ``"global"`` — Eq. 9 as printed, ``d(p^{B->A}_{c'}, p^A_c) < min(min_{i!=j} d(p^A_i, p^A_j),
            min_{i!=j} d(p^B_i, p^B_j))``: one threshold, set by the two closest prototypes of either domain
            (with more clusters than classes, two centroids inside one class set it and almost nothing
            merges); ``"pair"`` — each matched pair ``(c, c')`` against its own prototypes' nearest
            neighbours,
            ``d(p^{B->A}_{c'}, p^A_c) < min(min_{j!=c} d(p^A_c, p^A_j), min_{j!=c'} d(p^B_{c'}, p^B_j))``:
            the pair merges when the two prototypes are closer to each other than either is to its own
            domain's nearest other prototype (the same min-over-distances test, localised to the pair).

    Returns:
        :class:`MergeResult`; ``|P^{A'}| = |P^{B'}| = K_A + K_B - C_merged``. ``threshold`` is the global
        right-hand side under both rules (for the record).
    """
    if rule not in MERGE_RULES:
        raise ValueError(f"rule must be one of {MERGE_RULES}, got {rule!r}")
    p_a = np.asarray(p_a, dtype=np.float64)
    p_b = np.asarray(p_b, dtype=np.float64)
    if p_a.ndim != 2 or p_b.ndim != 2 or p_a.shape[1] != p_b.shape[1]:
        raise ValueError(f"prototypes must be [K, D] with one D, got {p_a.shape} and {p_b.shape}")
    k_a, k_b = len(p_a), len(p_b)
    shift = np.asarray(mean_a, dtype=np.float64) - np.asarray(mean_b, dtype=np.float64)  # B -> A (Eq. 8)
    p_b_in_a = p_b + shift
    p_a_in_b = p_a - shift

    rows, cols, dist = hungarian_match(p_a, p_b_in_a)
    threshold = merge_threshold(p_a, p_b)
    if rule == "global":
        keep = dist < threshold  # Eq. 9 (strict)
    else:
        keep = dist < np.minimum(nearest_intra_distance(p_a)[rows], nearest_intra_distance(p_b)[cols])
    merged = np.stack([rows[keep], cols[keep]], axis=1) if keep.any() else np.zeros((0, 2), dtype=np.int64)

    merged_b_mask = np.zeros(k_b, dtype=bool)
    merged_b_mask[merged[:, 1]] = True
    merged_a_mask = np.zeros(k_a, dtype=bool)
    merged_a_mask[merged[:, 0]] = True
    unmerged_b = np.flatnonzero(~merged_b_mask)
    unmerged_a = np.flatnonzero(~merged_a_mask)

    # P^{A'}: A's rows (midpoints where merged), then B's unmerged prototypes translated into A.
    proto_a = np.concatenate([p_a.copy(), p_b_in_a[unmerged_b]])
    proto_a[merged[:, 0]] = 0.5 * (p_a[merged[:, 0]] + p_b_in_a[merged[:, 1]])
    a_to_a = np.arange(k_a, dtype=np.int64)
    b_to_a = np.empty(k_b, dtype=np.int64)
    b_to_a[unmerged_b] = k_a + np.arange(len(unmerged_b))
    b_to_a[merged[:, 1]] = merged[:, 0]

    # P^{B'}: B's rows (midpoints in B's frame where merged), then A's unmerged prototypes translated into B.
    proto_b = np.concatenate([p_b.copy(), p_a_in_b[unmerged_a]])
    proto_b[merged[:, 1]] = 0.5 * (p_b[merged[:, 1]] + p_a_in_b[merged[:, 0]])
    b_to_b = np.arange(k_b, dtype=np.int64)
    a_to_b = np.empty(k_a, dtype=np.int64)
    a_to_b[unmerged_a] = k_b + np.arange(len(unmerged_a))
    a_to_b[merged[:, 0]] = merged[:, 1]

    return MergeResult(
        proto_a=proto_a.astype(np.float32),
        proto_b=proto_b.astype(np.float32),
        a_to_a=a_to_a,
        b_to_a=b_to_a,
        a_to_b=a_to_b,
        b_to_b=b_to_b,
        merged_pairs=merged.astype(np.int64),
        matched_pairs=np.stack([rows, cols], axis=1),
        matched_dist=dist,
        threshold=float(threshold),
        shift_b_to_a=shift,
    )

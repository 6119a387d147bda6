"""Prototype translation (Eq. 8), Hungarian matching, merge test (Eq. 9), merged sets P^{A'} and P^{B'}."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from u2cdr_bench.blocks.merging import (
    hungarian_match,
    merge_prototypes,
    merge_threshold,
    min_intra_distance,
    pairwise_euclidean,
    translate_prototypes,
)


def test_translate_eq8_by_difference_of_memory_means():
    p_b = np.array([[1.0, 0.0], [3.0, 2.0]])
    out = translate_prototypes(p_b, source_mean=np.array([1.0, 1.0]), target_mean=np.array([0.0, 1.0]))
    np.testing.assert_allclose(out, [[0.0, 0.0], [2.0, 2.0]])
    assert out.dtype == np.float32


def test_pairwise_and_min_intra_distance():
    p = np.array([[0.0, 0.0], [3.0, 4.0], [0.0, 1.0]])
    np.testing.assert_allclose(pairwise_euclidean(p[:1], p), [[0.0, 5.0, 1.0]])
    assert min_intra_distance(p) == pytest.approx(1.0)
    assert min_intra_distance(p[:1]) == math.inf
    assert merge_threshold(p, np.array([[10.0, 0.0], [10.0, 0.5]])) == pytest.approx(0.5)


def test_hungarian_is_one_to_one_and_beats_greedy():
    # Greedy nearest would give both A prototypes to B's prototype 0; the optimal assignment does not.
    p_a = np.array([[0.0, 0.0], [2.0, 0.0]])
    p_b = np.array([[1.0, 0.0], [3.5, 0.0]])
    rows, cols, dist = hungarian_match(p_a, p_b)
    assert rows.tolist() == [0, 1] and cols.tolist() == [0, 1]
    np.testing.assert_allclose(dist, [1.0, 1.5])
    # brute force over all one-to-one assignments of a rectangular random case
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(3, 4)), rng.normal(size=(5, 4))
    rows, cols, dist = hungarian_match(a, b)
    cost = pairwise_euclidean(a, b)
    best = min(
        sum(cost[i, j] for i, j in zip(range(3), perm, strict=True))
        for perm in itertools.permutations(range(5), 3)
    )
    assert len(set(cols.tolist())) == 3 and dist.sum() == pytest.approx(best)


def test_merge_eq9_one_pair_merges_one_does_not_with_translation():
    # Domain B lives at +(10, 10); its memory mean is shifted by the same amount, so Eq. 8 undoes it.
    p_a = np.array([[0.0, 0.0], [4.0, 0.0]])
    p_b = np.array([[0.5, 0.0], [4.0, 5.0]]) + 10.0
    mean_a, mean_b = np.array([0.0, 0.0]), np.array([10.0, 10.0])
    res = merge_prototypes(p_a, p_b, mean_a, mean_b)
    # threshold = min(d(a0, a1) = 4, d(b0, b1) = sqrt(3.5^2 + 5^2)) = 4
    assert res.threshold == pytest.approx(4.0)
    # Hungarian pairs (0, 0) at distance 0.5 (< 4: merged) and (1, 1) at distance 5 (not merged)
    assert res.matched_pairs.tolist() == [[0, 0], [1, 1]]
    np.testing.assert_allclose(res.matched_dist, [0.5, 5.0])
    assert res.merged_pairs.tolist() == [[0, 0]] and res.num_merged == 1
    # P^{A'}: midpoint, A's unmerged prototype, B's unmerged prototype translated into A
    np.testing.assert_allclose(res.proto_a, [[0.25, 0.0], [4.0, 0.0], [4.0, 5.0]])
    # P^{B'}: midpoint in B's frame, B's unmerged prototype, A's unmerged prototype translated into B
    np.testing.assert_allclose(res.proto_b, [[10.25, 10.0], [14.0, 15.0], [14.0, 10.0]])
    assert res.a_to_a.tolist() == [0, 1] and res.b_to_a.tolist() == [0, 2]
    assert res.a_to_b.tolist() == [0, 2] and res.b_to_b.tolist() == [0, 1]
    assert res.merged_a.tolist() == [True, False] and res.merged_b.tolist() == [True, False]
    assert res.partner_of_a().tolist() == [0, -1]
    np.testing.assert_allclose(res.shift_b_to_a, [-10.0, -10.0])


def test_merge_eq9_is_strict_no_merge_at_equality():
    # d(a0, b0) = 1 equals the threshold min(d(a0, a1) = 1, d(b0, b1)) = 1: Eq. 9's "<" rejects it.
    p_a = np.array([[0.0, 0.0], [1.0, 0.0]])
    p_b = np.array([[0.0, 1.0], [5.0, 5.0]])
    res = merge_prototypes(p_a, p_b, np.zeros(2), np.zeros(2))
    assert res.threshold == pytest.approx(1.0)
    assert res.num_merged == 0
    assert len(res.proto_a) == len(res.proto_b) == 4
    np.testing.assert_allclose(res.proto_a, np.concatenate([p_a, p_b]))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_merged_set_sizes_and_frames(seed):
    rng = np.random.default_rng(seed)
    p_a = rng.normal(size=(5, 3)) * 3
    p_b = np.concatenate([p_a[:3] + rng.normal(scale=0.01, size=(3, 3)), rng.normal(size=(4, 3)) * 3]) + 2.0
    res = merge_prototypes(p_a, p_b, np.zeros(3), np.full(3, 2.0))
    c = res.num_merged
    assert c >= 3  # the three near-copies merge
    assert res.proto_a.shape == (5 + 7 - c, 3) and res.proto_b.shape == (5 + 7 - c, 3)
    # P^{B'} is P^{A'} seen from B: the same rows shifted by mean_B - mean_A
    np.testing.assert_allclose(res.proto_b[res.a_to_b], res.proto_a[res.a_to_a] + 2.0, atol=1e-5)
    np.testing.assert_allclose(res.proto_b[res.b_to_b], res.proto_a[res.b_to_a] + 2.0, atol=1e-5)
    # each merged pair shares one row; every row is hit
    for i, j in res.merged_pairs:
        assert res.a_to_a[i] == res.b_to_a[j] and res.a_to_b[i] == res.b_to_b[j]
    assert set(res.a_to_a.tolist()) | set(res.b_to_a.tolist()) == set(range(len(res.proto_a)))
    assert set(res.a_to_b.tolist()) | set(res.b_to_b.tolist()) == set(range(len(res.proto_b)))


def test_single_prototype_domain_uses_the_other_threshold():
    p_a = np.array([[0.0, 0.0]])
    p_b = np.array([[0.5, 0.0], [3.0, 0.0]])
    res = merge_prototypes(p_a, p_b, np.zeros(2), np.zeros(2))
    assert res.threshold == pytest.approx(2.5)
    assert res.merged_pairs.tolist() == [[0, 0]]
    np.testing.assert_allclose(res.proto_a, [[0.25, 0.0], [3.0, 0.0]])


def test_bad_shapes_raise():
    with pytest.raises(ValueError):
        merge_prototypes(np.zeros((2, 3)), np.zeros((2, 4)), np.zeros(3), np.zeros(4))


def test_pair_rule_merges_what_the_global_threshold_blocks():
    """Eq. 9 per pair (``rule="pair"``) vs the literal global threshold, by hand.

    A = {(0,0), (0.2,0), (10,0)}, B = {(0.1,0), (10.5,0), (-30,0)}, equal means (no translation).
    Hungarian pairs (total 30.6): a0-b2 (30), a1-b0 (0.1), a2-b1 (0.5). Global threshold = min(0.2, 10.4) =
    0.2, so only a1-b0 merges. Per pair: a2-b1 is 0.5 apart while a2's nearest A prototype is 9.8 away and
    b1's nearest B prototype 10.4, so it merges too; a0-b2 (30 > min(0.2, 30.1)) does not.
    """
    from u2cdr_bench.blocks.merging import merge_prototypes

    pa = np.array([[0.0, 0.0], [0.2, 0.0], [10.0, 0.0]])
    pb = np.array([[0.1, 0.0], [10.5, 0.0], [-30.0, 0.0]])
    mean = np.zeros(2)
    literal = merge_prototypes(pa, pb, mean, mean)
    assert literal.merged_pairs.tolist() == [[1, 0]]
    assert literal.threshold == pytest.approx(0.2)
    pair = merge_prototypes(pa, pb, mean, mean, rule="pair")
    assert pair.merged_pairs.tolist() == [[1, 0], [2, 1]]
    assert pair.matched_pairs.tolist() == [[0, 2], [1, 0], [2, 1]]
    assert len(pair.proto_a) == 3 + 3 - 2
    np.testing.assert_allclose(pair.proto_a[2], [10.25, 0.0])
    with pytest.raises(ValueError, match="rule must be one of"):
        merge_prototypes(pa, pb, mean, mean, rule="nope")

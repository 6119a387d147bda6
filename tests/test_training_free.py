"""Training-free rows (u2cdr_bench.methods.training_free, issue 16), each against a hand computation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from u2cdr_bench.data.types import DomainSamples
from u2cdr_bench.methods.base import FitContext
from u2cdr_bench.metrics import map_all


def _ctx(num_classes=None) -> FitContext:
    return FitContext(
        seed=0,
        encoder_factory=lambda **_: None,
        input_kind="features",
        input_shape=(2,),
        profile="features",
        num_classes=num_classes,
    )


def _domains(xa, ya, xb, yb):
    ya, yb = np.asarray(ya), np.asarray(yb)
    names = tuple(str(i) for i in range(int(max(ya.max(), yb.max())) + 1))
    da = DomainSamples("a", torch.tensor(xa, dtype=torch.float32), np.asarray(ya), names, kind="features")
    db = DomainSamples("b", torch.tensor(xb, dtype=torch.float32), np.asarray(yb), names, kind="features")
    return da.unlabeled(), db.unlabeled()


def _scores(name, xa, ya, xb, yb, hp=None, num_classes=None):
    from u2cdr_bench.methods import get_method

    method = get_method(name)(_ctx(num_classes), hp or {})
    ua, ub = _domains(xa, ya, xb, yb)
    method.fit(ua, ub)
    qa, gb = method.embed(ua), method.embed(ub)
    return map_all(qa, np.asarray(ya), gb, np.asarray(yb)), qa, gb, method


def test_centring_fixes_a_shifted_domain_by_hand():
    """A = {(1,0): c0, (-1,0): c1}; B = A shifted by (-2, 0) = {(-1,0): c0, (-3,0): c1}.

    Raw Euclidean: the c0 query ranks [B0, B1] (AP 1); the c1 query at (-1,0) sits on B0 (distance 0) and
    ranks [B0, B1] with its match second (AP 1/2): mAP 75. Removing each domain's mean puts both domains at
    {(1,0), (-1,0)}: mAP 100.
    """
    xa, ya = [[1.0, 0.0], [-1.0, 0.0]], [0, 1]
    xb, yb = [[-1.0, 0.0], [-3.0, 0.0]], [0, 1]
    assert _scores("pretrained", xa, ya, xb, yb)[0] == pytest.approx(75.0)
    score, qa, gb, _ = _scores("center-l2", xa, ya, xb, yb)
    assert score == pytest.approx(100.0)
    np.testing.assert_allclose(qa, [[1, 0], [-1, 0]], atol=1e-7)
    np.testing.assert_allclose(gb, [[1, 0], [-1, 0]], atol=1e-7)
    # cosine on the raw inputs: (-1,0) and (-3,0) point the same way, so the c1 query ties -> AP 1/2 or 1
    cos, qa, _, _ = _scores("pretrained-cosine", xa, ya, xb, yb)
    np.testing.assert_allclose(np.linalg.norm(qa, axis=1), 1.0, atol=1e-7)
    assert cos < 100.0


def test_center_whiten_gives_identity_covariance_without_shrinkage():
    rng = np.random.default_rng(0)
    xa = rng.normal(size=(300, 3)) * [5.0, 1.0, 0.2] + 3
    xb = rng.normal(size=(300, 3)) * [5.0, 1.0, 0.2] - 1
    ya = yb = np.zeros(300, dtype=int)
    _, _, _, method = _scores("center-whiten", xa, ya, xb, yb, hp={"shrinkage": 0.0, "dims": 3})
    pooled = np.concatenate([xa - xa.mean(0), xb - xb.mean(0)])
    z = pooled @ method._proj
    np.testing.assert_allclose(z.T @ z / (len(z) - 1), np.eye(3), atol=1e-8)
    # full shrinkage: the whitening is a rotation times one scale, so it ranks exactly as center-l2
    _, qa, gb, _ = _scores("center-whiten", xa, ya, xb, yb, hp={"shrinkage": 1.0, "dims": 3})
    _, qa2, gb2, _ = _scores("center-l2", xa, ya, xb, yb)
    np.testing.assert_allclose(qa @ gb.T, qa2 @ gb2.T, atol=1e-5)
    # full shrinkage with fewer dims: the kept axes are the pooled covariance's leading ones (here the first
    # coordinate, variance 25 against 1 and 0.04), not an arbitrary basis of the isotropic Sigma_s
    _, _, _, method = _scores("center-whiten", xa, ya, xb, yb, hp={"shrinkage": 1.0, "dims": 1})
    axis = method._proj[:, 0] / np.linalg.norm(method._proj[:, 0])
    assert abs(axis[0]) > 0.999, axis


def test_kmeans_match_shares_matched_anchors_across_domains():
    """Three classes in A, two of them in B (partial-like); B is A scaled by 0.5, stretched and shifted.

    Each domain's k-means (K given: 3 and 2) finds its classes, the Hungarian matching pairs the two shared
    classes (M = min(3, 2) = 2 anchors), and both domains are expressed by their similarities to their own
    matched anchors, so the shared classes retrieve each other perfectly.
    """
    rng = np.random.default_rng(1)
    means = np.array([[4.0, 0.0], [0.0, 4.0], [-4.0, -4.0]])
    ya = np.repeat([0, 1, 2], 30)
    yb = np.repeat([0, 1], 20)
    xa = means[ya] + 0.3 * rng.normal(size=(90, 2))
    xb = (means[yb] + 0.3 * rng.normal(size=(40, 2))) * [0.5, 0.8] + [10.0, 2.0]
    score, qa, gb, method = _scores("kmeans-match", xa, ya, xb, yb, num_classes=(3, 2))
    assert method.info["k"] == [3, 2] and method.info["matched"] == 2
    assert qa.shape == (90, 2) and gb.shape == (40, 2)
    assert score == pytest.approx(100.0)  # over the shared-class queries (class 2 has no gallery match)
    # matched anchor pairs belong to the same class: a class's members are most similar to its anchor
    for c in (0, 1):
        assert np.argmax(qa[ya == c].mean(0)) == np.argmax(gb[yb == c].mean(0))
    with pytest.raises(ValueError, match="fitted on"):
        from u2cdr_bench.data.types import DomainSamples as DS

        method.embed(DS("c", torch.zeros(2, 2), np.zeros(2, dtype=int), ("0",), kind="features").unlabeled())


def test_listed_in_their_own_group_before_the_trained_methods():
    from u2cdr_bench.catalog import method_groups
    from u2cdr_bench.methods import method_names

    group, rows = method_groups()[0]
    names = ["pretrained", "pretrained-cosine", "center-l2", "center-whiten", "kmeans-match"]
    assert group == "training-free" and [n for n, _ in rows] == names
    assert method_names()[:5] == names

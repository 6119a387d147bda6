"""The features-mode head that keeps the input's structure at initialisation (nets.StructureHead)."""

from __future__ import annotations

import numpy as np
import torch

from u2cdr_bench.metrics import map_all
from u2cdr_bench.nets import MLPHead, StructureHead, make_encoder_factory


def _two_domains_in_a_subspace(rank: int = 40, dim: int = 300, n: int = 400, seed: int = 0):
    """Two domains of 5 classes whose inputs lie in one ``rank``-dimensional affine subspace of R^dim."""
    rng = np.random.default_rng(seed)
    basis = np.linalg.qr(rng.normal(size=(dim, rank)))[0].T  # [rank, dim] orthonormal rows
    offset = rng.normal(size=dim) * 3
    means = rng.normal(size=(5, rank)) * 2
    ya, yb = rng.integers(5, size=n), rng.integers(5, size=n)
    za = means[ya] + rng.normal(size=(n, rank))
    zb = means[yb] + rng.normal(size=(n, rank)) + 1.5  # a domain shift inside the subspace
    return (za @ basis + offset).astype(np.float32), ya, (zb @ basis + offset).astype(np.float32), yb


def test_initial_output_is_the_centred_pca_projection():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 20)).astype(np.float32) * np.linspace(5, 0.1, 20).astype(np.float32)
    head = StructureHead(20, hidden=16, out_dim=8)
    head.init_from_data(torch.from_numpy(x))
    xd = x.astype(np.float64) - x.astype(np.float64).mean(0)
    _, _, vt = np.linalg.svd(xd, full_matrices=False)
    got = head(torch.from_numpy(x)).detach().double().numpy()
    want = xd @ vt[:8].T
    np.testing.assert_allclose(np.abs(got), np.abs(want), atol=1e-4)  # axes up to sign
    # each axis's sign is fixed: the largest entry of every axis is positive
    w = head.linear.weight.detach().numpy()
    assert np.all(w[np.arange(8), np.abs(w).argmax(1)] > 0)
    # the residual MLP starts at zero, so the gradient reaches both paths
    assert torch.count_nonzero(head.mlp.net[-1].weight) == 0
    head(torch.from_numpy(x)).pow(2).sum().backward()
    assert head.mlp.net[-1].weight.grad.abs().sum() > 0 and head.linear.weight.grad.abs().sum() > 0


def test_retrieval_at_initialisation_equals_the_raw_features_when_they_fit_the_head():
    xa, ya, xb, yb = _two_domains_in_a_subspace()
    head = StructureHead(xa.shape[1], hidden=64, out_dim=128)
    head.init_from_data(torch.from_numpy(np.concatenate([xa, xb])))
    with torch.no_grad():
        fa, fb = head(torch.from_numpy(xa)).numpy(), head(torch.from_numpy(xb)).numpy()
    raw = map_all(xa, ya, xb, yb)
    assert abs(map_all(fa, ya, fb, yb) - raw) < 1e-3  # distances kept exactly (rank 40 <= 128)
    # the old random MLP head does not keep them
    torch.manual_seed(0)
    rand = MLPHead(xa.shape[1], 64, 128)
    with torch.no_grad():
        ra, rb = rand(torch.from_numpy(xa)).numpy(), rand(torch.from_numpy(xb)).numpy()
    assert abs(map_all(ra, ya, rb, yb) - raw) > 1e-3


def _top_axes(x: np.ndarray, k: int = 10) -> np.ndarray:
    x = x.astype(np.float64)
    return np.linalg.svd(x - x.mean(0), full_matrices=False)[2][:k]


def test_fit_initialises_the_head_from_both_domains_without_labels():
    from u2cdr_bench.data.types import DomainSamples
    from u2cdr_bench.methods import get_method
    from u2cdr_bench.methods.base import FitContext

    xa, ya, xb, yb = _two_domains_in_a_subspace(n=120)
    ctx = FitContext(
        seed=0,
        encoder_factory=make_encoder_factory("features", (xa.shape[1],)),
        input_kind="features",
        input_shape=(xa.shape[1],),
        epochs_scale=0.01,
        profile="features",
    )
    da = DomainSamples("a", torch.from_numpy(xa), ya, ("0", "1", "2", "3", "4"), kind="features")
    db = DomainSamples("b", torch.from_numpy(xb), yb, ("0", "1", "2", "3", "4"), kind="features")
    # a method that trains on both domains: the PCA of the pooled inputs
    method = get_method("dann")(ctx, {"lr": 0.0})
    assert isinstance(method.encoder.head, StructureHead)
    assert torch.count_nonzero(method.encoder.head.linear.weight) == 0
    method.fit(da.unlabeled(), db.unlabeled())
    w = method.encoder.head.linear.weight.detach().double().numpy()
    np.testing.assert_allclose(np.abs(w[:10] @ _top_axes(np.concatenate([xa, xb])).T), np.eye(10), atol=1e-3)
    # source-only never uses B, not even for its start: the PCA of A alone
    only_a = get_method("source-only")(ctx, {"lr": 0.0})
    only_a.fit(da.unlabeled(), db.unlabeled())
    w = only_a.encoder.head.linear.weight.detach().double().numpy()
    np.testing.assert_allclose(np.abs(w[:10] @ _top_axes(xa).T), np.eye(10), atol=1e-3)
    # the random head stays available under its name
    old = get_method("source-only")(ctx, {"head": "random"})
    assert type(old.encoder.head) is MLPHead

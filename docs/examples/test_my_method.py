"""Label hygiene of the example plug-in: shuffled labels give bitwise-identical embeddings."""

from __future__ import annotations

import numpy as np
import torch
from my_method import TwoViewContrast

from u2cdr_bench.data.types import DomainSamples
from u2cdr_bench.methods.base import FitContext
from u2cdr_bench.nets import make_encoder_factory


def _domain(name: str, labels: np.ndarray, seed: int) -> DomainSamples:
    rng = np.random.default_rng(seed)
    x = (rng.standard_normal((len(labels), 16)) + labels[:, None]).astype(np.float32)
    views = np.stack([x + 0.1 * rng.standard_normal(x.shape).astype(np.float32) for _ in range(2)])
    return DomainSamples(
        name, torch.from_numpy(x), labels, ("a", "b", "c"), "features", views=torch.from_numpy(views)
    )


def _fit_embed(a: DomainSamples, b: DomainSamples) -> tuple[np.ndarray, np.ndarray]:
    ctx = FitContext(
        seed=7,
        encoder_factory=make_encoder_factory("features", (16,)),
        input_kind="features",
        input_shape=(16,),
        epochs_scale=0.2,
        profile="features",
    )
    method = TwoViewContrast(ctx)
    ua, ub = a.unlabeled(), b.unlabeled()  # what a method receives: no labels by construction
    method.fit(ua, ub)
    return method.embed(ua), method.embed(ub)


def test_labels_never_reach_the_method() -> None:
    labels_a, labels_b = np.arange(60) % 3, np.arange(48) % 3
    a, b = _domain("A", labels_a, 0), _domain("B", labels_b, 1)
    fa, fb = _fit_embed(a, b)
    # the same inputs with shuffled labels: bitwise-identical embeddings
    perm_a = np.random.default_rng(1).permutation(labels_a)
    perm_b = np.random.default_rng(2).permutation(labels_b)
    pa, pb = _fit_embed(_relabel(a, perm_a), _relabel(b, perm_b))
    assert np.array_equal(fa, pa) and np.array_equal(fb, pb)
    assert fa.shape == (60, 128) and np.allclose(np.linalg.norm(fa, axis=1), 1.0, atol=1e-5)


def _relabel(d: DomainSamples, labels: np.ndarray) -> DomainSamples:
    return DomainSamples(d.domain, d.x, labels, d.class_names, d.kind, views=d.views)

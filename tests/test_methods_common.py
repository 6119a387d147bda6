"""Registry-wide method invariants: no labels reach a method, same seed -> same numbers, shapes.

Every registered method is fitted for a tiny schedule on small synthetic domains in both input modes.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from u2cdr_bench.data.augment import DigitAugment
from u2cdr_bench.data.types import DomainSamples, UnlabeledDomain
from u2cdr_bench.methods import get_method, method_names
from u2cdr_bench.methods.base import FitContext
from u2cdr_bench.nets import make_encoder_factory

CLASSES = tuple(str(i) for i in range(4))


def _image_domain(name: str, n: int, seed: int, shift: float) -> DomainSamples:
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    protos = torch.rand(4, 1, 16, 16, generator=torch.Generator().manual_seed(7))
    x = (protos[labels] + shift + 0.1 * torch.rand(n, 1, 16, 16, generator=g)).clamp(0, 1)
    return DomainSamples(
        name,
        x,
        labels.numpy(),
        CLASSES,
        "image",
        augment=DigitAugment(),
        strong_augment=DigitAugment(strong=True),
    )


def _feature_domain(name: str, n: int, seed: int, shift: float) -> DomainSamples:
    rng = np.random.default_rng(seed)
    centers = np.random.default_rng(3).standard_normal((4, 16)) * 3
    labels = np.arange(n) % 4
    x = centers[labels] + shift + rng.standard_normal((n, 16))
    views = np.stack([x + 0.3 * rng.standard_normal(x.shape) for _ in range(2)])
    return DomainSamples(
        name,
        torch.tensor(x, dtype=torch.float32),
        labels,
        CLASSES,
        "features",
        views=torch.tensor(views, dtype=torch.float32),
        extra_views={"strong": torch.tensor(views[::-1].copy(), dtype=torch.float32)},
    )


def _fit_embed(
    method: str, a: DomainSamples, b: DomainSamples, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    cls = get_method(method)
    ctx = FitContext(
        seed=seed,
        encoder_factory=make_encoder_factory(a.kind, tuple(a.x.shape[1:])),
        input_kind=a.kind,
        input_shape=tuple(a.x.shape[1:]),
        epochs_scale=0.02,
        profile="digits" if a.kind == "image" else "features",
        num_classes=(4, 4) if cls.needs_num_classes else None,
    )
    m = cls(ctx)
    ua, ub = a.unlabeled(), b.unlabeled()
    m.fit(ua, ub)
    return m.embed(ua), m.embed(ub)


def _permute_labels(d: DomainSamples, seed: int) -> DomainSamples:
    perm = np.random.default_rng(seed).permutation(len(d))
    return DomainSamples(
        d.domain,
        d.x,
        d.labels[perm],
        d.class_names,
        d.kind,
        d.views,
        d.augment,
        d.strong_augment,
        d.extra_views,
    )


def test_unlabeled_domain_cannot_carry_labels():
    d = _feature_domain("a", 40, 0, 0.0)
    u = d.unlabeled()
    assert "labels" not in UnlabeledDomain.__slots__
    with pytest.raises(AttributeError):
        u.labels = d.labels  # type: ignore[attr-defined]
    for slot in UnlabeledDomain.__slots__:
        value = getattr(u, slot)
        assert value is not d.labels
        if isinstance(value, np.ndarray):
            assert not np.shares_memory(value, d.labels)


@pytest.mark.parametrize("method", method_names())
def test_labels_never_matter_and_same_seed_same_numbers(method):
    a, b = _feature_domain("a", 48, 0, 0.0), _feature_domain("b", 40, 1, 0.5)
    fa, fb = _fit_embed(method, a, b, seed=3)
    # permuted labels: bitwise identical embeddings (labels never reach the method)
    pa, pb = _fit_embed(method, _permute_labels(a, 1), _permute_labels(b, 2), seed=3)
    assert np.array_equal(fa, pa) and np.array_equal(fb, pb)
    assert fa.shape[0] == 48 and fb.shape[0] == 40 and fa.shape[1] == fb.shape[1]
    assert np.isfinite(fa).all() and np.isfinite(fb).all()


@pytest.mark.parametrize("method", method_names())
def test_image_mode_fit_and_detector(method):
    a, b = _image_domain("a", 40, 0, 0.0), _image_domain("b", 36, 1, 0.1)
    fa, fb = _fit_embed(method, a, b, seed=5)
    fa2, _ = _fit_embed(method, a, b, seed=5)
    assert np.array_equal(fa, fa2)
    cls = get_method(method)
    ctx = FitContext(
        seed=5,
        encoder_factory=make_encoder_factory("image", (1, 16, 16)),
        input_kind="image",
        input_shape=(1, 16, 16),
        epochs_scale=0.02,
        profile="digits",
        num_classes=(4, 4) if cls.needs_num_classes else None,
    )
    m = cls(ctx)
    m.fit(a.unlabeled(), b.unlabeled())
    flags = m.detect_private(m.embed(a.unlabeled()), m.embed(b.unlabeled()))
    assert flags.dtype == bool and flags.shape == (40,)

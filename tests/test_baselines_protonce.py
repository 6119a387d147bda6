"""ProtoNCE baselines and the prototypes block: PCL's concentration and prototype loss against hand
computations, the data-scaled cluster counts, the warm-up, the variants, and a short fit."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from synthetic import mean_ap, synthetic_pair

import u2cdr_bench.baselines.protonce as protonce_mod
from u2cdr_bench.blocks.kmeans import KMeansResult
from u2cdr_bench.blocks.prototypes import (
    PrototypeLevel,
    build_prototypes,
    cluster_multi,
    concentration,
    proto_nce_multi,
)
from u2cdr_bench.methods import FitContext, get_method
from u2cdr_bench.nets import make_encoder_factory

D_IN = 32


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a shared 2-core machine: one intra-op thread is faster and avoids oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_method(name: str, num_classes=(4, 4), hparams: dict | None = None, seed: int = 0, progress=None):
    ctx = FitContext(
        seed=seed,
        encoder_factory=make_encoder_factory("features", (D_IN,)),
        input_kind="features",
        input_shape=(D_IN,),
        profile="features",
        num_classes=num_classes,
    )
    if progress is not None:
        ctx.progress = progress
    return get_method(name)(ctx, hparams)


def blobs(seed: int = 0, per: int = 30) -> tuple[np.ndarray, np.ndarray]:
    """Three well-separated 2-D blobs, ``[3 * per, 2]`` float32 and their blob ids."""
    rng = np.random.default_rng(seed)
    centres = np.array([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]])
    y = np.repeat(np.arange(3), per)
    return (centres[y] + rng.normal(0, 0.3, (3 * per, 2))).astype(np.float32), y


# ----- the prototypes block -------------------------------------------------------------------------
def test_concentration_hand_computation() -> None:
    feats = np.array([[0.0], [1.0], [2.0], [10.0], [11.0], [20.0]], dtype=np.float32)
    res = KMeansResult(np.array([[1.0], [10.5], [20.0]], np.float32), np.array([0, 0, 0, 1, 1, 2]), 0.0)
    a = (2.0 / 3.0) / math.log(3 + 10)  # mean distance (1 + 0 + 1) / 3 over log(Z + alpha)
    b = 0.5 / math.log(2 + 10)  # (0.5 + 0.5) / 2
    raw = concentration(feats, res, alpha=10.0, tau=None, clip=None)
    np.testing.assert_allclose(raw, [a, b, a], rtol=1e-6)  # singleton: the largest phi of the others
    # PCL: clip to the 10th..90th percentiles (sorted b, a, a: p10 = b + 0.2 (a - b), p90 = a), mean -> tau
    lo = b + 0.2 * (a - b)
    clipped = np.array([a, lo, a])
    np.testing.assert_allclose(concentration(feats, res, clip=(10.0, 90.0)), clipped, rtol=1e-6)
    scaled = concentration(feats, res, tau=0.2)
    np.testing.assert_allclose(scaled, 0.2 * clipped / clipped.mean(), rtol=1e-6)
    assert scaled.mean() == pytest.approx(0.2)
    # alpha enters through log(Z + alpha)
    np.testing.assert_allclose(
        concentration(feats, res, alpha=1.0, clip=None)[:2],
        [(2 / 3) / math.log(4), 0.5 / math.log(3)],
        rtol=1e-6,
    )


def test_concentration_all_singletons_falls_back_to_tau() -> None:
    feats = np.eye(3, dtype=np.float32)
    res = KMeansResult(feats.copy(), np.arange(3), 0.0)
    np.testing.assert_allclose(concentration(feats, res, tau=0.1), [0.1, 0.1, 0.1])


def test_cluster_multi_granularities_and_seed() -> None:
    x, y = blobs()
    results = cluster_multi(x, [3, 6], seed=5)
    assert [r.k for r in results] == [3, 6]
    coarse = results[0].assign
    # three clean blobs: each cluster of the coarsest level is exactly one blob
    assert sorted(len(set(coarse[y == b])) for b in range(3)) == [1, 1, 1]
    assert len(set(coarse)) == 3
    again = cluster_multi(torch.from_numpy(x), [3, 6], seed=5)
    for r1, r2 in zip(results, again, strict=True):
        np.testing.assert_array_equal(r1.assign, r2.assign)
        np.testing.assert_array_equal(r1.centroids, r2.centroids)
    with pytest.raises(ValueError):
        cluster_multi(x, [], seed=0)


def test_build_prototypes_normalised_with_mean_phi_tau() -> None:
    x, _ = blobs()
    levels = build_prototypes(x, [3, 5], seed=0, tau=0.2)
    assert [lv.k for lv in levels] == [3, 5]
    for lv in levels:
        torch.testing.assert_close(lv.centroids.norm(dim=1), torch.ones(lv.k))
        assert lv.assign.shape == (len(x),) and lv.assign.dtype == torch.long
        assert lv.phi.mean().item() == pytest.approx(0.2, rel=1e-5)


def test_proto_nce_multi_hand_computation() -> None:
    f = torch.tensor([[1.0, 0.0]])
    lv1 = PrototypeLevel(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), torch.tensor([0]), torch.tensor([0.5, 0.25]))
    lv2 = PrototypeLevel(
        torch.tensor([[0.0, 1.0], [1.0, 0.0], [-1.0, 0.0]]), torch.tensor([1]), torch.tensor([0.1, 0.2, 0.4])
    )
    # level 1 logits (1/0.5, 0/0.25) = (2, 0), target 0; level 2 logits (0, 5, -2.5), target 1
    l1 = -math.log(math.exp(2) / (math.exp(2) + 1))
    l2 = -math.log(math.exp(5) / (1 + math.exp(5) + math.exp(-2.5)))
    got = proto_nce_multi(f, [lv1, lv2], torch.tensor([0]))
    assert got.item() == pytest.approx((l1 + l2) / 2, rel=1e-6)


# ----- the method -----------------------------------------------------------------------------------
def test_cluster_counts_scale_with_the_true_class_count() -> None:
    x = torch.from_numpy(blobs()[0])
    dom = make_method("protonce-domain", num_classes=(3, 5))
    assert dom.cluster_counts({"A": x, "B": x}) == {"A": [3, 6, 12], "B": [5, 10, 20]}
    assert dom.info["cluster_count_source"].startswith("true class counts")
    joint = make_method("protonce-joint", num_classes=(3, 5))
    assert joint.cluster_counts({"joint": x}) == {"joint": [5, 10, 20]}  # max(C_A, C_B) = size of the union
    user = make_method("protonce", num_classes=(3, 5), hparams={"num_clusters": [2, 7]})
    assert user.cluster_counts({"A": x, "B": x}) == {"A": [2, 7], "B": [2, 7]}
    elbow = make_method("protonce", num_classes=None, hparams={"elbow_k_max": 8})
    assert elbow.cluster_counts({"A": x}) == {"A": [3, 6, 12]}  # three blobs found by the Elbow method
    assert elbow.info["cluster_count_source"].startswith("elbow")
    assert get_method("protonce").needs_num_classes


def test_warmup_then_reclustering_every_epoch(monkeypatch: pytest.MonkeyPatch) -> None:
    (a, _), (b, _) = synthetic_pair(n=64)
    calls: list[int] = []
    real = protonce_mod.build_prototypes

    def counting(feats, ks, **kw):
        calls.append(len(feats))
        return real(feats, ks, **kw)

    monkeypatch.setattr(protonce_mod, "build_prototypes", counting)
    logged: list[tuple[int, set[str]]] = []

    def progress(stage, epoch, total, info):
        logged.append((epoch, set(info)))

    m = make_method("protonce-domain", hparams={"epochs": 4, "warmup_epochs": 2}, progress=progress)
    m.fit(a, b)
    assert calls == [64, 64, 64, 64]  # epochs 3 and 4, one clustering per domain each
    assert [("proto" in keys) for _, keys in logged] == [False, False, True, True]
    assert m.info["warmup_epochs"] == 2 and m.info["num_clusters"] == {"A": [4, 8, 16], "B": [4, 8, 16]}
    calls.clear()
    j = make_method("protonce-joint", hparams={"epochs": 4, "warmup_epochs": 2})
    j.fit(a, b)
    assert calls == [128, 128]  # one pooled memory of A and B
    assert j.info["clustering"] == "joint"


def test_plain_protonce_is_the_per_domain_variant() -> None:
    (a, _), (b, _) = synthetic_pair(n=64)
    hp = {"epochs": 3, "warmup_epochs": 1}
    embs = {}
    for name in ("protonce", "protonce-domain", "protonce-joint"):
        m = make_method(name, hparams=hp)
        m.fit(a, b)
        embs[name] = m.embed(a)
    np.testing.assert_array_equal(embs["protonce"], embs["protonce-domain"])
    assert not np.allclose(embs["protonce"], embs["protonce-joint"])


@pytest.mark.parametrize("name", ["protonce-domain", "protonce-joint"])
def test_fit_improves_retrieval_over_untrained_encoder(name: str) -> None:
    (a, ya), (b, yb) = synthetic_pair()
    m = make_method(name, hparams={"epochs": 12, "warmup_epochs": 3})
    before = mean_ap(m.embed(a), m.embed(b), ya, yb)
    m.fit(a, b)
    after = mean_ap(m.embed(a), m.embed(b), ya, yb)
    assert before < 0.7
    assert after > before + 0.2, (before, after)

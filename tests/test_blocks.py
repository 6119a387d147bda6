"""Shared training blocks against hand computations on tiny tensors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from u2cdr_bench.blocks.detector import cluster_spread, generic_private_detector, nearest_distance
from u2cdr_bench.blocks.grl import DomainClassifier, dann_lambda, domain_adversarial_loss, grad_reverse
from u2cdr_bench.blocks.kmeans import elbow_k, kmeans
from u2cdr_bench.blocks.losses import entropy, instance_nce, multi_positive_nce, prototype_nce
from u2cdr_bench.blocks.memory import MemoryBank


def test_memory_update_eq5_without_renorm():
    bank = MemoryBank(torch.tensor([[1.0, 0.0], [0.0, 1.0]]), momentum=0.99, renormalize=False)
    bank.update(torch.tensor([1]), torch.tensor([[1.0, 1.0]]))
    # m_1 = 0.99 * (0, 1) + 0.01 * (1, 1) = (0.01, 1.0)
    assert torch.allclose(bank.bank[1], torch.tensor([0.01, 1.0]))
    assert torch.allclose(bank.bank[0], torch.tensor([1.0, 0.0]))
    assert torch.allclose(bank.mean(), torch.tensor([0.505, 0.5]))


def test_memory_update_renormalises():
    bank = MemoryBank(torch.tensor([[3.0, 4.0]]), momentum=0.5, renormalize=True)
    assert torch.allclose(bank.bank[0], torch.tensor([0.6, 0.8]))
    bank.update(torch.tensor([0]), torch.tensor([[1.0, 0.0]]))
    v = torch.tensor([0.5 * 0.6 + 0.5, 0.5 * 0.8])
    assert torch.allclose(bank.bank[0], v / v.norm())


def test_instance_nce_by_hand():
    f = torch.tensor([[1.0, 0.0]])
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    tau = 0.5
    # logits = (2, 0, -2); loss = -log(e^2 / (e^2 + 1 + e^-2))
    expected = -math.log(math.exp(2) / (math.exp(2) + 1 + math.exp(-2)))
    got = instance_nce(f, bank, torch.tensor([0]), tau=tau, negatives="bank")
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # batch negatives: only the batch's own memory entry -> loss 0
    assert instance_nce(f, bank, torch.tensor([0]), tau=tau, negatives="batch").item() == pytest.approx(
        0.0, abs=1e-7
    )


def test_prototype_nce_scalar_and_per_cluster_temperature():
    f = torch.tensor([[0.6, 0.8]])
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    got = prototype_nce(f, protos, torch.tensor([1]), tau=0.1)
    expected = -math.log(math.exp(8) / (math.exp(6) + math.exp(8)))
    assert got.item() == pytest.approx(expected, rel=1e-6)
    phi = torch.tensor([0.2, 0.4])
    got2 = prototype_nce(f, protos, torch.tensor([0]), tau=phi)
    expected2 = -math.log(math.exp(3) / (math.exp(3) + math.exp(2)))
    assert got2.item() == pytest.approx(expected2, rel=1e-6)


def test_multi_positive_nce_by_hand():
    logits = torch.tensor([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, False, True], [False, False, False]])
    # row 0: -log((e + e^3) / (e + e^2 + e^3)); row 1 has no positive and is left out of the mean
    expected = -math.log((math.e + math.e**3) / (math.e + math.e**2 + math.e**3))
    assert multi_positive_nce(logits, mask).item() == pytest.approx(expected, rel=1e-6)


def test_entropy_uniform():
    p = torch.full((4,), 0.25)
    assert entropy(p).item() == pytest.approx(math.log(4), rel=1e-6)


def test_grad_reverse_and_dann_loss():
    x = torch.tensor([1.0, 2.0], requires_grad=True)
    (grad_reverse(x, 0.5) * torch.tensor([3.0, 4.0])).sum().backward()
    assert torch.allclose(x.grad, torch.tensor([-1.5, -2.0]))
    assert dann_lambda(0.0) == pytest.approx(0.0)
    assert dann_lambda(1.0) == pytest.approx(2 / (1 + math.exp(-10)) - 1)

    clf = DomainClassifier(2, hidden=3)
    for p in clf.parameters():
        torch.nn.init.zeros_(p)
    fa, fb = torch.zeros(2, 2), torch.zeros(3, 2)
    # all logits 0 -> each of the 2B samples contributes log 2 (Eq. 13, sum reduction)
    assert domain_adversarial_loss(clf, fa, fb).item() == pytest.approx(5 * math.log(2), rel=1e-6)
    assert domain_adversarial_loss(clf, fa, fb, reduction="mean").item() == pytest.approx(
        math.log(2), rel=1e-6
    )


def test_kmeans_recovers_separated_clusters_and_inertia():
    rng = np.random.default_rng(0)
    centers = np.array([[0, 0], [10, 0], [0, 10]], dtype=np.float32)
    x = np.concatenate([c + 0.1 * rng.standard_normal((50, 2)) for c in centers]).astype(np.float32)
    res = kmeans(x, 3, seed=1)
    assert res.k == 3
    for c in centers:
        assert np.min(np.linalg.norm(res.centroids - c, axis=1)) < 0.1
    # each block of 50 points shares one label
    assert all(len(set(res.assign[i * 50 : (i + 1) * 50])) == 1 for i in range(3))
    manual = sum(float(((x[res.assign == c] - res.centroids[c]) ** 2).sum()) for c in range(3))
    assert res.inertia == pytest.approx(manual, rel=1e-3)


def test_elbow_finds_the_true_number_of_clusters():
    rng = np.random.default_rng(1)
    centers = rng.uniform(-20, 20, size=(5, 8)).astype(np.float32)
    x = np.concatenate([c + 0.3 * rng.standard_normal((60, 8)) for c in centers]).astype(np.float32)
    k, curve = elbow_k(x, k_min=2, k_max=12, seed=0)
    assert k == 5
    assert sorted(curve) == list(range(2, 13))
    assert curve[5] < curve[4] < curve[3]


def test_generic_detector_by_hand():
    # two tight query clusters; the gallery holds only the first one
    q = np.array([[0.0, 0.0], [0.0, 1.0], [10.0, 0.0], [10.0, 1.0]], dtype=np.float32)
    g = np.array([[0.0, 0.5]], dtype=np.float32)
    nn = nearest_distance(q, g, "euclidean")
    assert np.allclose(nn, [0.5, 0.5, np.hypot(10, 0.5), np.hypot(10, 0.5)])
    assign = np.array([0, 0, 1, 1])
    cents = np.array([[0, 0.5], [10, 0.5]], dtype=np.float32)
    assert np.allclose(cluster_spread(q, assign, cents, "euclidean", "diameter"), [1.0, 1.0])
    assert np.allclose(cluster_spread(q, assign, cents, "euclidean", "radius"), [0.5, 0.5])
    flags = generic_private_detector(q, g, k=2, seed=0)
    assert flags.tolist() == [False, False, True, True]


def test_cosine_distance_detector():
    q = np.array([[1.0, 0.0], [1.0, 0.1], [0.0, 1.0], [0.1, 1.0]], dtype=np.float32)
    g = np.array([[1.0, 0.05]], dtype=np.float32)
    flags = generic_private_detector(q, g, distance="cosine", k=2, seed=0, threshold="diameter")
    assert flags.tolist() == [False, False, True, True]
    d = nearest_distance(q[:1], g, "cosine")
    assert d[0] == pytest.approx(1 - 1 / math.sqrt(1 + 0.05**2), rel=1e-6)


def test_f_normalize_used_in_losses_is_unit_norm():
    f = F.normalize(torch.randn(5, 3), dim=1)
    assert torch.allclose(f.norm(dim=1), torch.ones(5))

"""Baselines ``source-only``, ``dann`` and ``cds``: signature components against hand computations,
the source-only isolation from domain B, and a short fit that must beat the untrained encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic import mean_ap, synthetic_pair

from u2cdr_bench.baselines.cds import cross_domain_entropy
from u2cdr_bench.blocks.memory import MemoryBank, last_occurrence
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.methods import FitContext, get_method, method_names
from u2cdr_bench.nets import make_encoder_factory

D_IN = 32


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a shared 2-core machine: one intra-op thread is faster and avoids oversubscription."""
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


def make_method(name: str, seed: int = 0, hparams: dict | None = None, d_in: int = D_IN):
    ctx = FitContext(
        seed=seed,
        encoder_factory=make_encoder_factory("features", (d_in,)),
        input_kind="features",
        input_shape=(d_in,),
        profile="features",
    )
    return get_method(name)(ctx, hparams)


def test_registered_in_table_order() -> None:
    names = method_names()
    mine = ["source-only", "dann", "protonce", "protonce-joint", "protonce-domain", "cds"]
    assert [n for n in names if n in mine] == mine
    for n in ("source-only", "dann", "cds"):
        cls = get_method(n)
        assert cls.distance == "cosine" and not cls.needs_num_classes
        digits = cls.resolve_hparams("digits")
        assert digits["epochs"] + digits.get("id_only_epochs", 0) == 24  # the digits budget of every method
        assert cls.resolve_hparams("features")["epochs"] == 30
    assert get_method("cds").resolve_hparams("paper")["epochs"] == 7  # CDS's official pre-training script


# ----- deterministic memory update -----------------------------------------------------------------
def test_update_unique_keeps_the_last_duplicate() -> None:
    idx = torch.tensor([3, 1, 3, 2, 1])
    assert last_occurrence(idx).tolist() == [4, 3, 2]
    bank = MemoryBank(torch.eye(4), momentum=0.5, renormalize=False)
    feats = torch.arange(10, dtype=torch.float32).reshape(5, 2).repeat(1, 2)  # row r = (2r, 2r+1, 2r, 2r+1)
    bank.update(idx, feats)
    expected = torch.eye(4)
    for row, pos in ((1, 4), (2, 3), (3, 2)):  # Eq. 5 with the last feature of each index
        expected[row] = 0.5 * torch.eye(4)[row] + 0.5 * feats[pos]
    torch.testing.assert_close(bank.bank, expected)


# ----- CDS ------------------------------------------------------------------------------------------
def test_cross_domain_entropy_hand_computation() -> None:
    f = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    tau, k = 0.5, 2
    # row 0: sims (1, 0, -1) -> top-2 logits (2, 0); row 1: sims (0.6, 0.8, -0.6) -> top-2 logits (1.6, 1.2)
    expected = 0.0
    for a, b in ((2.0, 0.0), (1.6, 1.2)):
        p1 = 1.0 / (1.0 + math.exp(b - a))
        p2 = 1.0 - p1
        expected += -(p1 * math.log(p1 + 1e-5) + p2 * math.log(p2 + 1e-5)) / 2
    got = cross_domain_entropy(f, bank, tau=tau, top_k=k)
    assert got.item() == pytest.approx(expected, rel=1e-6)
    # top_k larger than the bank: full softmax; identical similarities: entropy log(N) (eps=0)
    flat = cross_domain_entropy(torch.tensor([[0.0, 1.0]]), bank[[0, 2]], tau=0.1, top_k=700, eps=0.0)
    assert flat.item() == pytest.approx(math.log(2.0), rel=1e-6)


def test_cross_domain_entropy_gradient_sharpens_the_match() -> None:
    # one descent step on f must raise the largest matching probability (entropy minimisation)
    bank = F.normalize(torch.tensor([[1.0, 0.2], [0.9, -0.3], [-1.0, 0.1]]), dim=1)
    f = F.normalize(torch.tensor([[1.0, 0.0]]), dim=1).requires_grad_(True)
    loss = cross_domain_entropy(f, bank, tau=0.1, top_k=3)
    loss.backward()
    f2 = F.normalize(f.detach() - 0.05 * f.grad, dim=1)
    p_before = F.softmax(f.detach() @ bank.t() / 0.1, dim=1).max()
    p_after = F.softmax(f2 @ bank.t() / 0.1, dim=1).max()
    assert cross_domain_entropy(f2, bank, tau=0.1, top_k=3) < loss
    assert p_after > p_before


# ----- source-only ----------------------------------------------------------------------------------
def test_source_only_ignores_domain_b() -> None:
    (a, _), (b, _) = synthetic_pair()
    m1 = make_method("source-only", hparams={"epochs": 2})
    m1.fit(a, b)
    # a different gallery: other size, other content, even another feature size (it would crash if used)
    other = UnlabeledDomain("other", torch.randn(7, 3), kind="features")
    m2 = make_method("source-only", hparams={"epochs": 2})
    m2.fit(a, other)
    e1, e2 = m1.embed(a), m2.embed(a)
    assert np.array_equal(e1, e2)
    assert m1.info["domains_trained"] == ["A"]
    # and it did train: the features moved away from the untrained encoder's
    assert not np.allclose(e1, make_method("source-only").embed(a))


# ----- DANN -----------------------------------------------------------------------------------------
def _dann_ready(lam_hparams: dict | None = None):
    (a, _), (b, _) = synthetic_pair(n=16)
    m = make_method("dann", hparams=lam_hparams)
    m.setup(a, b)
    m.prepare_encoder(a, b)  # the structure head's PCA start (before it, its output is exactly zero)
    idx_a, idx_b = torch.arange(6), torch.arange(5)
    return m, a.clean(idx_a), b.clean(idx_b), idx_a, idx_b


def test_dann_adversarial_loss_value() -> None:
    m, xa, xb, ia, ib = _dann_ready()
    last = m.classifier.net[-1]
    with torch.no_grad():
        last.weight.zero_()
        last.bias.fill_(0.3)
    out = m.losses(xa, xb, ia, ib, lam=0.5)
    # every logit is 0.3: BCE = (6 * softplus(-0.3) + 5 * softplus(0.3)) / 11
    expected = (6 * math.log1p(math.exp(-0.3)) + 5 * math.log1p(math.exp(0.3))) / 11
    assert out["adv"].item() == pytest.approx(expected, rel=1e-6)
    assert out["total"].item() == pytest.approx((out["inst_a"] + out["inst_b"] + out["adv"]).item(), rel=1e-6)


def test_dann_gradient_reversal_on_the_encoder() -> None:
    lam = 0.7
    m, xa, xb, ia, ib = _dann_ready()
    enc = [p for p in m.encoder.parameters()]
    cls = [p for p in m.classifier.parameters()]
    out = m.losses(xa, xb, ia, ib, lam=lam)
    grads_rev = torch.autograd.grad(out["adv"], enc + cls)
    # the same binary cross-entropy without the reversal layer
    f = m.features(torch.cat([xa, xb]))
    y = torch.cat([torch.ones(len(xa)), torch.zeros(len(xb))])
    plain = F.binary_cross_entropy_with_logits(m.classifier(f), y)
    assert plain.item() == pytest.approx(out["adv"].item(), rel=1e-6)
    grads_plain = torch.autograd.grad(plain, enc + cls)
    n_enc = len(enc)
    for g_rev, g_plain in zip(grads_rev[:n_enc], grads_plain[:n_enc], strict=True):
        torch.testing.assert_close(g_rev, -lam * g_plain, rtol=1e-5, atol=1e-7)
    for g_rev, g_plain in zip(grads_rev[n_enc:], grads_plain[n_enc:], strict=True):
        torch.testing.assert_close(g_rev, g_plain, rtol=1e-5, atol=1e-7)  # classifier: plain descent
    assert any(g.abs().sum() > 0 for g in grads_plain[:n_enc])


# ----- short fits -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["source-only", "dann", "cds"])
def test_fit_improves_retrieval_over_untrained_encoder(name: str) -> None:
    (a, ya), (b, yb) = synthetic_pair()
    m = make_method(name, hparams={"epochs": 12})
    before = mean_ap(m.embed(a), m.embed(b), ya, yb)
    m.fit(a, b)
    after = mean_ap(m.embed(a), m.embed(b), ya, yb)
    assert before < 0.7
    assert after > before + 0.2, (before, after)

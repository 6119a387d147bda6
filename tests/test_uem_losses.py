"""UEM's equations against hand computations on tiny tensors (paper-spec §2.2, §2.3, §2.6)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from u2cdr_bench.blocks.grl import DomainClassifier
from u2cdr_bench.blocks.memory import MemoryBank
from u2cdr_bench.methods.uem.cdsm import adversarial_loss, nn_match_loss, sn2m_loss, sn2m_targets, spr_loss
from u2cdr_bench.methods.uem.detector import leave_one_out_max, uem_private_detector
from u2cdr_bench.methods.uem.distance import nearest_by_delta, product_distance
from u2cdr_bench.methods.uem.idse import alpha_ramp, idse_domain_loss, pairwise_euclidean_grad, sel_loss

E = math.e


def t(x) -> torch.Tensor:
    return torch.tensor(x, dtype=torch.float32)


# ----------------------------------------------------------------------------------------- Eq. 5
def test_memory_update_eq5_with_and_without_renormalisation():
    bank = MemoryBank(t([[1.0, 0.0], [0.0, 1.0]]), momentum=0.5, renormalize=False)
    bank.update(torch.tensor([0]), t([[0.0, 1.0]]))
    np.testing.assert_allclose(bank.bank.numpy(), [[0.5, 0.5], [0.0, 1.0]])
    bank = MemoryBank(t([[1.0, 0.0], [0.0, 1.0]]), momentum=0.99, renormalize=True)
    bank.update(torch.tensor([0]), t([[0.0, 1.0]]))
    v = np.array([0.99, 0.01]) / math.hypot(0.99, 0.01)
    np.testing.assert_allclose(bank.bank.numpy()[0], v, rtol=1e-6)
    np.testing.assert_allclose(bank.mean().numpy(), (v + [0.0, 1.0]) / 2, rtol=1e-6)


# ---------------------------------------------------------------------------------- Eqs. 6, 7, 10-12
def test_ince_eq6_bank_and_batch_negatives():
    f = t([[1.0, 0.0], [0.0, 1.0]])
    bank = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    idx = torch.tensor([0, 1])
    loss, parts = idse_domain_loss(f, bank, idx, alpha=0.7, tau=0.5, ince_negatives="bank")
    # logits /0.5: row 0 [2, 0, -2] target 0; row 1 [0, 2, 0] target 1
    l0 = -math.log(E**2 / (E**2 + 1 + E**-2))
    l1 = -math.log(E**2 / (E**2 + 2))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    assert set(parts) == {"ince"}  # no prototypes yet: L_INCE only
    loss_b, _ = idse_domain_loss(f, bank, idx, alpha=0.7, tau=0.5, ince_negatives="batch")
    assert float(loss_b) == pytest.approx(-math.log(E**2 / (E**2 + 1)), rel=1e-6)
    loss_s, _ = idse_domain_loss(f, bank, idx, alpha=0.7, tau=0.5, nce_reduction="sum")
    assert float(loss_s) == pytest.approx(l0 + l1, rel=1e-6)


def test_pnce_eq7_and_ipm_eq10_and_sel_eq11_in_one_domain_term():
    f = t([[1.0, 0.0]])
    bank = t([[1.0, 0.0], [0.0, 1.0]])
    protos = t([[1.0, 0.0], [0.0, 1.0]])
    assign = torch.tensor([1, 0])  # sample 0 belongs to prototype 1
    alpha = 0.25
    loss, parts = idse_domain_loss(f, bank, torch.tensor([0]), alpha, protos, assign, tau=1.0)
    ince = -math.log(E / (E + 1))
    pnce = -math.log(1 / (E + 1))  # Eq. 7: logits [1, 0], target 1
    sel = (1 / (E + 1)) * math.sqrt(2)  # Eq. 11: softmax [e, 1]/(e+1) times distances [0, sqrt 2]
    assert parts["ince"] == pytest.approx(ince, rel=1e-6)
    assert parts["pnce"] == pytest.approx(pnce, rel=1e-6)
    assert parts["sel"] == pytest.approx(sel, rel=1e-6)
    assert loss.item() == pytest.approx(ince + alpha * pnce + alpha * sel, rel=1e-6)  # Eq. 10 + Eq. 12 share
    loss_nosel, parts = idse_domain_loss(
        f, bank, torch.tensor([0]), alpha, protos, assign, tau=1.0, use_sel=False
    )
    assert "sel" not in parts and float(loss_nosel) == pytest.approx(ince + alpha * pnce, rel=1e-6)


def test_alpha_ramp_eq10():
    assert alpha_ramp(50, 100) == pytest.approx(0.5)
    assert alpha_ramp(8, 16) == pytest.approx(0.5)
    assert alpha_ramp(45, 100) == pytest.approx(1 / (1 + math.exp(5)))
    assert alpha_ramp(55, 100) == pytest.approx(1 / (1 + math.exp(-5)))
    assert alpha_ramp(0, 10_000) == 0.0


def test_sel_eq11_value_mean_and_gradient_with_and_without_detached_weights():
    f = t([[1.0, 0.0], [0.0, 2.0]])
    protos = t([[1.0, 0.0], [0.0, 1.0]])
    # row 0: weights softmax([1, 0]), distances [0, sqrt 2]; row 1: logits [0, 2], distances [sqrt 5, 1]
    w1 = np.exp([0.0, 2.0]) / np.exp([0.0, 2.0]).sum()
    expected = ((1 / (E + 1)) * math.sqrt(2) + w1[0] * math.sqrt(5) + w1[1] * 1.0) / 2
    assert float(sel_loss(f, protos, tau=1.0)) == pytest.approx(expected, rel=1e-6)
    # gradient with detached weights = (1/B) sum_c w_c (f - p_c)/|f - p_c|, finite where f == p_c
    x = f.clone().requires_grad_(True)
    sel_loss(x, protos, tau=1.0, detach_weights=True).backward()
    g0 = (1 / (E + 1)) * (np.array([1.0, 0.0]) - [0.0, 1.0]) / math.sqrt(2) / 2
    np.testing.assert_allclose(x.grad.numpy()[0], g0, rtol=1e-5)
    y = f.clone().requires_grad_(True)
    sel_loss(y, protos, tau=1.0, detach_weights=False).backward()
    assert torch.isfinite(y.grad).all() and not torch.allclose(y.grad, x.grad)


def test_pairwise_euclidean_grad_is_finite_on_the_diagonal():
    x = t([[1.0, 0.0], [0.0, 1.0]]).requires_grad_(True)
    d = pairwise_euclidean_grad(x, x)
    np.testing.assert_allclose(d.detach().numpy(), [[0.0, math.sqrt(2)], [math.sqrt(2), 0.0]], rtol=1e-6)
    d.sum().backward()
    assert torch.isfinite(x.grad).all()


# -------------------------------------------------------------------------------------------- Eq. 13
def _classifier() -> DomainClassifier:
    disc = DomainClassifier(2, hidden=2)
    with torch.no_grad():
        disc.net[0].weight.copy_(torch.eye(2))
        disc.net[0].bias.zero_()
        disc.net[2].weight.copy_(t([[1.0, -1.0]]))
        disc.net[2].bias.zero_()
    return disc


def test_dal_eq13_value_and_gradient_reversal():
    disc = _classifier()
    fa = t([[1.0, 0.0]]).requires_grad_(True)
    fb = t([[0.0, 1.0]]).requires_grad_(True)
    # logits: A -> 1 (y = 1), B -> -1 (y = 0); each term is log(1 + e^-1)
    loss = adversarial_loss(disc, fa, fb, mode="grl", reduction="mean")
    assert loss.item() == pytest.approx(math.log(1 + 1 / E), rel=1e-6)
    total = adversarial_loss(disc, fa, fb, mode="grl", reduction="sum")
    assert total.item() == pytest.approx(2 * math.log(1 + 1 / E), rel=1e-6)
    loss.backward()
    # without reversal d/dfa of BCE(sigmoid(relu(fa0) - relu(fa1)), 1)/2 = (sigmoid(1) - 1) * [1, 0] / 2
    # (relu'(0) = 0 for the second unit); the reversal flips its sign
    s = 1 / (1 + math.exp(-1))
    np.testing.assert_allclose(fa.grad.numpy()[0], -np.array([s - 1, 0.0]) / 2, rtol=1e-5)
    # the classifier itself descends Eq. 13
    assert float(disc.net[2].weight.grad[0, 0]) == pytest.approx((s - 1) * 1 / 2, rel=1e-5)


def test_dal_flip_mode_classifier_sees_eq13_features_see_flipped_labels():
    disc = _classifier()
    fa = t([[1.0, 0.0]]).requires_grad_(True)
    fb = t([[0.0, 1.0]])
    loss = adversarial_loss(disc, fa, fb, mode="flip", reduction="mean")
    assert loss.item() == pytest.approx(math.log(1 + 1 / E) + math.log(1 + E), rel=1e-6)
    loss.backward()
    ref = _classifier()
    adversarial_loss(ref, fa.detach(), fb, mode="grl", reduction="mean").backward()
    for p, q in zip(disc.parameters(), ref.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)  # classifier gradient = Eq. 13 only
    s = 1 / (1 + math.exp(-1))
    np.testing.assert_allclose(fa.grad.numpy()[0], np.array([s, 0.0]) / 2, rtol=1e-5)  # BCE(., 0) on A
    with pytest.raises(ValueError):
        adversarial_loss(disc, fa, fb, mode="alternate")


# -------------------------------------------------------------------------------------------- Eq. 14
def test_spr_eq14_hand_value_and_zero_for_identical_structure():
    f = t([[1.0, 0.0], [0.0, 1.0]]).requires_grad_(True)
    frozen = t([[1.0, 0.0], [1.0, 0.0]])
    # cos diffs off-diagonal -1 (squared 1, twice); distance diffs sqrt 2 (squared 2, twice): 6 / B^2
    loss = spr_loss(f, frozen)
    assert loss.item() == pytest.approx(1.5, rel=1e-6)
    loss.backward()
    assert torch.isfinite(f.grad).all()
    g = t([[0.6, 0.8], [1.0, 0.0], [0.0, -1.0]])
    assert float(spr_loss(g, g)) == pytest.approx(0.0, abs=1e-7)


# ------------------------------------------------------------------------------------- Eqs. 15-17
def test_product_distance_delta():
    d = product_distance(t([[1.0, 0.0], [3.0, 4.0]]), t([[0.0, 2.0], [3.0, 4.0]]))
    np.testing.assert_allclose(
        d.numpy(), [[math.sqrt(5), 0.4 * math.sqrt(20)], [0.2 * math.sqrt(13), 0.0]], atol=1e-6
    )
    idx, val = nearest_by_delta(t([[1.0, 0.0]]), t([[0.0, 2.0], [2.0, 0.1], [1.0, 0.0]]), chunk=2)
    assert int(idx[0]) == 2 and float(val[0]) == pytest.approx(0.0, abs=1e-6)


def test_sn2m_eqs15_17_both_switch_branches():
    f = t([[1.0, 0.0], [0.0, 1.0]]).requires_grad_(True)
    own = t([[1.0, 0.0], [0.0, 1.0]])  # P^A
    merged_b = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])  # P^{B'}
    a_to_b = torch.tensor([0, 2])  # A's prototype 0 merged into row 0; prototype 1 unmerged -> row 2
    cand = t([[0.8, 0.6], [0.0, 1.0]])  # B's instances (memory)
    tg = sn2m_targets(f, own, a_to_b, merged_b, cand)
    assert tg.own_proto.tolist() == [0, 1]  # Eq. 15
    assert tg.neighbour.tolist() == [0, 1]  # Eq. 16
    assert tg.neighbour_proto.tolist() == [0, 1]
    assert tg.proto_pos.tolist() == [0, 2]
    assert tg.agree.tolist() == [True, False]
    loss = sn2m_loss(f, merged_b, cand, tg, tau=1.0)
    # row 0 (agree): logits [1, 0, -1 | 0.8, 0], Delta = e^1 + e^0.8
    l0 = -math.log((E + E**0.8) / (E + 1 + 1 / E + E**0.8 + 1))
    # row 1 (switch off): logits [0, 1, 0 | 0.6, 1], Delta = e^0 (prototype 2 only)
    l1 = -math.log(1 / (1 + E + 1 + E**0.6 + E))
    assert loss.item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    loss.backward()
    assert torch.isfinite(f.grad).all()


def test_sn2m_readings_for_a_sample_without_a_merged_partner():
    """Row 1's own prototype (A's 1) is unmerged (a_to_b -> row 2, a translated A prototype)."""
    f = t([[1.0, 0.0], [0.0, 1.0]])
    own = t([[1.0, 0.0], [0.0, 1.0]])
    merged_b = t([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    a_to_b = torch.tensor([0, 2])
    cand = t([[0.8, 0.6], [0.0, 1.0]])
    tg = sn2m_targets(f, own, a_to_b, merged_b, cand, own_merged=torch.tensor([True, False]))
    assert tg.partnered.tolist() == [True, False]
    l0 = -math.log((E + E**0.8) / (E + 1 + 1 / E + E**0.8 + 1))
    l1 = -math.log(1 / (1 + E + 1 + E**0.6 + E))
    assert sn2m_loss(f, merged_b, cand, tg, tau=1.0).item() == pytest.approx((l0 + l1) / 2, rel=1e-6)
    # skip: row 1 has no term, the mean is over row 0 alone
    assert sn2m_loss(f, merged_b, cand, tg, tau=1.0, unmerged="skip").item() == pytest.approx(l0, rel=1e-6)
    # prototypes: row 1's denominator holds only P^{B'} (logits 0, 1, 0), its positive prototype 2 (logit 0)
    l1p = -math.log(1 / (1 + E + 1))
    got = sn2m_loss(f, merged_b, cand, tg, tau=1.0, unmerged="prototypes").item()
    assert got == pytest.approx((l0 + l1p) / 2, rel=1e-6)
    with pytest.raises(ValueError, match="unmerged must be one of"):
        sn2m_loss(f, merged_b, cand, tg, unmerged="nope")


def test_nn_match_loss_is_plain_cosine_nn_positive():
    f = t([[1.0, 0.0]])
    cand = t([[0.8, 0.6], [0.0, 1.0], [-1.0, 0.0]])
    loss = nn_match_loss(f, cand, tau=1.0)
    assert loss.item() == pytest.approx(-math.log(E**0.8 / (E**0.8 + 1 + 1 / E)), rel=1e-6)


# ------------------------------------------------------------------------------------ Eqs. 25-27
def test_leave_one_out_max():
    np.testing.assert_allclose(leave_one_out_max(t([1.0, 3.0, 2.0])).numpy(), [3.0, 2.0, 3.0])
    np.testing.assert_allclose(leave_one_out_max(t([2.0, 2.0])).numpy(), [2.0, 2.0])
    assert leave_one_out_max(t([5.0])).tolist() == [float("-inf")]


def _detector_example() -> tuple[np.ndarray, np.ndarray]:
    # Queries: cluster P around (10, 0) with one member q3 farther from the gallery, cluster Q around
    # (0, 10), and a private cluster R around (-10, -10) with no gallery counterpart.
    q = np.array(
        [
            [10.0, 0.0], [10.0, 0.5], [10.0, -0.5], [10.0, 3.0],  # P: q3 = (10, 3)
            [0.0, 10.0], [0.5, 10.0], [-0.5, 10.0],  # Q
            [-10.0, -10.0], [-10.5, -10.0], [-10.0, -10.5],  # R (private)
        ]
    )  # fmt: skip
    g = np.array([[10.0, 0.0], [10.2, 0.0], [0.0, 10.0], [0.0, 10.2]])
    return q.astype(np.float32), g.astype(np.float32)


def _delta(u: np.ndarray, v: np.ndarray) -> float:
    cos = u @ v / (np.linalg.norm(u) * np.linalg.norm(v))
    return float((1 - cos) * np.linalg.norm(u - v))


def test_detector_eqs25_27_unmerged_rule_and_distance_rule():
    q, g = _detector_example()
    res = uem_private_detector(q, g, seed=0, k_query=3, k_gallery=2, niter=20, nredo=1)
    # P and Q merge with the gallery clusters, R is unmerged -> its 3 queries are private by the first rule
    assert res.merge.num_merged == 2
    assert res.by_unmerged.tolist() == [False] * 7 + [True] * 3
    # distance rule (leave-one-out Eq. 25): q3's nearest gallery delta exceeds the spread of the others
    p_members, gp = [0, 1, 2, 3], [0, 1]
    rows = {i: max(_delta(q[i], g[j]) for j in gp) for i in p_members}
    nn3 = min(_delta(q[3], gj) for gj in g)
    thr3 = max(rows[i] for i in (0, 1, 2))
    assert thr3 < nn3  # the hand-made geometry does what the test claims
    assert res.thresholds[3] == pytest.approx(thr3, rel=1e-3)
    assert res.nn_delta[3] == pytest.approx(nn3, rel=1e-5)
    assert res.by_distance.tolist() == [False, False, False, True] + [False] * 6
    assert res.flags.tolist() == [False, False, False, True] + [False] * 3 + [True] * 3
    # literal Eq. 25 (the query counted in its own spread): the distance rule cannot fire
    lit = uem_private_detector(q, g, seed=0, k_query=3, k_gallery=2, niter=20, nredo=1, spread="all")
    assert not lit.by_distance.any()
    assert lit.thresholds[3] == pytest.approx(max(rows.values()), rel=1e-5)
    assert lit.flags.tolist() == [False] * 7 + [True] * 3

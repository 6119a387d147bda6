"""Baselines ``ucdir``, ``coda`` and ``dgdir``: their signature components against hand computations on tiny
tensors (UCDIR distance-of-distance, self-entropy and cluster-wise contrast; CoDA's ISS target and classifier
alignment; DGDIR's Fourier amplitude / phase mixing), the open-set detector of CoDA, the view handling of
DGDIR, and a short fit on synthetic clustered features that must beat the untrained encoder."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from synthetic import mean_ap

from u2cdr_bench.baselines.coda import CoDA, classifier_alignment, iss_loss, iss_target, spherical_lloyd
from u2cdr_bench.baselines.dgdir import DGDIR
from u2cdr_bench.baselines.ucdir import (
    cluster_contrastive_loss,
    cluster_weight,
    distance_of_distance,
    encode_keys,
    keyed_nce,
    momentum_update,
    prototype_distance_matrix,
    self_entropy,
)
from u2cdr_bench.blocks.fourier import (
    PHASE_AMPLITUDE,
    fourier_augment,
    low_frequency_mask,
    phase_only_image,
    spectrum_mix,
    to_gray,
)
from u2cdr_bench.blocks.losses import instance_nce
from u2cdr_bench.data.types import UnlabeledDomain
from u2cdr_bench.errors import UserError
from u2cdr_bench.methods import FitContext, get_method
from u2cdr_bench.nets import make_encoder_factory

D_IN = 32
SIGMA = math.e / (1.0 + math.e)  # softmax([1, 0])[0]


@pytest.fixture(autouse=True)
def _one_thread():
    """Small models on a shared 2-core machine: one intra-op thread is faster and avoids oversubscription."""
    import faiss

    old, old_faiss = torch.get_num_threads(), faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(old)
    faiss.omp_set_num_threads(old_faiss)


# ----- DGDIR: Fourier amplitude / phase mixing ---------------------------------------------------------
def test_mix_with_ratio_zero_returns_the_image() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 8, 8, generator=g)
    partner = torch.rand(3, 3, 8, 8, generator=g)
    out = spectrum_mix(x, partner, lam=0.0, phase_lam=0.0, phase_width=4)
    torch.testing.assert_close(out, x, atol=1e-6, rtol=0)
    # a phase ratio without a low-frequency square leaves the phase alone too
    torch.testing.assert_close(spectrum_mix(x, partner, 0.0, 0.7, phase_width=0), x, atol=1e-6, rtol=0)
    mixed, _ = fourier_augment(x, partner, g, alpha=0.0, phase_alpha=0.0)
    torch.testing.assert_close(mixed, x, atol=1e-6, rtol=0)


def test_amplitude_swap_and_mix_by_hand() -> None:
    # 2x2 DFT: F00 = a+b+c+d, F01 = a-b+c-d, F10 = a+b-c-d, F11 = a-b-c+d for x = [[a, b], [c, d]].
    x1 = torch.tensor([[[[0.5, 0.25], [0.25, 0.0]]]])  # F = [1, .5, .5, 0], phases all 0
    x2 = torch.tensor([[[[0.0, 0.5], [0.5, 0.0]]]])  # F = [1, 0, 0, -1], amplitudes [1, 0, 0, 1]
    # full swap: amplitude of x2 with the phase of x1 -> F = [1, 0, 0, 1] -> x = (1 + (-1)^(m+n)) / 4
    swap = spectrum_mix(x1, x2, lam=1.0, clip=False)
    torch.testing.assert_close(swap, torch.tensor([[[[0.5, 0.0], [0.0, 0.5]]]]), atol=1e-7, rtol=0)
    # half mix: amplitudes [1, .25, .25, .5] with zero phases
    half = spectrum_mix(x1, x2, lam=0.5, clip=False)
    torch.testing.assert_close(half, torch.tensor([[[[0.5, 0.125], [0.125, 0.25]]]]), atol=1e-7, rtol=0)
    # the low-frequency square covering the whole 2x2 spectrum, phase ratio 1: |F(x1)| with the phase of x3
    x3 = torch.tensor([[[[0.25, 0.5], [0.5, 0.75]]]])  # F = [2, -.5, -.5, 0]: phases [0, pi, pi, 0]
    phase_swap = spectrum_mix(x1, x3, lam=0.0, phase_lam=1.0, phase_width=2, clip=False)
    torch.testing.assert_close(phase_swap, torch.tensor([[[[0.0, 0.25], [0.25, 0.5]]]]), atol=1e-7, rtol=0)
    # per-sample ratios: sample 0 unchanged, sample 1 swapped
    both = spectrum_mix(torch.cat([x1, x1]), torch.cat([x2, x2]), lam=torch.tensor([0.0, 1.0]), clip=False)
    torch.testing.assert_close(both, torch.cat([x1, swap]), atol=1e-7, rtol=0)


def test_phase_only_image_keeps_the_phase() -> None:
    x = torch.rand(2, 1, 6, 8, generator=torch.Generator().manual_seed(1))
    y = phase_only_image(x, clip=False)
    fx, fy = torch.fft.fft2(x.double()), torch.fft.fft2(y.double())
    nonzero = fx.abs() > 1e-9
    dphi = torch.remainder(fy.angle() - fx.angle() + math.pi, 2 * math.pi) - math.pi
    assert float(dphi[nonzero].abs().max()) < 1e-5
    torch.testing.assert_close(
        fy.abs(), torch.full_like(fy.abs(), PHASE_AMPLITUDE * math.sqrt(48)), atol=1e-4, rtol=0
    )
    # 1x2 by hand: x = [0.25, 0.75] -> F = [1, -0.5], phases [0, pi]; a = c sqrt(2): IFFT(a [1, -1]) = [0, a]
    a = PHASE_AMPLITUDE * math.sqrt(2)
    tiny = torch.tensor([[[[0.25, 0.75]]]])
    torch.testing.assert_close(
        phase_only_image(tiny, clip=False), torch.tensor([[[[0.0, a]]]]), atol=1e-6, rtol=0
    )
    torch.testing.assert_close(
        phase_only_image(tiny), torch.tensor([[[[0.0, 1.0]]]])
    )  # a = 1.24 clipped to 1


def test_phase_image_of_colour_input_uses_the_grey_level() -> None:
    x = torch.rand(1, 3, 5, 5, generator=torch.Generator().manual_seed(2))
    gray = 0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]
    torch.testing.assert_close(to_gray(x), gray)
    y = phase_only_image(x, clip=False)
    assert y.shape == (1, 3, 5, 5)
    torch.testing.assert_close(y[:, 0], y[:, 2])
    torch.testing.assert_close(y[:, :1], phase_only_image(gray, clip=False), atol=1e-6, rtol=0)


def test_low_frequency_mask_layout() -> None:
    m = low_frequency_mask(16, 16, 4)
    # shifted rows/cols 6..9 around the zero frequency at 8 -> unshifted indices 14, 15, 0, 1
    rows = torch.nonzero(m.sum(1)).flatten().tolist()
    assert rows == [0, 1, 14, 15] and float(m.sum()) == 16.0
    assert float(low_frequency_mask(224, 224, 50).sum()) == 2500.0
    assert float(low_frequency_mask(8, 8, 0).sum()) == 0.0


def test_fourier_augment_is_deterministic_per_generator() -> None:
    x = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(3))
    p = torch.rand(4, 1, 8, 8, generator=torch.Generator().manual_seed(4))
    m1, ph1 = fourier_augment(x, p, torch.Generator().manual_seed(9))
    m2, ph2 = fourier_augment(x, p, torch.Generator().manual_seed(9))
    torch.testing.assert_close(m1, m2)
    torch.testing.assert_close(ph1, ph2)
    assert not torch.allclose(m1, x) and float(m1.min()) >= 0.0 and float(m1.max()) <= 1.0
    torch.testing.assert_close(ph1, phase_only_image(x))


# ----- UCDIR --------------------------------------------------------------------------------------------
def test_distance_of_distance_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p_a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    p_b = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    # with temperature 1: s^A_1 = [s, 1-s], s^A_2 = [1-s, s], s = e/(1+e); s^B_i = [.5, .5] -> D^B = 0
    cos = 2 * SIGMA * (1 - SIGMA) / (SIGMA**2 + (1 - SIGMA) ** 2)
    d_a = prototype_distance_matrix(f, p_a, temp=1.0)
    torch.testing.assert_close(d_a, torch.tensor([[0.0, 1 - cos], [1 - cos, 0.0]]), atol=1e-6, rtol=0)
    torch.testing.assert_close(
        prototype_distance_matrix(f, p_b, temp=1.0), torch.zeros(2, 2), atol=1e-6, rtol=0
    )
    # each row has one off-diagonal entry: mean_i ||D^A_i - D^B_i||^2 = (1 - cos)^2 = 0.12387
    loss = distance_of_distance(f, p_a, p_b, temp=1.0)
    assert abs(float(loss) - (1 - cos) ** 2) < 1e-6 and abs((1 - cos) ** 2 - 0.123868) < 1e-5
    assert float(distance_of_distance(f, p_a, p_a, temp=1.0)) == 0.0


def test_self_entropy_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 0.0]])
    protos = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    h1 = -SIGMA * math.log(SIGMA) - (1 - SIGMA) * math.log(1 - SIGMA)  # softmax([1, 0])
    h2 = math.log(2.0)  # softmax([0, 0])
    assert abs(float(self_entropy(f, protos, temp=1.0)) - (h1 + h2) / 2) < 1e-6
    # a lower temperature sharpens the assignment of the first sample: entropy -> 0
    assert float(self_entropy(f[:1], protos, temp=0.01)) < 1e-6


def test_cluster_contrastive_loss_by_hand() -> None:
    bank = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    assign = torch.tensor([0, 0, 1])
    protos = torch.tensor([[1.0, 0.0], [-1.0, 0.0]])
    q = k = torch.tensor([[1.0, 0.0]])
    idx = torch.tensor([0])
    # logits [1, 0, -1]; positives {0, 1}: loss = logsumexp - mean(1, 0); confidence e/(e + 1/e) = 0.88 > 0.2
    expected = math.log(math.e + 1.0 + 1.0 / math.e) - 0.5
    loss = cluster_contrastive_loss(q, k, idx, bank, assign, protos, tau=1.0, threshold=0.2)
    assert abs(float(loss) - expected) < 1e-6
    assert float(cluster_contrastive_loss(q, k, idx, bank, assign, protos, tau=1.0, threshold=0.9)) == 0.0


def test_keyed_nce_by_hand_and_as_instance_nce_on_the_updated_memory() -> None:
    g = torch.Generator().manual_seed(5)
    bank = F.normalize(torch.randn(10, 4, generator=g), dim=1)
    q = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    k = F.normalize(torch.randn(3, 4, generator=g), dim=1)
    idx = torch.tensor([7, 2, 4])
    updated = bank.clone()
    updated[idx] = k
    # UCDIR writes the keys first: then the keyed form equals the plain bank InfoNCE with the bank's own slots
    torch.testing.assert_close(keyed_nce(q, k, updated, idx, 0.2), instance_nce(q, updated, idx, tau=0.2))
    by_hand = []
    for r in range(3):
        neg = [float(q[r] @ bank[j]) for j in range(10) if j != int(idx[r])]
        pos = float(q[r] @ k[r])
        by_hand.append(-pos / 0.2 + math.log(math.exp(pos / 0.2) + sum(math.exp(v / 0.2) for v in neg)))
    assert abs(float(keyed_nce(q, k, bank, idx, 0.2)) - float(np.mean(by_hand))) < 1e-5


def test_cluster_weight_ramp_and_momentum_update() -> None:
    assert [cluster_weight(e, 20, 100, 0.0, 0.5) for e in (0, 20, 60, 100, 150)] == [0.0, 0.0, 0.25, 0.5, 0.5]
    q, k = torch.nn.Linear(2, 1), torch.nn.Linear(2, 1)
    with torch.no_grad():
        q.weight.fill_(1.0)
        k.weight.fill_(0.0)
    momentum_update(q, k, 0.9)
    torch.testing.assert_close(k.weight, torch.full((1, 2), 0.1))
    # split encoding returns the rows in input order
    x = torch.randn(6, 2, generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(encode_keys(q, x, torch.Generator().manual_seed(1)), F.normalize(q(x), dim=1))


# ----- CoDA ---------------------------------------------------------------------------------------------
def test_coda_classifier_alignment_by_hand() -> None:
    f = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    w_a = torch.eye(2)
    assert float(classifier_alignment(f, w_a, torch.tensor([[0.0, 1.0], [1.0, 0.0]]))) == 2.0
    # f1: |[1, 0] - [.5, 0]|_1 = .5; f2: |[0, 1] - [0, 2]|_1 = 1 -> mean .75
    assert float(classifier_alignment(f, w_a, torch.tensor([[0.5, 0.0], [0.0, 2.0]]))) == 0.75
    # softmax outputs: f1 -> softmax([1, 0]) vs softmax([.5, 0]); f2 -> softmax([0, 1]) vs softmax([0, 2])
    s = [1 / (1 + math.exp(-t)) for t in (1.0, 0.5, 2.0)]
    expected = (2 * abs(s[0] - s[1]) + 2 * abs(s[0] - s[2])) / 2
    got = float(classifier_alignment(f, w_a, torch.tensor([[0.5, 0.0], [0.0, 2.0]]), softmax=True))
    assert abs(got - expected) < 1e-6


def test_coda_iss_target_and_loss_by_hand() -> None:
    w = torch.eye(2)
    t = iss_target(torch.tensor([[1.0, 0.0]]), w, tau=0.5)  # softmax([2, 0])
    e2 = math.exp(2.0)
    torch.testing.assert_close(t, torch.tensor([[e2 / (e2 + 1), 1 / (e2 + 1)]]))
    assert not t.requires_grad
    loss = iss_loss(torch.tensor([[1.0, 0.0]]), t)  # prediction softmax([1, 0]) = [s, 1 - s]
    expected = -(e2 / (e2 + 1)) * math.log(SIGMA) - (1 / (e2 + 1)) * math.log(1 - SIGMA)
    assert abs(float(loss) - expected) < 1e-6


def test_spherical_lloyd_recovers_directions() -> None:
    g = torch.Generator().manual_seed(0)
    dirs = torch.eye(3)
    x = torch.cat([dirs[i] + 0.05 * torch.randn(20, 3, generator=g) for i in range(3)])
    init = F.normalize(dirs + 0.3 * torch.randn(3, 3, generator=g), dim=1)
    c = spherical_lloyd(x, init)
    assert torch.allclose(c.norm(dim=1), torch.ones(3))
    assert float((c * dirs).sum(1).min()) > 0.99


def test_coda_detector_uses_query_classifiers() -> None:
    ctx = FitContext(0, make_encoder_factory("features", (2,)), "features", (2,), profile="features")
    m = CoDA(ctx)
    m.heads_a = torch.nn.ModuleList([torch.nn.Linear(2, 2, bias=False)])
    with torch.no_grad():
        m.heads_a[0].weight.copy_(torch.eye(2))
    q = np.array([[1.0, 0.0], [0.96, 0.28], [0.0, 1.0], [0.28, 0.96]])
    g = np.array([[1.0, 0.1]])
    # classes by arg-max: [0, 0, 1, 1]; radius D_c = max |q - w_c| = |(.04, .28)| = .283 (diameter: the same
    # here, one member sits on w_c); NN distances .1, .184, 1.35, 1.12
    np.testing.assert_array_equal(m.detect_private(q, g), [False, False, True, True])
    # q2 = (.6, .8) joins class 1: D_0 = 0, D_1 = |(.6, -.2)| = .632; NN distances .1, .141, .51 with a
    # second gallery item (.5, .9) -> only q1 (NN .1 > D_0 = 0) is private
    q2 = np.array([[1.0, 0.0], [0.6, 0.8], [0.0, 1.0]])
    g2 = np.array([[1.0, 0.1], [0.5, 0.9]])
    np.testing.assert_array_equal(m.detect_private(q2, g2), [True, False, False])


# ----- fits -----------------------------------------------------------------------------------------------
def synthetic_pair(seed: int = 0, n: int = 200, classes: int = 4, shift: float = 3.0, phase: bool = False):
    """Two feature-mode domains: ``classes`` clusters in 8 signal dims plus 24 nuisance dims.

    The nuisance dims (std 2, domain B shifted by ``shift``) are redrawn in every stored view, so the
    untrained head is dominated by them. With ``phase=True`` each domain also gets a ``"phase"`` view set
    (the signal dims with the nuisance zeroed: a domain-invariant proxy) and a ``"fourier"`` set.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 2.5, (classes, 8))
    out = []
    for name, offset in (("A", 0.0), ("B", shift)):
        y = np.repeat(np.arange(classes), n // classes)
        sig = centers[y] + rng.normal(0.0, 0.5, (n, 8))

        def nuisance(offset: float = offset) -> np.ndarray:
            return rng.normal(0.0, 2.0, (n, D_IN - 8)) + offset

        def view(sig: np.ndarray = sig) -> np.ndarray:
            return np.concatenate([sig + rng.normal(0, 0.1, sig.shape), nuisance()], 1)

        x = np.concatenate([sig, nuisance()], 1)
        extra = {}
        if phase:
            ph = np.stack(
                [np.concatenate([sig + rng.normal(0, 0.1, sig.shape), np.zeros((n, D_IN - 8))], 1)] * 3
            )
            extra = {
                "phase": torch.tensor(ph, dtype=torch.float32),
                "fourier": torch.tensor(np.stack([view() for _ in range(3)]), dtype=torch.float32),
            }
        dom = UnlabeledDomain(
            name,
            torch.tensor(x, dtype=torch.float32),
            kind="features",
            views=torch.tensor(np.stack([view() for _ in range(4)]), dtype=torch.float32),
            extra_views=extra,
        )
        out.append((dom, y))
    return out


def make_method(
    name: str, hparams: dict | None = None, seed: int = 0, num_classes=(4, 4), scale: float = 1.0
):
    ctx = FitContext(
        seed=seed,
        encoder_factory=make_encoder_factory("features", (D_IN,)),
        input_kind="features",
        input_shape=(D_IN,),
        profile="features",
        num_classes=num_classes if get_method(name).needs_num_classes else None,
        epochs_scale=scale,
    )
    return get_method(name)(ctx, hparams)


#: 12 of the features profile's 30 epochs: the milestones scale too, so every loss term takes part
FIT_SCALE = 0.4
FIT_HPARAMS: dict[str, dict] = {"ucdir": {}, "coda": {"cluster_num": 4}, "dgdir": {}}


@pytest.mark.parametrize("name", ["ucdir", "coda", "dgdir"])
def test_fit_improves_retrieval_over_untrained_encoder(name: str) -> None:
    (a, ya), (b, yb) = synthetic_pair(phase=name == "dgdir")
    before = make_method(name)
    score0 = mean_ap(before.embed(a), before.embed(b), ya, yb)
    m = make_method(name, FIT_HPARAMS[name], scale=FIT_SCALE)
    m.fit(a, b)
    score1 = mean_ap(m.embed(a), m.embed(b), ya, yb)
    assert score1 > score0 + 0.1, (name, score0, score1)
    if name != "coda":
        assert m.info["epochs"] == 12


def test_needs_num_classes_is_enforced() -> None:
    (a, _), (b, _) = synthetic_pair(n=40)
    for name in ("ucdir", "dgdir"):
        assert get_method(name).needs_num_classes
        with pytest.raises(UserError):
            make_method(name, num_classes=None).fit(a, b)
    assert not get_method("coda").needs_num_classes


def test_dgdir_memory_init_choice_is_checked() -> None:
    (a, _), (b, _) = synthetic_pair(n=40)
    with pytest.raises(UserError):
        make_method("dgdir", {"memory_init": "zeros"}, scale=0.05).fit(a, b)


def test_dgdir_view_sets_and_fallback_note() -> None:
    (a, _), (b, _) = synthetic_pair(n=40)
    m = make_method("dgdir", scale=0.05)
    m.fit(a, b)
    assert len(m.info["view_fallback"]) == 4 and "phase" in m.info["view_fallback"][1]
    (a2, _), (b2, _) = synthetic_pair(n=40, phase=True)
    m2 = make_method("dgdir", scale=0.05)
    m2.fit(a2, b2)
    assert "view_fallback" not in m2.info and m2.info["num_clusters"] == 4


def test_dgdir_image_views_are_real_fourier_mixes() -> None:
    g = torch.Generator().manual_seed(0)
    a = UnlabeledDomain("A", torch.rand(6, 1, 8, 8, generator=g), kind="image")
    b = UnlabeledDomain("B", torch.rand(5, 1, 8, 8, generator=g), kind="image")
    ctx = FitContext(
        0, make_encoder_factory("image", (1, 8, 8)), "image", (1, 8, 8), epochs_scale=0.02, num_classes=(2, 3)
    )
    idx = torch.tensor([0, 3, 5])
    # no augmentation and zero mixing ratios: the mixed view is the image, the phase view its phase image
    m = DGDIR(ctx, {"aug_alpha": 0.0, "hpf_alpha": 0.0})
    mixed, phase = m._fourier_views(a, idx, (a, b))
    torch.testing.assert_close(mixed, a.x[idx], atol=1e-6, rtol=0)
    torch.testing.assert_close(phase, phase_only_image(a.x[idx]))
    # default ratios: the amplitude moves towards partners drawn from both domains
    m = DGDIR(ctx)
    mixed, _ = m._fourier_views(a, idx, (a, b))
    assert float((mixed - a.x[idx]).abs().max()) > 1e-3
    m.fit(a, b)
    assert m.info["views"].startswith("fourier mixing") and m.info["num_clusters"] == 3
    assert m.embed(a).shape == (6, 128)

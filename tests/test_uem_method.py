"""The UEM method end to end on tiny synthetic data: registration, schedule, label hygiene, determinism and
a retrieval gain over the untrained encoder (the detector's rule itself is pinned in test_uem_losses.py)."""

from __future__ import annotations

import faiss
import numpy as np
import pytest
import torch

from u2cdr_bench.data.types import DomainSamples, UnlabeledDomain
from u2cdr_bench.errors import UserError
from u2cdr_bench.methods import FitContext, get_method, method_names
from u2cdr_bench.methods.uem import UEM
from u2cdr_bench.methods.uem.method import FORMER_DEFAULTS
from u2cdr_bench.nets import make_encoder_factory

DIM = 16
SIGNAL = 4
TINY = {
    "idse_epochs": 4,
    "cdsm_epochs": 2,
    "batch_size": 32,
    "elbow_k_max": 8,
    "kmeans_nredo": 1,
    "cluster_alpha_min": 0.0,
}


@pytest.fixture(autouse=True)
def _one_thread():
    """One torch / OpenMP thread: tiny models gain nothing from threads and a shared machine loses a lot."""
    torch_threads = torch.get_num_threads()
    omp_threads = faiss.omp_get_max_threads()
    torch.set_num_threads(1)
    faiss.omp_set_num_threads(1)
    yield
    torch.set_num_threads(torch_threads)
    faiss.omp_set_num_threads(omp_threads)


def _domain(name: str, classes: list[int], n_per: int, shift: float, seed: int) -> DomainSamples:
    """Class signal in the first ``SIGNAL`` dims (+ a domain shift), pure noise in the others.

    The stored augmented views keep the signal (plus a little noise) and redraw the nuisance dims, so a
    contrastive method can learn to ignore them while a random encoder is dominated by them.
    """
    means = np.random.default_rng(123).normal(size=(8, SIGNAL)) * 2.0
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.asarray(classes), n_per)
    n = len(labels)

    def nuisance() -> np.ndarray:
        return 2.0 * rng.normal(size=(n, DIM - SIGNAL))

    signal = means[labels] + 0.3 * rng.normal(size=(n, SIGNAL)) + shift
    x = np.concatenate([signal, nuisance()], axis=1)
    views = np.stack(
        [np.concatenate([signal + 0.1 * rng.normal(size=signal.shape), nuisance()], 1) for _ in range(4)]
    )
    return DomainSamples(
        domain=name,
        x=torch.tensor(x, dtype=torch.float32),
        labels=labels.astype(np.int64),
        class_names=tuple(str(i) for i in range(8)),
        kind="features",
        views=torch.tensor(views, dtype=torch.float32),
    )


def _ctx(seed: int = 0, scale: float = 1.0) -> FitContext:
    return FitContext(
        seed=seed,
        encoder_factory=make_encoder_factory("features", (DIM,)),
        input_kind="features",
        input_shape=(DIM,),
        epochs_scale=scale,
        profile="features",
    )


def _map(q: np.ndarray, g: np.ndarray, yq: np.ndarray, yg: np.ndarray) -> float:
    """Plain mean average precision over queries, Euclidean ranking (naive loop)."""
    aps = []
    for i in range(len(q)):
        order = np.argsort(((g - q[i]) ** 2).sum(1), kind="stable")
        rel = yg[order] == yq[i]
        if not rel.any():
            continue
        hits = np.cumsum(rel)
        aps.append(float((hits / np.arange(1, len(rel) + 1))[rel].mean()))
    return float(np.mean(aps))


def test_registration_order_and_ablation_flags():
    names = method_names()
    i = names.index("uem")
    assert names[i : i + 5] == ["uem", "uem-no-pm", "uem-no-sel", "uem-no-spda", "uem-no-sn2m"]
    flags = {
        "uem-no-pm": ("idse_merge", False),
        "uem-no-sel": ("use_sel", False),
        "uem-no-spda": ("use_spr", False),
        "uem-no-sn2m": ("sn2m_mode", "nn"),
    }
    base = UEM.resolve_hparams("paper")
    for name, (key, value) in flags.items():
        cls = get_method(name)
        hp = cls.resolve_hparams("paper")
        assert issubclass(cls, UEM) and cls.summary and not cls.needs_num_classes
        assert {k for k in hp if hp[k] != base[k]} == {key} and hp[key] == value
    assert UEM.needs_num_classes is False


def test_the_five_chosen_readings_and_the_former_ones():
    """The 2026-12-04 defaults (docs/uem.md, "The defaults") and FORMER_DEFAULTS differ on exactly those keys,
    and every ablation inherits the chosen readings."""
    chosen = {
        "ince_negatives": "batch",
        "k_estimator": "eigengap",
        "merge_rule": "pair",
        "sn2m_negatives": "encoded",
        "sn2m_unmerged": "skip",
    }
    paper = UEM.resolve_hparams("paper")
    assert {k: paper[k] for k in chosen} == chosen
    former = UEM.hparams_for("paper", None, FORMER_DEFAULTS)
    assert {k for k in former if former[k] != paper[k]} == set(chosen)
    assert {k: former[k] for k in chosen} == FORMER_DEFAULTS
    for name in ("uem-no-pm", "uem-no-sel", "uem-no-spda", "uem-no-sn2m"):
        hp = get_method(name).resolve_hparams("paper")
        assert {k: hp[k] for k in chosen} == chosen


def test_profiles_and_epochs_scale():
    paper = UEM.resolve_hparams("paper")
    assert (paper["idse_epochs"], paper["cdsm_epochs"], paper["lr"], paper["batch_size"]) == (
        100,
        50,
        2e-4,
        64,
    )
    assert paper["sgd_momentum"] == 0.9 and paper["tau"] == 0.07 and paper["memory_momentum"] == 0.99
    assert UEM.resolve_hparams("domainnet")["idse_epochs"] == 200
    digits = UEM.resolve_hparams("digits")
    assert digits["idse_epochs"] < 100 and digits["lr"] > paper["lr"]
    m = UEM(_ctx(scale=0.5), {"idse_epochs": 10})
    assert m.epochs(10) == 5 and m.epochs(1) == 1


def test_bad_hyper_parameters_are_user_errors():
    with pytest.raises(UserError):
        UEM(_ctx(), {"adv_mode": "wgan"})
    with pytest.raises(UserError):
        UEM(_ctx(), {"recluster_every": 0})
    with pytest.raises(UserError):
        UEM(_ctx(), {"no_such_key": 1})


def _fit(a: UnlabeledDomain, b: UnlabeledDomain, seed: int, **over) -> UEM:
    m = UEM(_ctx(seed), {**TINY, **over})
    m.fit(a, b)
    return m


def test_label_hygiene_and_determinism():
    a = _domain("a", [0, 1, 2, 3], 30, 0.0, seed=1)
    b = _domain("b", [0, 1, 2, 3], 30, 2.0, seed=2)
    perm = np.random.default_rng(9).permutation
    a_perm = DomainSamples(a.domain, a.x, perm(a.labels), a.class_names, a.kind, views=a.views)
    b_perm = DomainSamples(b.domain, b.x, perm(b.labels), b.class_names, b.kind, views=b.views)
    assert not np.array_equal(a_perm.labels, a.labels)
    m1 = _fit(a.unlabeled(), b.unlabeled(), seed=5)
    m2 = _fit(a_perm.unlabeled(), b_perm.unlabeled(), seed=5)
    m3 = _fit(a.unlabeled(), b.unlabeled(), seed=6)
    e1, e2, e3 = (m.embed(a.unlabeled()) for m in (m1, m2, m3))
    assert e1.dtype == np.float32 and e1.shape == (120, 128)
    assert np.array_equal(e1, e2)  # bitwise: labels never reach the method; same seed -> same numbers
    assert np.array_equal(m1.embed(b.unlabeled()), m2.embed(b.unlabeled()))
    assert not np.array_equal(e1, e3)  # the seed matters
    assert m1.info["clusterings"] == m2.info["clusterings"]
    t = m1.info["timings"]
    assert set(t) == {"init", "stage1", "stage2", "kmeans", "detector"} and all(v >= 0 for v in t.values())
    assert m1.info["idse_epochs"] == 4 and m1.info["cdsm_epochs"] == 2


def test_fit_improves_cross_domain_retrieval_over_the_untrained_encoder():
    # open-set: the query domain has classes 0-5, the gallery 0-2 (query-private: 3, 4, 5)
    a = _domain("a", [0, 1, 2, 3, 4, 5], 40, 0.0, seed=3)
    b = _domain("b", [0, 1, 2], 40, 1.0, seed=4)
    ua, ub = a.unlabeled(), b.unlabeled()
    shared = np.isin(a.labels, b.labels)
    untrained = UEM(_ctx(11), dict(TINY))
    before = _map(untrained.embed(ua)[shared], untrained.embed(ub), a.labels[shared], b.labels)
    m = UEM(_ctx(11), {**TINY, "idse_epochs": 8, "cdsm_epochs": 4})
    m.fit(ua, ub)
    fa, fb = m.embed(ua), m.embed(ub)
    after = _map(fa[shared], fb, a.labels[shared], b.labels)
    assert before < 0.75 and after > before + 0.2, (before, after)
    flags = m.detect_private(fa, fb)
    assert flags.shape == (len(fa),) and flags.dtype == bool
    det = m.info["detector"]
    assert det["flagged"] == pytest.approx(flags.mean())
    assert det["flagged"] == pytest.approx(det["flagged_unmerged"] + det["flagged_distance"])
    assert m.info["timings"]["detector"] > 0


def test_memory_init_uses_per_domain_batch_statistics_and_leaves_running_stats():
    def factory() -> torch.nn.Module:
        torch.manual_seed(0)
        return torch.nn.Sequential(torch.nn.Linear(DIM, 8), torch.nn.BatchNorm1d(8))

    ctx = FitContext(
        seed=0, encoder_factory=factory, input_kind="features", input_shape=(DIM,), profile="features"
    )
    a = _domain("a", [0, 1], 50, 0.0, seed=1).unlabeled()  # 100 samples -> chunks of 50 with batch_size 64
    m = UEM(ctx, {"batch_size": 64, "memory_bn": "batch"})
    bn = m.encoder[1]
    before = (bn.running_mean.clone(), bn.running_var.clone(), int(bn.num_batches_tracked))
    feats = m._memory_features(a)
    with torch.no_grad():
        x = a.clean(torch.arange(100))
        h = m.encoder[0](x)
        chunks = [(c - c.mean(0)) / torch.sqrt(c.var(0, unbiased=False) + bn.eps) for c in h.split(50)]
        expected = torch.nn.functional.normalize(torch.cat(chunks) * bn.weight + bn.bias, dim=1)
    torch.testing.assert_close(feats, expected, rtol=1e-4, atol=1e-5)
    assert torch.equal(bn.running_mean, before[0]) and torch.equal(bn.running_var, before[1])
    assert int(bn.num_batches_tracked) == before[2] and m.encoder.training
    running = UEM(ctx, {"memory_bn": "running"})
    torch.testing.assert_close(running._memory_features(a), running.encode_all(a))


def test_alpha_schedule_one_clusters_from_the_first_epoch():
    a = _domain("a", [0, 1, 2, 3], 30, 0.0, seed=1).unlabeled()
    b = _domain("b", [0, 1, 2, 3], 30, 2.0, seed=2).unlabeled()
    over = {"idse_epochs": 6, "cdsm_epochs": 1}
    # Eq. 10 with E = 6: alpha(e) = 1 / (1 + e^(3 - e)); clustering starts once alpha >= cluster_alpha_min
    # = 0.2, i.e. e >= 3 - ln 4 = 1.61 -> epoch 2; with alpha = 1 throughout it starts at epoch 0
    ramp = _fit(a, b, seed=5, cluster_alpha_min=0.2, **over)
    one = _fit(a, b, seed=5, cluster_alpha_min=0.2, alpha_schedule="one", **over)
    first = [min(c["epoch"] for c in m.info["clusterings"] if c["stage"] == 1) for m in (ramp, one)]
    assert first == [2, 0]
    assert not np.array_equal(ramp.embed(a), one.embed(a))
    with pytest.raises(UserError, match="alpha_schedule"):
        UEM(_ctx(), {"alpha_schedule": "step"})

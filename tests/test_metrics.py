"""Retrieval metrics against naive per-query loops (random data) and hand-computed cases (edge cases)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.distance import cdist

from u2cdr_bench.errors import UserError
from u2cdr_bench.metrics import (
    METRICS,
    evaluate,
    false_rejection_rate,
    map_all,
    map_all_standard,
    map_at_r,
    openset_accuracy,
    openset_binary_accuracy,
    per_query_ap,
    precision_at_k,
)

# ---------------------------------------------------------------------------------------------------------
# Naive references: one query at a time, whole gallery sorted with a stable argsort (ties -> lower index)
# ---------------------------------------------------------------------------------------------------------


def naive_rankings(qf: np.ndarray, ql: np.ndarray, gf: np.ndarray, gl: np.ndarray):
    """Yield (query index, relevance flags of the Euclidean ranking) for queries with a relevant item."""
    dist = cdist(qf.astype(np.float64), gf.astype(np.float64), "euclidean")
    for i in range(ql.size):
        order = np.argsort(dist[i], kind="stable")
        rel = gl[order] == ql[i]
        if rel.any():
            yield i, rel


def naive_voc_ap(rel: np.ndarray) -> float:
    """CoDA's eval_AP_inner + VOCap written out: area under the right-to-left monotone PR envelope."""
    tp = np.cumsum(rel)
    fp = np.cumsum(~rel)
    rec = list(tp / rel.sum())
    prec = list(tp / (tp + fp))
    mrec = [0.0, *rec, 1.0]
    mpre = [0.0, *prec, 0.0]
    for i in range(len(mpre) - 2, -1, -1):
        mpre[i] = max(mpre[i], mpre[i + 1])
    return sum((mrec[i + 1] - mrec[i]) * mpre[i + 1] for i in range(len(mrec) - 1) if mrec[i + 1] != mrec[i])


def naive_standard_ap(rel: np.ndarray) -> float:
    prec = np.cumsum(rel) / np.arange(1, rel.size + 1)
    return float(prec[rel].sum() / rel.sum())


def naive_ap_at_r(rel: np.ndarray) -> float:
    r = int(rel.sum())
    prec = np.cumsum(rel[:r]) / np.arange(1, r + 1)
    return float(prec[rel[:r]].sum() / r)


def naive_map_all(qf, ql, gf, gl) -> float:
    per_class: dict[int, list[float]] = {}
    for i, rel in naive_rankings(qf, ql, gf, gl):
        per_class.setdefault(int(ql[i]), []).append(naive_voc_ap(rel))
    if not per_class:
        return float("nan")
    return 100.0 * float(np.mean([np.mean(v) for v in per_class.values()]))


def naive_query_mean(qf, ql, gf, gl, ap_fn) -> float:
    values = [ap_fn(rel) for _, rel in naive_rankings(qf, ql, gf, gl)]
    return 100.0 * float(np.mean(values)) if values else float("nan")


def naive_p_at_k(qf, ql, gf, gl, ks) -> dict[int, float]:
    """UCDIR retrieval_precision_cal: cosine, top min(K, R_q), hits and K_q pooled over queries."""
    gn = gf / np.linalg.norm(gf, axis=1, keepdims=True)
    hits = dict.fromkeys(ks, 0)
    total = dict.fromkeys(ks, 0)
    for i in range(ql.size):
        qn = qf[i] / np.linalg.norm(qf[i])
        order = np.argsort(1.0 - (gn * qn).sum(axis=1), kind="stable")
        rel = gl[order] == ql[i]
        for k in ks:
            k_q = min(k, int(rel.sum()))
            hits[k] += int(rel[:k_q].sum())
            total[k] += k_q
    return {k: (100.0 * hits[k] / total[k] if total[k] else float("nan")) for k in ks}


# ---------------------------------------------------------------------------------------------------------
# Random data: non-contiguous (also negative) labels, query-only classes, a gallery-only class
# ---------------------------------------------------------------------------------------------------------


def make_data(seed: int, nq: int, ng: int, n_classes: int, n_absent: int, dim: int, integer: bool):
    rng = np.random.default_rng(seed)
    classes = np.sort(rng.choice(np.arange(-40, 5000), n_classes, replace=False))
    ql = rng.choice(classes, nq)
    gl = rng.choice(np.append(classes[n_absent:], 10**6), ng)  # classes[:n_absent] are query-only
    code = {int(c): i for i, c in enumerate(np.append(classes, 10**6))}
    if integer:  # small integers: many exactly tied distances
        centres = rng.integers(-2, 3, (n_classes + 1, dim))
        qf = centres[[code[int(c)] for c in ql]] + rng.integers(-1, 2, (nq, dim))
        gf = centres[[code[int(c)] for c in gl]] + rng.integers(-1, 2, (ng, dim))
        return qf.astype(np.float32), ql, gf.astype(np.float32), gl
    centres = rng.standard_normal((n_classes + 1, dim))
    qf = centres[[code[int(c)] for c in ql]] + 0.8 * rng.standard_normal((nq, dim))
    gf = centres[[code[int(c)] for c in gl]] + 0.8 * rng.standard_normal((ng, dim))
    return qf.astype(np.float32), ql, gf.astype(np.float32), gl


CASES = [
    # seed, nq, ng, classes, query-only classes, dim, integer features
    (0, 40, 50, 2, 0, 3, True),
    (1, 40, 50, 2, 0, 4, False),
    (2, 150, 200, 7, 2, 3, True),
    (3, 150, 200, 7, 2, 6, False),
    (4, 200, 300, 31, 5, 4, True),
    (5, 200, 300, 31, 5, 8, False),
]


@pytest.mark.parametrize("case", CASES)
def test_map_variants_match_naive_loops(case) -> None:
    qf, ql, gf, gl = make_data(*case)
    integer = case[-1]
    if integer:  # the case really has ties between relevant and irrelevant items
        d = cdist(qf, gf)
        assert any(np.unique(row).size < row.size for row in d)
    assert np.isin(ql, gl).sum() < ql.size or case[4] == 0  # some queries excluded where intended
    expected_all = naive_map_all(qf, ql, gf, gl)
    assert map_all(qf, ql, gf, gl, chunk=17) == pytest.approx(expected_all, abs=1e-10)
    assert map_all(qf, ql, gf, gl) == pytest.approx(expected_all, abs=1e-10)
    assert map_all_standard(qf, ql, gf, gl, chunk=17) == pytest.approx(
        naive_query_mean(qf, ql, gf, gl, naive_standard_ap), abs=1e-10
    )
    assert map_at_r(qf, ql, gf, gl, chunk=17) == pytest.approx(
        naive_query_mean(qf, ql, gf, gl, naive_ap_at_r), abs=1e-10
    )


@pytest.mark.parametrize("case", CASES[:4])
def test_per_query_ap_matches_naive_and_voc_dominates(case) -> None:
    qf, ql, gf, gl = make_data(*case)
    ap = per_query_ap(qf, ql, gf, gl, chunk=9)
    seen = np.zeros(ql.size, dtype=bool)
    for i, rel in naive_rankings(qf, ql, gf, gl):
        seen[i] = True
        assert ap.voc[i] == pytest.approx(naive_voc_ap(rel), abs=1e-12)
        assert ap.standard[i] == pytest.approx(naive_standard_ap(rel), abs=1e-12)
        assert ap.at_r[i] == pytest.approx(naive_ap_at_r(rel), abs=1e-12)
    assert np.all(np.isnan(ap.voc[~seen])) and np.all(np.isnan(ap.at_r[~seen]))
    assert np.all(ap.voc[seen] >= ap.standard[seen] - 1e-15)


@pytest.mark.parametrize("case", [c for c in CASES if not c[-1]])
def test_precision_at_k_matches_naive_loop(case) -> None:
    qf, ql, gf, gl = make_data(*case)
    ks = (1, 5, 15, 64)  # 64 > Ng for the smallest case
    got = precision_at_k(qf, ql, gf, gl, ks=ks)
    expected = naive_p_at_k(qf.astype(np.float64), ql, gf.astype(np.float64), gl, ks)
    assert list(got) == list(ks)
    for k in ks:
        assert got[k] == pytest.approx(expected[k], abs=1e-10)


# ---------------------------------------------------------------------------------------------------------
# Hand-computed cases
# ---------------------------------------------------------------------------------------------------------


def line(*xs: float) -> np.ndarray:
    """1-D points as ``[N, 1]`` features."""
    return np.array(xs, dtype=np.float64)[:, None]


def test_single_relevant_at_rank_three_of_five() -> None:
    q, ql = line(0), np.array([1])
    g, gl = line(1, 2, 3, 4, 5), np.array([0, 0, 1, 0, 0])
    # ranking = gallery order; the only relevant item at rank 3: P(3) = 1/3 for both AP variants
    assert map_all(q, ql, g, gl) == pytest.approx(100 / 3)
    assert map_all_standard(q, ql, g, gl) == pytest.approx(100 / 3)
    assert map_at_r(q, ql, g, gl) == 0.0  # R = 1 and the top-1 item is irrelevant


def test_interpolation_lifts_voc_ap_above_standard_ap() -> None:
    q, ql = line(0), np.array([1])
    g, gl = line(1, 2, 3, 4, 5, 6), np.array([0, 1, 0, 0, 1, 1])
    # relevant ranks 2, 5, 6 -> P = 1/2, 2/5, 3/6
    # standard AP = (1/2 + 2/5 + 1/2) / 3 = 1.4 / 3 = 0.46667
    # VOC envelope: max(1/2, 2/5, 1/2) = 1/2, max(2/5, 1/2) = 1/2, 1/2 -> AP = 1/2
    # MAP@R: R = 3, top 3 = [0, 1, 0] -> P(2) = 1/2 -> (1/2) / 3 = 1/6
    assert map_all(q, ql, g, gl) == pytest.approx(50.0)
    assert map_all_standard(q, ql, g, gl) == pytest.approx(140 / 3)
    assert map_at_r(q, ql, g, gl) == pytest.approx(100 / 6)


def test_ties_are_broken_by_lower_gallery_index() -> None:
    q = line(0)
    g = line(-1, 1)  # both at distance 1
    assert map_all(q, np.array([1]), g, np.array([1, 0])) == pytest.approx(100.0)  # relevant index 0 first
    assert map_all(q, np.array([1]), g, np.array([0, 1])) == pytest.approx(50.0)  # relevant index 1 second
    g = line(2, -1, 1, -2, 3)  # distances 2, 1, 1, 2, 3
    gl = np.array([1, 0, 1, 0, 1])
    # stable order: idx 1 (d1, no), idx 2 (d1, yes), idx 0 (d2, yes), idx 3 (d2, no), idx 4 (d3, yes)
    # relevant ranks 2, 3, 5 -> P = 1/2, 2/3, 3/5
    # standard = (1/2 + 2/3 + 3/5) / 3 = 53/90; VOC = (2/3 + 2/3 + 3/5) / 3 = 29/45
    # MAP@R: top 3 = [no, yes, yes] -> (1/2 + 2/3) / 3 = 7/18
    assert map_all_standard(q, np.array([1]), g, gl) == pytest.approx(100 * 53 / 90)
    assert map_all(q, np.array([1]), g, gl) == pytest.approx(100 * 29 / 45)
    assert map_at_r(q, np.array([1]), g, gl) == pytest.approx(100 * 7 / 18)


def test_class_mean_and_absent_query_classes() -> None:
    g, gl = line(0, 10, 20, 30), np.array([5, 5, 7, 7])
    q, ql = line(0, 12, 0, 100), np.array([5, 5, 7, 99])
    # q0 (class 5): ranking [5, 5, 7, 7]           -> VOC 1, standard 1, MAP@R 1
    # q1 (class 5): distances 12, 2, 8, 18 -> [5, 7, 5, 7] -> P = 1, 2/3 -> VOC = standard = 5/6, MAP@R 1/2
    # q2 (class 7): ranking [5, 5, 7, 7] -> P = 1/3, 1/2 -> VOC = 1/2, standard = 5/12, MAP@R 0
    # q3 (class 99): absent from the gallery -> excluded everywhere
    # map_all = mean(mean(1, 5/6), 1/2) = (11/12 + 1/2) / 2 = 17/24; standard = (1 + 5/6 + 5/12) / 3 = 3/4
    assert map_all(q, ql, g, gl) == pytest.approx(100 * 17 / 24)
    assert map_all_standard(q, ql, g, gl) == pytest.approx(75.0)
    assert map_at_r(q, ql, g, gl) == pytest.approx(50.0)
    assert map_all(q[:3], ql[:3], g, gl) == map_all(q, ql, g, gl)
    ap = per_query_ap(q, ql, g, gl)
    np.testing.assert_allclose(ap.voc, [1.0, 5 / 6, 0.5, np.nan])
    np.testing.assert_allclose(ap.standard, [1.0, 5 / 6, 5 / 12, np.nan])


def test_all_queries_private_gives_nan() -> None:
    q, ql = line(0, 1), np.array([3, 4])
    g, gl = line(0, 1, 2), np.array([0, 1, 1])
    assert np.isnan(map_all(q, ql, g, gl))
    assert np.isnan(map_all_standard(q, ql, g, gl))
    assert np.isnan(map_at_r(q, ql, g, gl))
    assert all(np.isnan(v) for v in precision_at_k(q, ql, g, gl).values())
    out = evaluate(q, ql, g, gl, private_pred=np.array([True, False]))
    assert out["openset_accuracy"] == 50.0
    assert np.isnan(out["false_rejection"])  # no shared query
    assert np.isnan(map_all(q[:0], ql[:0], g, gl))  # no query at all


def test_precision_at_k_caps_k_at_r_and_pools_over_queries() -> None:
    g = np.array([[1, 0.1], [1, 0.2], [1, 0.3], [1, 0.5], [1, 0.8]])
    gl = np.array([0, 1, 0, 1, 1])
    q = np.array([[1.0, 0.0], [1.0, 1.0], [0.0, 1.0]])
    ql = np.array([0, 1, 9])
    # q0 (angle 0): order g0 g1 g2 g3 g4 -> rel [1 0 1 0 0], R = 2
    # q1 (angle 45°): order g4 g3 g2 g1 g0 -> rel [1 1 0 1 0], R = 3
    # q2: class 9 absent -> excluded
    # P@1: (1 + 1) / (1 + 1) = 100; P@5: K_q = 2, 3 -> hits 1, 2 -> 3 / 5 = 60; P@15: same as P@5
    # (the mean of per-query ratios would be (1/2 + 2/3) / 2 = 58.3)
    got = precision_at_k(q, ql, g, gl, ks=(1, 5, 15))
    assert got == pytest.approx({1: 100.0, 5: 60.0, 15: 60.0})


def test_precision_at_k_ties_by_lower_index() -> None:
    q, ql = np.array([[1.0, 0.0]]), np.array([0])
    g = np.array([[0.0, 1.0], [0.0, 2.0], [-1.0, 0.0]])  # cosine distances 1, 1, 2
    # labels [1, 0, 0]: R = 2; top-2 = g0 (no), g1 (yes)
    assert precision_at_k(q, ql, g, np.array([1, 0, 0]), ks=(1, 5)) == {1: 0.0, 5: 50.0}
    assert precision_at_k(q, ql, g, np.array([0, 1, 0]), ks=(1, 5)) == {1: 100.0, 5: 50.0}


def test_openset_metrics() -> None:
    truth = np.array([True, True, True, False, False])
    pred = np.array([1, 0, 1, 1, 0])
    assert openset_accuracy(truth, pred) == pytest.approx(200 / 3)
    assert false_rejection_rate(truth, pred) == pytest.approx(50.0)
    # binary reading: right flags on q0, q2, q4 -> 3 / 5; = (200/3 * 3 + (100 - 50) * 2) / 5
    assert openset_binary_accuracy(truth, pred) == pytest.approx(60.0)
    assert openset_binary_accuracy(truth, np.zeros(5, bool)) == pytest.approx(
        40.0
    )  # flag nothing: shared share
    assert np.isnan(openset_binary_accuracy(truth[:0], pred[:0]))
    assert np.isnan(openset_accuracy(~truth[:0], pred[:0]))
    assert np.isnan(openset_accuracy(np.zeros(3, bool), np.ones(3, bool)))
    assert np.isnan(false_rejection_rate(np.ones(3, bool), np.ones(3, bool)))
    with pytest.raises(UserError):
        openset_accuracy(truth, np.array([2, 0, 1, 1, 0]))
    with pytest.raises(UserError):
        false_rejection_rate(truth, pred[:4])


# ---------------------------------------------------------------------------------------------------------
# Registry, evaluate, input checks
# ---------------------------------------------------------------------------------------------------------


def test_registry_names_and_descriptors() -> None:
    assert METRICS.names() == [
        "map_all",
        "map_all_standard",
        "p@1",
        "p@5",
        "p@15",
        "map_at_r",
        "openset_accuracy",
        "false_rejection",
        "openset_binary_accuracy",
    ]
    assert all(e.summary for e in METRICS)
    assert [e.name for e in METRICS if not e.obj.higher_is_better] == ["false_rejection"]
    qf, ql, gf, gl = make_data(*CASES[3])
    assert METRICS.get("p@5").fn(qf, ql, gf, gl) == precision_at_k(qf, ql, gf, gl)[5]
    assert METRICS.get("map_all").fn(qf, ql, gf, gl) == map_all(qf, ql, gf, gl)
    assert METRICS.get("false_rejection").inputs == "openset"


def test_evaluate_returns_registry_keys_and_same_values() -> None:
    qf, ql, gf, gl = make_data(*CASES[3])
    truth = ~np.isin(ql, gl)
    assert truth.any() and (~truth).any()
    pred = truth.copy()
    pred[np.flatnonzero(~truth)[:10]] = True  # 10 shared queries wrongly rejected
    out = evaluate(qf, ql, gf, gl, private_pred=pred)
    assert list(out) == METRICS.names()
    assert out["map_all"] == pytest.approx(map_all(qf, ql, gf, gl), abs=1e-12)
    assert out["map_all_standard"] == pytest.approx(map_all_standard(qf, ql, gf, gl), abs=1e-12)
    assert out["map_at_r"] == pytest.approx(map_at_r(qf, ql, gf, gl), abs=1e-12)
    p = precision_at_k(qf, ql, gf, gl)
    assert [out["p@1"], out["p@5"], out["p@15"]] == [p[1], p[5], p[15]]
    assert out["openset_accuracy"] == 100.0
    assert out["false_rejection"] == pytest.approx(100 * 10 / (~truth).sum())
    assert out["openset_binary_accuracy"] == pytest.approx(100 * (1 - 10 / truth.size))
    plain = evaluate(qf, ql, gf, gl, ks=(1, 50))
    assert list(plain) == ["map_all", "map_all_standard", "p@1", "p@50", "map_at_r"]


def test_bad_inputs_raise_user_error() -> None:
    q, g = np.zeros((3, 2)), np.zeros((4, 2))
    ql, gl = np.array([0, 1, 2]), np.array([0, 1, 2, 3])
    with pytest.raises(UserError):
        map_all(q, ql[:2], g, gl)
    with pytest.raises(UserError):
        map_all(q, ql.astype(float), g, gl)
    with pytest.raises(UserError):
        map_all(q, ql, np.zeros((4, 3)), gl)
    with pytest.raises(UserError):
        map_all(q, ql[:, None], g, gl)
    with pytest.raises(UserError):
        map_all(np.full((3, 2), np.inf), ql, g, gl)
    with pytest.raises(UserError):
        map_all(q, ql, g, gl, chunk=0)
    for ks in [(), (0,), (1.5,)]:
        with pytest.raises(UserError):
            precision_at_k(q, ql, g, gl, ks=ks)
    with pytest.raises(UserError):
        evaluate(q, ql, g, gl, private_pred=np.array([True]))

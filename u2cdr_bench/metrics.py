"""Retrieval and open-set metrics (paper-spec §4, anchors §11). Pure functions over numpy arrays.

Notation (anchors §11): query q with label y_q; the gallery ranked by ascending distance to q;
rel_q(i) = 1 when the i-th ranked gallery item has label y_q; R_q = number of gallery items with label y_q;
P_q(i) = (1/i)·Σ_{j≤i} rel_q(j); r_k = rank (1-based) of the k-th relevant item, so P_q(r_k) = k / r_k.

* ``map_all`` — the paper's mAP@All (paper-spec §4.1), identical to CoDA's ``cal_map_sda``: Euclidean distance
  on the given (unnormalised) features, the whole gallery ranked, VOC-interpolated AP per query
  AP_q = (1/R_q)·Σ_{k=1..R_q} max_{m≥k} P_q(r_m), averaged within each query class, then over query classes.
* ``map_all_standard`` — non-interpolated AP_q = (1/R_q)·Σ_{i=1..|G|} P_q(i)·rel_q(i), averaged over queries.
* ``p@K`` — UCDIR's P@K: cosine similarity, K_q = min(K, R_q), P@K = Σ_q hits_q(K_q) / Σ_q K_q.
* ``map_at_r`` — Musgrave et al.'s MAP@R: (1/R_q)·Σ_{i=1..R_q} P_q(i)·rel_q(i), averaged over queries.
* ``openset_accuracy`` / ``false_rejection`` — share of private / shared queries flagged private (§4.2).
* ``openset_binary_accuracy`` — share of all queries flagged correctly (the other reading of §4.2, §7 #17).

Conventions shared by all retrieval metrics:

* **Exclusion.** Queries whose class has no gallery item (R_q = 0, e.g. private classes in open-set) do not
  count at all, in numerators or denominators; when no query is left the metric is ``nan``. This makes
  ``map_all`` on open-set data the paper's "Shared-set mAP@All" (the gallery holds shared classes only);
  the private-query detector does not change it.
* **Ties.** Equal distances are ranked by ascending gallery index (a stable sort). CoDA uses an unstable
  ``np.argsort(-scores)``, so on exact ties its value is implementation-defined; ours is deterministic.
* **Labels** may be any integers (non-contiguous, negative): classes are matched by value, so CoDA's
  per-class-bin pitfall (bins indexed by raw label, sized by the number of labels) cannot occur.
* All values are percentages (×100).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal, NamedTuple

import numpy as np

from .errors import UserError
from .registry import Registry
from .retrieval import _as_2d_float, knn

# ---------------------------------------------------------------------------------------------------------
# Input checks
# ---------------------------------------------------------------------------------------------------------


def _as_labels(labels: np.ndarray, n: int, name: str) -> np.ndarray:
    arr = np.asarray(labels)
    if arr.ndim != 1:
        raise UserError(f"{name} must be a 1-D array of integer labels; got shape {arr.shape}.")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise UserError(f"{name} must hold integer labels; got dtype {arr.dtype}.")
    if arr.shape[0] != n:
        raise UserError(f"{name} has {arr.shape[0]} entries but there are {n} feature rows.")
    return arr.astype(np.int64)


def _check_retrieval_inputs(
    q_feats: np.ndarray, q_labels: np.ndarray, g_feats: np.ndarray, g_labels: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    q = _as_2d_float(q_feats, "query features")
    g = _as_2d_float(g_feats, "gallery features")
    if q.shape[1] != g.shape[1]:
        raise UserError(
            f"query and gallery features must have the same dimension; got {q.shape[1]} and {g.shape[1]}."
        )
    ql = _as_labels(q_labels, q.shape[0], "query labels")
    gl = _as_labels(g_labels, g.shape[0], "gallery labels")
    return q, ql, g, gl


def _check_chunk(chunk: int) -> int:
    if int(chunk) < 1:
        raise UserError(f"chunk must be a positive integer; got {chunk}.")
    return int(chunk)


def _relevant_counts(q_labels: np.ndarray, g_labels: np.ndarray) -> np.ndarray:
    """R_q for every query: the number of gallery items sharing its label, ``[Nq]`` int64."""
    classes, counts = np.unique(g_labels, return_counts=True)
    if classes.size == 0:
        return np.zeros(q_labels.shape[0], dtype=np.int64)
    pos = np.minimum(np.searchsorted(classes, q_labels), classes.size - 1)
    return np.where(classes[pos] == q_labels, counts[pos], 0).astype(np.int64)


# ---------------------------------------------------------------------------------------------------------
# Whole-gallery ranking (mAP@All, standard mAP, MAP@R)
# ---------------------------------------------------------------------------------------------------------


class PerQueryAP(NamedTuple):
    """Per-query values as fractions in [0, 1], ``[Nq]`` float64 each; ``nan`` where R_q = 0.

    Attributes:
        voc: VOC-interpolated AP (CoDA's ``VOCap``), the per-query term of ``map_all``.
        standard: non-interpolated AP over the whole ranking, the term of ``map_all_standard``.
        at_r: MAP@R, the term of ``map_at_r``.
    """

    voc: np.ndarray
    standard: np.ndarray
    at_r: np.ndarray


def _band_ranks(row: np.ndarray, rel_idx: np.ndarray, steps: np.ndarray) -> np.ndarray:
    """1-based ascending ranks of the relevant items under the stable (distance, index) order of ``row``.

    ``row`` [Ng] holds the (clamped, float64) squared distances of one query, ``rel_idx`` [R] the gallery
    indices of its relevant items, ``steps`` is ``arange(R)``. With ``s_1 <= ... <= s_R`` the sorted relevant
    distances, the k-th relevant item (0-based k) has rank ``k + c_k + 1``, ``c_k`` the number of irrelevant
    items ranked before it; only items with distance ``<= s_R`` can be (the *band*), so only the band is
    sorted, and in float32: rounding to float32 is monotone, so an irrelevant item whose float32 value
    differs from every relevant one is ordered exactly as its float64 distance. When an irrelevant item
    shares a float32 value with a relevant one, the band is ranked again in float64 (the same rule as before:
    ``#{j: d_j < s_k} + #{relevant m < k with s_m = s_k} + 1``), and when it shares the float64 value too, the
    row is ranked with a stable argsort. The result equals ranking the whole row with a stable argsort.
    """
    s = np.sort(row[rel_idx])
    band = np.compress(row <= s[-1], row)
    b32 = np.empty(band.size + 1, dtype=np.float32)
    b32[:-1] = band
    b32[:-1].sort()
    b32[-1] = np.inf  # sentinel: b32[left + 1] always exists
    s32 = s.astype(np.float32)
    left = np.searchsorted(b32, s32, side="left")
    # b32[left] is the item itself; another item with the same float32 value (an irrelevant twin, or a
    # relevant one) sits right after it, and only then is the general rule needed
    if not np.any(b32[left + 1] == s32):
        return left + 1
    right = np.searchsorted(b32, s32, side="right")
    s_lo = np.searchsorted(s32, s32, side="left")
    s_hi = np.searchsorted(s32, s32, side="right")
    if np.array_equal(right - left, s_hi - s_lo):
        return left + (steps - s_lo) + 1
    band.sort()
    lo = np.searchsorted(band, s, side="left")
    hi = np.searchsorted(band, s, side="right")
    s_lo = np.searchsorted(s, s, side="left")
    s_hi = np.searchsorted(s, s, side="right")
    if np.array_equal(hi - lo, s_hi - s_lo):
        return lo + (steps - s_lo) + 1
    order = np.argsort(row, kind="stable")
    is_rel = np.zeros(row.size, dtype=bool)
    is_rel[rel_idx] = True
    return np.flatnonzero(is_rel[order]) + 1


def per_query_ap(
    q_feats: np.ndarray, q_labels: np.ndarray, g_feats: np.ndarray, g_labels: np.ndarray, chunk: int = 512
) -> PerQueryAP:
    """VOC AP, standard AP and MAP@R of every query over the Euclidean ranking of the whole gallery.

    With r_1 < … < r_R the ranks of the R = R_q relevant items and P_k = k / r_k:

    * voc = (1/R)·Σ_k max_{m≥k} P_m — CoDA's ``VOCap``: the precision envelope made monotone non-increasing
      from the right, summed over the recall steps 1/R;
    * standard = (1/R)·Σ_k P_k;
    * at_r = (1/R)·Σ_{k: r_k ≤ R} P_k.

    Distances are squared Euclidean in float64, ``max(0, ||q||² + ||g||² - 2 q·g)`` (the values of
    :func:`~u2cdr_bench.retrieval.iter_sq_euclidean_chunks`), which rank exactly as the true distance.
    Queries are processed ``chunk`` at a time (one BLAS product per chunk, memory about ``8·chunk·Ng`` bytes);
    each query's relevant ranks come from :func:`_band_ranks`, which sorts only the items up to the farthest
    relevant one (in float32, exact by construction).

    Args:
        q_feats: ``[Nq, D]`` query features (unnormalised). q_labels: ``[Nq]`` integer labels.
        g_feats: ``[Ng, D]`` gallery features. g_labels: ``[Ng]`` integer labels.
        chunk: queries per distance block.

    Returns:
        :class:`PerQueryAP` with fractions in [0, 1] (not percentages), ``nan`` where R_q = 0.
    """
    chunk = _check_chunk(chunk)
    q, ql, g, gl = _check_retrieval_inputs(q_feats, q_labels, g_feats, g_labels)
    n_q = q.shape[0]
    voc = np.full(n_q, np.nan)
    std = np.full(n_q, np.nan)
    at_r = np.full(n_q, np.nan)
    r_q = _relevant_counts(ql, gl)
    included = np.flatnonzero(r_q > 0)
    if included.size == 0:
        return PerQueryAP(voc, std, at_r)
    g_order = np.argsort(gl, kind="stable")
    g_classes, g_start, g_count = np.unique(gl[g_order], return_index=True, return_counts=True)
    rel_of = {
        int(c): np.sort(g_order[s : s + n]) for c, s, n in zip(g_classes, g_start, g_count, strict=True)
    }
    steps = {int(c): np.arange(n) for c, n in zip(g_classes, g_count, strict=True)}
    counts = {c: st + 1 for c, st in steps.items()}
    g64 = np.ascontiguousarray(g, dtype=np.float64)
    g_sq = np.einsum("ij,ij->i", g64, g64)
    for start in range(0, included.size, chunk):
        rows = included[start : start + chunk]
        qc = np.asarray(q[rows], dtype=np.float64)
        # (-2 q) @ g.T equals -2 (q @ g.T) bit for bit (scaling by a power of two is exact)
        dist = (-2.0 * qc) @ g64.T
        q_sq = np.einsum("ij,ij->i", qc, qc)
        for r, qi in enumerate(rows):
            row = dist[r]
            row += q_sq[r]
            row += g_sq
            np.maximum(row, 0.0, out=row)
            label = int(ql[qi])
            ranks = _band_ranks(row, rel_of[label], steps[label])
            n_rel = ranks.size
            prec = counts[label] / ranks
            # np.add.reduce(x) / n is np.mean(x) bit for bit; ranks ascend, so ranks <= R is a prefix
            voc[qi] = np.add.reduce(np.maximum.accumulate(prec[::-1])[::-1]) / n_rel
            std[qi] = np.add.reduce(prec) / n_rel
            at_r[qi] = np.add.reduce(prec[: np.searchsorted(ranks, n_rel, side="right")]) / n_rel
    return PerQueryAP(voc, std, at_r)


def _class_mean(values: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of the within-class mean of the non-nan ``values``; nan when all are nan."""
    keep = ~np.isnan(values)
    if not keep.any():
        return float("nan")
    classes, inverse = np.unique(labels[keep], return_inverse=True)
    sums = np.bincount(inverse, weights=values[keep], minlength=classes.size)
    counts = np.bincount(inverse, minlength=classes.size)
    return float(np.mean(sums / counts))


def _query_mean(values: np.ndarray) -> float:
    keep = ~np.isnan(values)
    return float(values[keep].mean()) if keep.any() else float("nan")


def map_all(
    q_feats: np.ndarray, q_labels: np.ndarray, g_feats: np.ndarray, g_labels: np.ndarray, chunk: int = 512
) -> float:
    """The paper's mAP@All (paper-spec §4.1), equal to CoDA's ``cal_map_sda``, in %.

    Score = −‖q − g‖₂ on the given features; for each query the whole gallery is ranked by ascending distance
    (ties by ascending gallery index) and the VOC-interpolated AP is taken:
    AP_q = (1/R_q)·Σ_{k=1..R_q} max_{m≥k} P_q(r_m). Then
    mAP@All = 100 · (1/|Y_q|)·Σ_{y∈Y_q} (1/|Q_y|)·Σ_{q∈Q_y} AP_q,
    where Y_q are the query classes present in the gallery and Q_y the queries of class y. Queries whose class
    is absent from the gallery are excluded; nan when no query is left.

    Args:
        q_feats: ``[Nq, D]``; q_labels: ``[Nq]`` ints; g_feats: ``[Ng, D]``; g_labels: ``[Ng]`` ints.
        chunk: queries per distance block (peak memory about ``3·8·chunk·Ng`` bytes plus the inputs).
    """
    ap = per_query_ap(q_feats, q_labels, g_feats, g_labels, chunk)
    return 100.0 * _class_mean(ap.voc, np.asarray(q_labels))


def map_all_standard(
    q_feats: np.ndarray, q_labels: np.ndarray, g_feats: np.ndarray, g_labels: np.ndarray, chunk: int = 512
) -> float:
    """mAP@All with non-interpolated AP, averaged over queries (not per class), in %.

    AP_q = (1/R_q)·Σ_{i=1..|G|} P_q(i)·rel_q(i) over the Euclidean ranking of the whole gallery (PML
    ``mean_average_precision`` with ``k=None``); result = 100·mean_q AP_q over queries with R_q > 0.
    Always ≤ the VOC-interpolated AP per query. Same tie rule and exclusions as :func:`map_all`.
    """
    ap = per_query_ap(q_feats, q_labels, g_feats, g_labels, chunk)
    return 100.0 * _query_mean(ap.standard)


def map_at_r(
    q_feats: np.ndarray, q_labels: np.ndarray, g_feats: np.ndarray, g_labels: np.ndarray, chunk: int = 512
) -> float:
    """MAP@R (Musgrave et al., "A Metric Learning Reality Check") with Euclidean distance, in %.

    MAP@R_q = (1/R_q)·Σ_{i=1..R_q} P_q(i)·rel_q(i); result = 100·mean over queries with R_q > 0. It only
    depends on the top R_q neighbours; it is computed from the same exact float64 whole-gallery ranking as
    :func:`map_all` (ties by ascending gallery index), which is exact for every R_q at once.
    """
    ap = per_query_ap(q_feats, q_labels, g_feats, g_labels, chunk)
    return 100.0 * _query_mean(ap.at_r)


# ---------------------------------------------------------------------------------------------------------
# P@K (UCDIR)
# ---------------------------------------------------------------------------------------------------------


def _check_ks(ks: Sequence[int]) -> tuple[int, ...]:
    arr = np.asarray(list(ks))
    if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) or np.any(arr < 1):
        raise UserError(f"ks must be a non-empty list of positive integers; got {list(ks)}.")
    return tuple(int(k) for k in arr)


def precision_at_k(
    q_feats: np.ndarray,
    q_labels: np.ndarray,
    g_feats: np.ndarray,
    g_labels: np.ndarray,
    ks: Sequence[int] = (1, 5, 15),
    chunk: int = 1024,
) -> dict[int, float]:
    """UCDIR's P@K (``retrieval_precision_cal``; anchors §11.1), in %.

    Similarity is the cosine on L2-normalised features (ties by ascending gallery index, see
    :func:`u2cdr_bench.retrieval.knn`). For each query, K_q = min(K, R_q) and hits_q = Σ_{i≤K_q} rel_q(i);
    P@K = 100 · Σ_q hits_q / Σ_q K_q (pooled over queries, R-capped denominator). Queries with R_q = 0 are
    excluded; nan when none is left.

    Args:
        q_feats: ``[Nq, D]``; q_labels: ``[Nq]`` ints; g_feats: ``[Ng, D]``; g_labels: ``[Ng]`` ints.
        ks: the K values, e.g. (1, 5, 15) for Office-Home and (50, 100, 200) for DomainNet.
        chunk: queries per faiss search.

    Returns:
        ``{K: P@K}`` for every K in ``ks``.
    """
    ks = _check_ks(ks)
    q, ql, g, gl = _check_retrieval_inputs(q_feats, q_labels, g_feats, g_labels)
    r_q = _relevant_counts(ql, gl)
    included = np.flatnonzero(r_q > 0)
    if included.size == 0:
        return {k: float("nan") for k in ks}
    k_max = min(max(ks), g.shape[0])
    _, idx = knn(q[included], g, k_max, metric="cosine", chunk=chunk)
    hits = np.cumsum(gl[idx] == ql[included][:, None], axis=1)  # [n, k_max]: hits among the top i+1
    out: dict[int, float] = {}
    for k in ks:
        k_q = np.minimum(k, r_q[included])  # 1 <= k_q <= k_max
        out[k] = 100.0 * float(hits[np.arange(included.size), k_q - 1].sum()) / float(k_q.sum())
    return out


# ---------------------------------------------------------------------------------------------------------
# Open-set detection (paper-spec §4.2)
# ---------------------------------------------------------------------------------------------------------


def _as_flags(x: np.ndarray, name: str) -> np.ndarray:
    arr = np.asarray(x)
    if arr.ndim != 1:
        raise UserError(f"{name} must be a 1-D array of booleans; got shape {arr.shape}.")
    if arr.dtype != bool:
        if arr.size and not np.all((arr == 0) | (arr == 1)):
            raise UserError(f"{name} must hold booleans (or 0/1).")
        arr = arr.astype(bool)
    return arr


def _check_flags(is_private_true: np.ndarray, is_private_pred: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = _as_flags(is_private_true, "is_private_true")
    p = _as_flags(is_private_pred, "is_private_pred")
    if t.shape != p.shape:
        raise UserError(f"is_private_true and is_private_pred differ in length ({t.size} vs {p.size}).")
    return t, p


def openset_accuracy(is_private_true: np.ndarray, is_private_pred: np.ndarray) -> float:
    """Open-set detection accuracy (paper-spec §4.2, "Open-set Acc"), in %.

    Acc = 100 · |{q private and flagged private}| / |{q private}|; nan when there is no private query.

    Args:
        is_private_true: ``[Nq]`` bool, the query's class is absent from the retrieval domain.
        is_private_pred: ``[Nq]`` bool, the detector flags the query as private (null retrieval).
    """
    t, p = _check_flags(is_private_true, is_private_pred)
    return 100.0 * float(p[t].mean()) if t.any() else float("nan")


def false_rejection_rate(is_private_true: np.ndarray, is_private_pred: np.ndarray) -> float:
    """False rejection rate, in %: 100 · |{q shared and flagged private}| / |{q shared}|.

    nan when there is no shared query. Arguments as in :func:`openset_accuracy`.
    """
    t, p = _check_flags(is_private_true, is_private_pred)
    return 100.0 * float(p[~t].mean()) if (~t).any() else float("nan")


def openset_binary_accuracy(is_private_true: np.ndarray, is_private_pred: np.ndarray) -> float:
    """Shared-vs-private detection accuracy over *all* queries, in %: 100 · |{q: flag(q) = private(q)}| / N_q.

    The other reading of the paper's "Open-set Acc" (paper-spec §4.2, §7 #17): with P private and S shared
    queries it equals (Acc · P + (100 − false rejection) · S) / (P + S), so a detector that flags nothing
    scores the shared share (50 % on the digits open-set splits). nan when there is no query.
    Arguments as in :func:`openset_accuracy`.
    """
    t, p = _check_flags(is_private_true, is_private_pred)
    return 100.0 * float((t == p).mean()) if t.size else float("nan")


# ---------------------------------------------------------------------------------------------------------
# Registry and one-call evaluation
# ---------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """What a registered metric computes.

    Attributes:
        fn: ``fn(q_feats, q_labels, g_feats, g_labels) -> float`` for ``inputs == "retrieval"``,
            ``fn(is_private_true, is_private_pred) -> float`` for ``inputs == "openset"``; values in %.
        higher_is_better: direction used by tables.
        inputs: which arguments ``fn`` takes.
    """

    fn: Callable[..., float]
    higher_is_better: bool
    inputs: Literal["retrieval", "openset"]


def _p_at(
    q_feats: np.ndarray, q_labels: np.ndarray, g_feats: np.ndarray, g_labels: np.ndarray, k: int
) -> float:
    return precision_at_k(q_feats, q_labels, g_feats, g_labels, ks=(k,))[k]


METRICS: Registry[MetricSpec] = Registry("metric")
METRICS.add(
    "map_all",
    MetricSpec(map_all, True, "retrieval"),
    "mAP@All as in CoDA/UEM: Euclidean, whole gallery, VOC-interpolated AP, mean over query classes (%)",
)
METRICS.add(
    "map_all_standard",
    MetricSpec(map_all_standard, True, "retrieval"),
    "mAP@All with non-interpolated AP, mean over queries (%)",
)
for _k in (1, 5, 15):
    METRICS.add(
        f"p@{_k}",
        MetricSpec(partial(_p_at, k=_k), True, "retrieval"),
        f"UCDIR precision@{_k}: cosine, top min({_k}, R_q), pooled over queries (%)",
    )
METRICS.add("map_at_r", MetricSpec(map_at_r, True, "retrieval"), "MAP@R (Musgrave et al.), Euclidean (%)")
METRICS.add(
    "openset_accuracy",
    MetricSpec(openset_accuracy, True, "openset"),
    "share of private-class queries flagged private (%)",
)
METRICS.add(
    "false_rejection",
    MetricSpec(false_rejection_rate, False, "openset"),
    "share of shared-class queries flagged private (%)",
)
METRICS.add(
    "openset_binary_accuracy",
    MetricSpec(openset_binary_accuracy, True, "openset"),
    "share of all queries whose private/shared flag is right (the binary reading of Open-set Acc, %)",
)


def evaluate(
    q_feats: np.ndarray,
    q_labels: np.ndarray,
    g_feats: np.ndarray,
    g_labels: np.ndarray,
    private_pred: np.ndarray | None = None,
    ks: Sequence[int] = (1, 5, 15),
) -> dict[str, float]:
    """All metrics of one retrieval direction (query domain → gallery domain), in %.

    Keys, in registry order: ``map_all``, ``map_all_standard``, ``p@K`` for each K in ``ks``, ``map_at_r``;
    with ``private_pred`` also ``openset_accuracy``, ``false_rejection`` and ``openset_binary_accuracy``,
    where the truth is
    is_private_true[q] = (q's label is not among the gallery labels). The whole-gallery ranking is computed
    once for the three mAP variants. With the default ``ks`` the keys are exactly the :data:`METRICS` names.

    Args:
        q_feats: ``[Nq, D]``; q_labels: ``[Nq]`` ints; g_feats: ``[Ng, D]``; g_labels: ``[Ng]`` ints.
        private_pred: optional ``[Nq]`` bool, the detector's private flags.
        ks: the P@K values.
    """
    ks = _check_ks(ks)
    q, ql, g, gl = _check_retrieval_inputs(q_feats, q_labels, g_feats, g_labels)
    ap = per_query_ap(q, ql, g, gl)
    out: dict[str, float] = {
        "map_all": 100.0 * _class_mean(ap.voc, ql),
        "map_all_standard": 100.0 * _query_mean(ap.standard),
    }
    for k, v in precision_at_k(q, ql, g, gl, ks).items():
        out[f"p@{k}"] = v
    out["map_at_r"] = 100.0 * _query_mean(ap.at_r)
    if private_pred is not None:
        pred = _as_flags(private_pred, "private_pred")
        if pred.size != ql.size:
            raise UserError(f"private_pred has {pred.size} entries but there are {ql.size} queries.")
        truth = ~np.isin(ql, gl)
        out["openset_accuracy"] = openset_accuracy(truth, pred)
        out["false_rejection"] = false_rejection_rate(truth, pred)
        out["openset_binary_accuracy"] = openset_binary_accuracy(truth, pred)
    return out


__all__ = [
    "METRICS",
    "MetricSpec",
    "PerQueryAP",
    "evaluate",
    "false_rejection_rate",
    "map_all",
    "map_all_standard",
    "map_at_r",
    "openset_accuracy",
    "openset_binary_accuracy",
    "per_query_ap",
    "precision_at_k",
]

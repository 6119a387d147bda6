r"""UEM's open-set (query-private) detector (paper-spec §2.6, App. B.1, Eqs. 25–27).

After training, with query features ``Q`` (domain A, ``[N_A, D]``) and gallery features ``G`` (domain B):

1. K-means on ``Q`` and on ``G`` (K by the Elbow method unless given) gives ``P^A`` and ``P^B``; ``P^B`` is
   translated into A by the difference of the feature means (Eq. 8), paired with ``P^A`` by the Hungarian
   algorithm and merged by Eq. 9 (:func:`u2cdr_bench.blocks.merging.merge_prototypes`).
2. For each merged pair ``c+ = (c, c')``, the member sets are the queries whose Euclidean-nearest A prototype
   is ``p^A_c`` and the gallery items whose nearest B prototype is ``p^B_{c'}`` (Eq. 26), and
   ``D_{c+} = max_{x in X^A_{c+}, y in X^B_{c+}} delta(x, y)`` (Eq. 25; ``-inf`` when a member set is empty).
3. A query is private iff its nearest A prototype is unmerged, or
   ``D^{A->B}_i = min_j delta(q_i, g_j) > D_{c+}`` of its merged prototype (Eq. 27).

Who is in ``X^A_{c+}`` when the queries are themselves the clustered set (the transductive protocol,
paper-spec §7 #14) is not said. Taken literally (``spread="all"``) a query ``q_i`` of cluster ``c`` is a
member, so ``D^{A->B}_i <= min_{y in X^B} delta(q_i, y) <= max_{y in X^B} delta(q_i, y) <= D_{c+}`` and
the distance rule can never fire (unless ``X^B_{c+}`` is empty). ``spread="loo"`` (default) leaves the query
out of its own threshold, ``D^{(-i)}_{c+} = max_{x in X^A_{c+} \ {q_i}, y in X^B_{c+}} delta(x, y)``
(``-inf`` for a singleton cluster), which is Eq. 25 applied to the query as to a new sample.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ...blocks.kmeans import elbow_k, kmeans
from ...blocks.merging import MergeResult, merge_prototypes, pairwise_euclidean
from .distance import nearest_by_delta, product_distance

__all__ = ["DetectorResult", "cross_spread", "leave_one_out_max", "uem_private_detector"]


@dataclass(frozen=True)
class DetectorResult:
    """Decision and evidence of the UEM detector.

    Attributes:
        flags: ``[N_A]`` bool, True = query judged private (null result).
        by_unmerged: ``[N_A]`` bool, flagged because the nearest A prototype is unmerged.
        by_distance: ``[N_A]`` bool, flagged by Eq. 27 (nearest prototype merged, ``D_{c+} < D^{A->B}_i``).
        query_proto: ``[N_A]`` index of each query's Euclidean-nearest A prototype.
        nn_delta: ``[N_A]`` ``D^{A->B}_i``, the ``delta`` distance to the nearest gallery item.
        thresholds: ``[N_A]`` the ``D_{c+}`` each query is compared with (NaN where its prototype is
            unmerged; with ``spread="loo"`` it leaves the query out).
        merge: the prototype merge of step 1.
        prototypes: ``[K_A, D]`` the query prototypes ``P^A``.
        proto_thresholds: ``[K_A]`` ``D_{c+}`` over *all* members of each merged prototype (Eq. 25 as it
            applies to a new sample, which is no member), NaN for unmerged prototypes; the state a saved
            model carries (:mod:`u2cdr_bench.carried_detector`).
    """

    flags: np.ndarray
    by_unmerged: np.ndarray
    by_distance: np.ndarray
    query_proto: np.ndarray
    nn_delta: np.ndarray
    thresholds: np.ndarray
    merge: MergeResult
    prototypes: np.ndarray
    proto_thresholds: np.ndarray

    def summary(self) -> dict[str, float]:
        return {
            "k_query": self.merge.k_a,
            "k_gallery": self.merge.k_b,
            "merged": self.merge.num_merged,
            "flagged": float(self.flags.mean()) if len(self.flags) else 0.0,
            "flagged_unmerged": float(self.by_unmerged.mean()) if len(self.flags) else 0.0,
            "flagged_distance": float(self.by_distance.mean()) if len(self.flags) else 0.0,
        }


def cross_spread(xa: torch.Tensor, xb: torch.Tensor, chunk: int = 2048) -> torch.Tensor:
    """Row maxima of Eq. 25: ``[len(xa)]`` ``max_j delta(xa_i, xb_j)``; all ``-inf`` when ``xb`` is empty.

    ``D_{c+}`` is the maximum of the returned vector.
    """
    out = torch.full((len(xa),), float("-inf"))
    if len(xa) == 0 or len(xb) == 0:
        return out
    for s in range(0, len(xa), chunk):
        out[s : s + chunk] = product_distance(xa[s : s + chunk], xb).max(dim=1).values
    return out


def leave_one_out_max(r: torch.Tensor) -> torch.Tensor:
    """``[n]`` with entry ``i`` = ``max_{k != i} r_k`` (``-inf`` when ``n == 1``)."""
    n = len(r)
    if n < 2:
        return torch.full((n,), float("-inf"))
    top = torch.topk(r, 2).values
    first = int(torch.argmax(r))
    out = torch.full((n,), float(top[0]))
    out[first] = top[1]
    return out


def _nearest_euclidean(x: np.ndarray, protos: np.ndarray, chunk: int = 8192) -> np.ndarray:
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), chunk):
        out[s : s + chunk] = pairwise_euclidean(x[s : s + chunk], protos).argmin(axis=1)
    return out


def uem_private_detector(
    query_feats: np.ndarray,
    gallery_feats: np.ndarray,
    seed: int = 0,
    k_query: int | None = None,
    k_gallery: int | None = None,
    k_min: int = 2,
    k_max: int = 20,
    niter: int = 20,
    nredo: int = 5,
    spread: str = "loo",
    merge_rule: str = "global",
) -> DetectorResult:
    """Paper-spec §2.6 on query ``[N_A, D]`` and gallery ``[N_B, D]`` features (the ``embed`` output).

    ``k_query`` / ``k_gallery`` fix the numbers of clusters; ``None`` estimates them by the Elbow method over
    ``k_min..k_max``. ``niter`` / ``nredo`` are the faiss K-means settings. ``spread`` is ``"loo"`` or
    ``"all"`` (see the module docstring). ``merge_rule`` is Eq. 9's reading (``global`` or ``pair``).
    """
    if spread not in ("loo", "all"):
        raise ValueError(f"spread must be 'loo' or 'all', got {spread!r}")
    q = np.ascontiguousarray(query_feats, dtype=np.float32)
    g = np.ascontiguousarray(gallery_feats, dtype=np.float32)
    if k_query is None:
        k_query, _ = elbow_k(q, k_min=k_min, k_max=k_max, seed=seed, niter=niter, nredo=1)
    if k_gallery is None:
        k_gallery, _ = elbow_k(g, k_min=k_min, k_max=k_max, seed=seed + 1, niter=niter, nredo=1)
    pa = kmeans(q, k_query, seed=seed, niter=niter, nredo=nredo).centroids
    pb = kmeans(g, k_gallery, seed=seed + 1, niter=niter, nredo=nredo).centroids
    merge = merge_prototypes(pa, pb, q.mean(axis=0), g.mean(axis=0), rule=merge_rule)

    q_proto = _nearest_euclidean(q, pa)  # Eq. 26 membership of queries
    g_proto = _nearest_euclidean(g, pb)  # ... and of gallery items
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    thresholds = np.full(len(q), np.nan)
    proto_thresholds = np.full(len(pa), np.nan)
    for c, c2 in merge.merged_pairs:
        members = np.flatnonzero(q_proto == c)
        rows = cross_spread(qt[torch.from_numpy(members)], gt[torch.from_numpy(g_proto == c2)])
        top = float(rows.max()) if len(rows) else float("-inf")  # -inf: every query of c is flagged
        proto_thresholds[c] = top
        thr = leave_one_out_max(rows) if spread == "loo" else torch.full_like(rows, top)
        thresholds[members] = thr.double().numpy()
    _, nn_delta_t = nearest_by_delta(qt, gt)  # Eq. 27's D^{A->B}_i
    nn_delta = nn_delta_t.double().numpy()

    merged_q = merge.merged_a[q_proto]
    by_unmerged = ~merged_q
    by_distance = merged_q & (np.where(merged_q, thresholds, np.inf) < nn_delta)
    return DetectorResult(
        flags=by_unmerged | by_distance,
        by_unmerged=by_unmerged,
        by_distance=by_distance,
        query_proto=q_proto,
        nn_delta=nn_delta,
        thresholds=thresholds,
        merge=merge,
        prototypes=pa,
        proto_thresholds=proto_thresholds,
    )

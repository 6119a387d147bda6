r"""The open-set detector a saved model carries, for flagging *new* queries (``u2cdr-bench retrieve``).

Every detector of the benchmark decides per query from a prototype set fitted on the run's query domain:

* a query ``q`` is assigned a prototype ``c(q)`` (nearest, or highest dot product for classifier weights);
* it is private iff its prototype has no threshold (UEM: unmerged, Eq. 27) or its distance to the nearest
  gallery item exceeds the prototype's threshold, ``min_j d(q, g_j) > T_{c(q)}``.

A :class:`DetectorState` stores the prototypes ``[K, D]``, the thresholds ``[K]`` (NaN = always private) and
the two distances, so the rule applies to a query the run never saw and to any gallery. States by method:

* **generic** (every method that keeps the base ``detect_private``; paper-spec §4.2, App. B.2): K-means on the
  run's query features (K by the Elbow method, same seeds as the run), ``T_c`` = radius or diameter of cluster
  ``c`` (hyper-parameter ``detector_threshold``), distance = the method's own. On the run's own queries the
  state reproduces ``detect_private`` (a query's cluster is its nearest centroid, which faiss's final
  assignment is up to ties; tests/test_artifacts.py checks equality).
* **uem** (paper-spec §2.6, Eqs. 25–27): the K-means prototypes ``P^A`` of the run's queries, merged with the
  gallery prototypes as in the run; ``T_{c+} = max_{x in X^A_{c+}, y in X^B_{c+}} delta(x, y)`` over *all*
  members (Eq. 25 applied to a new sample, which is not a member: the run's leave-one-out is for members),
  NaN for unmerged prototypes; ``delta`` = UEM's product distance. It repeats the steps of
  :func:`u2cdr_bench.methods.uem.detector.uem_private_detector` with the run's hyper-parameters.
* **classifier** (methods with ``query_prototypes()``, i.e. CoDA): those weights, dot-product assignment.
* a method may define ``export_detector(query_feats, gallery_feats) -> DetectorState | None`` itself
  (plug-ins with their own detector); otherwise a method with its own ``detect_private`` carries none.

Assumption (named): the thresholds come from the run's gallery domain; ``retrieve`` compares them with
distances to *its* gallery, so the flag means "no item of this gallery is as close as the training domains'
matches were".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from .blocks.detector import cluster_spread, nearest_distance

ASSIGN = ("euclidean", "cosine", "dot")
DISTANCES = ("euclidean", "cosine", "delta")


@dataclass(frozen=True)
class DetectorState:
    """A fitted prototype-threshold detector (see the module docstring).

    Attributes:
        kind: ``generic``, ``uem``, ``classifier`` or a plug-in's label.
        prototypes: ``[K, D]`` float32.
        thresholds: ``[K]`` float64; NaN marks a prototype whose queries are always private.
        assign: how a query picks its prototype: ``euclidean`` (nearest), ``cosine`` (nearest after L2
            normalisation of the query) or ``dot`` (largest dot product).
        distance: the query-to-gallery distance compared with the threshold: ``euclidean``, ``cosine``
            (``1 - cos``) or ``delta`` (UEM's product distance).
    """

    kind: str
    prototypes: np.ndarray
    thresholds: np.ndarray
    assign: str
    distance: str

    def __post_init__(self) -> None:
        if self.assign not in ASSIGN or self.distance not in DISTANCES:
            raise ValueError(f"bad detector state: assign {self.assign!r}, distance {self.distance!r}")
        if len(self.prototypes) != len(self.thresholds) or len(self.prototypes) == 0:
            raise ValueError("bad detector state: prototypes and thresholds differ in length or are empty")

    def assign_queries(self, q: np.ndarray) -> np.ndarray:
        """``[N]`` int64 prototype index of each query ``[N, D]``."""
        q = np.asarray(q, dtype=np.float64)
        p = self.prototypes.astype(np.float64)
        if self.assign == "dot":
            return (q @ p.T).argmax(axis=1)
        if self.assign == "cosine":
            q = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
        sq = (q * q).sum(1)[:, None] + (p * p).sum(1)[None, :] - 2.0 * q @ p.T
        return sq.argmin(axis=1)

    def nearest_gallery(self, q: np.ndarray, g: np.ndarray) -> np.ndarray:
        """``[N]`` distance of each query to its nearest gallery item, in :attr:`distance`."""
        if self.distance == "delta":
            from .methods.uem.distance import nearest_by_delta

            _, val = nearest_by_delta(torch.from_numpy(np.asarray(q, np.float32)), torch.from_numpy(g))
            return val.double().numpy()
        return nearest_distance(np.asarray(q), np.asarray(g), self.distance)

    def flags(self, query_feats: np.ndarray, gallery_feats: np.ndarray) -> np.ndarray:
        """``[N_q]`` bool, True = judged query-private against ``gallery_feats`` ``[N_g, D]``."""
        g = np.ascontiguousarray(gallery_feats, dtype=np.float32)
        c = self.assign_queries(query_feats)
        thr = self.thresholds[c]
        nn = self.nearest_gallery(query_feats, g)
        return np.isnan(thr) | (nn > np.where(np.isnan(thr), np.inf, thr))

    def to_dict(self) -> dict[str, Any]:
        """A ``torch.load(weights_only=True)``-safe dict (tensors and strings)."""
        return {
            "kind": self.kind,
            "prototypes": torch.from_numpy(np.ascontiguousarray(self.prototypes, dtype=np.float32)),
            "thresholds": torch.from_numpy(np.ascontiguousarray(self.thresholds, dtype=np.float64)),
            "assign": self.assign,
            "distance": self.distance,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> DetectorState:
        return cls(
            kind=str(d["kind"]),
            prototypes=np.asarray(d["prototypes"], dtype=np.float32),
            thresholds=np.asarray(d["thresholds"], dtype=np.float64),
            assign=str(d["assign"]),
            distance=str(d["distance"]),
        )


def generic_state(
    query_feats: np.ndarray, distance: str, seed: int, threshold: str, k_max: int = 20
) -> DetectorState:
    """The state of :func:`u2cdr_bench.blocks.detector.generic_private_detector` (same steps and seeds)."""
    from .blocks.kmeans import elbow_k, kmeans

    q = np.ascontiguousarray(query_feats, dtype=np.float32)
    xk = q
    if distance == "cosine":
        xk = q / np.maximum(np.linalg.norm(q, axis=1, keepdims=True), 1e-12)
    k, _ = elbow_k(xk, k_min=2, k_max=k_max, seed=seed)
    km = kmeans(xk, k, seed=seed)
    spread = cluster_spread(q, km.assign, km.centroids, distance, threshold)  # exactly the run's D_c
    assign = "cosine" if distance == "cosine" else "euclidean"
    return DetectorState("generic", km.centroids, spread, assign, distance)


def uem_state(query_feats: np.ndarray, gallery_feats: np.ndarray, seed: int, hp: dict) -> DetectorState:
    """UEM's detector (paper-spec §2.6) as a state: prototypes ``P^A``, ``T_{c+}`` (Eq. 25), NaN: unmerged."""
    from .blocks.kmeans import elbow_k, kmeans
    from .blocks.merging import merge_prototypes, pairwise_euclidean
    from .methods.uem.detector import cross_spread

    q = np.ascontiguousarray(query_feats, dtype=np.float32)
    g = np.ascontiguousarray(gallery_feats, dtype=np.float32)
    k_min, k_max = int(hp["elbow_k_min"]), int(hp["elbow_k_max"])
    niter, nredo = int(hp["kmeans_niter"]), int(hp["kmeans_nredo"])
    k_q, _ = elbow_k(q, k_min=k_min, k_max=k_max, seed=seed, niter=niter, nredo=1)
    k_g, _ = elbow_k(g, k_min=k_min, k_max=k_max, seed=seed + 1, niter=niter, nredo=1)
    pa = kmeans(q, k_q, seed=seed, niter=niter, nredo=nredo).centroids
    pb = kmeans(g, k_g, seed=seed + 1, niter=niter, nredo=nredo).centroids
    merge = merge_prototypes(pa, pb, q.mean(axis=0), g.mean(axis=0))
    q_proto = pairwise_euclidean(q, pa).argmin(axis=1)
    g_proto = pairwise_euclidean(g, pb).argmin(axis=1)
    thresholds = np.full(len(pa), np.nan)
    qt, gt = torch.from_numpy(q), torch.from_numpy(g)
    for c, c2 in merge.merged_pairs:
        rows = cross_spread(qt[torch.from_numpy(q_proto == c)], gt[torch.from_numpy(g_proto == c2)])
        top = float(rows.max()) if len(rows) else float("-inf")
        thresholds[c] = top  # -inf (empty member set): every query of c is flagged, as in the run
    return DetectorState("uem", pa, thresholds, "euclidean", "delta")


def fit_state(method: Any, query_feats: np.ndarray, gallery_feats: np.ndarray) -> DetectorState | None:
    """The detector state of a fitted ``method`` on the run's features, or ``None`` when it has none."""
    from .methods.base import Method

    export = getattr(method, "export_detector", None)
    if callable(export):
        return export(query_feats, gallery_feats)
    try:
        from .methods.uem.method import UEM
    except ImportError:  # pragma: no cover - UEM is part of the package
        UEM = None  # noqa: N806
    seed = int(method.ctx.seed)
    if UEM is not None and isinstance(method, UEM):
        return uem_state(query_feats, gallery_feats, seed, method.hp)
    threshold = str(method.hp.get("detector_threshold", "radius"))
    if type(method).detect_private is Method.detect_private:
        return generic_state(query_feats, method.distance, seed, threshold)
    protos = getattr(method, "query_prototypes", None)
    if callable(protos) and (p := protos()) is not None:
        q = np.asarray(query_feats, dtype=np.float64)
        assign = (q @ np.asarray(p, np.float64).T).argmax(axis=1)
        spread = cluster_spread(q, assign, np.asarray(p, np.float64), method.distance, threshold)
        return DetectorState("classifier", np.asarray(p, np.float32), spread, "dot", method.distance)
    return None


__all__ = ["DetectorState", "fit_state", "generic_state", "uem_state"]

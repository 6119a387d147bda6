r"""The open-set detector a saved model carries, for flagging *new* queries (``u2cdr-bench retrieve``).

Every detector of the benchmark decides per query from a prototype set fitted on the run's query domain:

* a query ``q`` is assigned a prototype ``c(q)`` (nearest, or highest dot product for classifier weights);
* it is private iff its prototype has no threshold (UEM: unmerged, Eq. 27) or its distance to the nearest
  gallery item exceeds the prototype's threshold, ``min_j d(q, g_j) > T_{c(q)}``.

A :class:`DetectorState` stores the prototypes ``[K, D]``, the thresholds ``[K]`` (NaN = always private) and
the two distances, so the rule applies to a query the run never saw and to any gallery. States by method:

* **generic** (every method that keeps the base ``detect_private``; paper-spec §4.2, App. B.2): K-means on
  the run's query features (K by the run's cluster-count estimator, same seeds), ``T_c`` = radius or
  diameter of cluster ``c`` (hyper-parameter ``detector_threshold``), distance = the method's own. On the
  run's own queries the state reproduces ``detect_private`` (a query's cluster is its nearest centroid,
  which faiss's final assignment is up to ties; tests/test_artifacts.py checks equality).
* **uem** (paper-spec §2.6, Eqs. 25–27): the K-means prototypes ``P^A`` of the run's queries, merged with the
  gallery prototypes as in the run; ``T_{c+} = max_{x in X^A_{c+}, y in X^B_{c+}} delta(x, y)`` over *all*
  members (Eq. 25 applied to a new sample, which is not a member: the run's leave-one-out is for members),
  NaN for unmerged prototypes; ``delta`` = UEM's product distance. ``UEM.export_detector`` takes them from
  the run's own :func:`u2cdr_bench.methods.uem.detector.uem_private_detector` call.
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

from .blocks.detector import cluster_spread, fit_generic_detector, nearest_distance

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
    query_feats: np.ndarray,
    distance: str,
    seed: int,
    threshold: str,
    estimator: str = "elbow",
    k_max: int = 100,
) -> DetectorState:
    """The state of :func:`u2cdr_bench.blocks.detector.generic_private_detector`: the same function
    (:func:`~u2cdr_bench.blocks.detector.fit_generic_detector`) fits it, with the run's seeds."""
    centroids, spread, _ = fit_generic_detector(
        query_feats, distance, seed, None, k_max, threshold, estimator
    )
    assign = "cosine" if distance == "cosine" else "euclidean"
    return DetectorState("generic", centroids, spread, assign, distance)


def fit_state(method: Any, query_feats: np.ndarray, gallery_feats: np.ndarray) -> DetectorState | None:
    """The detector state of a fitted ``method`` on the run's features, or ``None`` when it has none."""
    from .methods.base import Method

    export = getattr(method, "export_detector", None)
    if callable(export):
        return export(query_feats, gallery_feats)
    seed = int(method.ctx.seed)
    threshold = str(method.hp.get("detector_threshold", "radius"))
    if type(method).detect_private is Method.detect_private:
        hp = method.hp
        estimator, k_max = str(hp.get("detector_k", "elbow")), int(hp.get("detector_k_max", 100))
        return generic_state(query_feats, method.distance, seed, threshold, estimator, k_max)
    protos = getattr(method, "query_prototypes", None)
    if callable(protos) and (p := protos()) is not None:
        q = np.asarray(query_feats, dtype=np.float64)
        assign = (q @ np.asarray(p, np.float64).T).argmax(axis=1)
        spread = cluster_spread(q, assign, np.asarray(p, np.float64), method.distance, threshold)
        return DetectorState("classifier", np.asarray(p, np.float32), spread, "dot", method.distance)
    return None


__all__ = ["DetectorState", "fit_state", "generic_state"]

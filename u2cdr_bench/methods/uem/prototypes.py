"""UEM's prototype structure: per-domain K-means with Elbow K, then translation and merging.

Paper-spec §2.2(c)–(d): K-means runs on each domain's memory bank separately (faiss), the number of
clusters ``K^`` of each domain is estimated by the Elbow method, and the two prototype sets are merged into
``P^{A'}`` and ``P^{B'}`` (:func:`u2cdr_bench.blocks.merging.merge_prototypes`). :class:`PrototypeStructure`
carries everything the losses need as torch tensors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from ...blocks.kmeans import KMeansResult, elbow_k, kmeans
from ...blocks.merging import MergeResult, merge_prototypes

__all__ = ["PrototypeStructure", "build_structure", "estimate_k"]


@dataclass(frozen=True)
class PrototypeStructure:
    """Prototypes of both domains, their merge and the per-sample assignments, as tensors.

    Attributes:
        own_a, own_b: ``[K_A, D]``, ``[K_B, D]`` the domains' own K-means prototypes ``P^A``, ``P^B``.
        merged_mask_a, merged_mask_b: ``[K_A]``, ``[K_B]`` bool, the prototypes merged by Eq. 9.
        merged_a, merged_b: ``[C~, D]`` the merged structures ``P^{A'}`` (A's frame), ``P^{B'}`` (B's frame).
        assign_a, assign_b: ``[N_A]``, ``[N_B]`` each sample's K-means cluster (row of ``own_*``).
        assign_a_merged, assign_b_merged: the same clusters as rows of ``merged_a`` / ``merged_b``
            (a merged cluster maps to its midpoint, paper-spec §7 #5).
        a_to_b, b_to_a: ``[K_A]`` rows of ``P^{B'}``, ``[K_B]`` rows of ``P^{A'}`` (``MergeResult`` maps).
        merge: the numpy :class:`MergeResult`.
    """

    own_a: torch.Tensor
    own_b: torch.Tensor
    merged_mask_a: torch.Tensor
    merged_mask_b: torch.Tensor
    merged_a: torch.Tensor
    merged_b: torch.Tensor
    assign_a: torch.Tensor
    assign_b: torch.Tensor
    assign_a_merged: torch.Tensor
    assign_b_merged: torch.Tensor
    a_to_b: torch.Tensor
    b_to_a: torch.Tensor
    merge: MergeResult

    def summary(self) -> dict[str, int]:
        """``{"k_a", "k_b", "merged", "c_tilde"}`` for the record."""
        m = self.merge
        return {"k_a": m.k_a, "k_b": m.k_b, "merged": m.num_merged, "c_tilde": int(len(m.proto_a))}


def estimate_k(x: np.ndarray, k_min: int, k_max: int, seed: int, niter: int = 20, nredo: int = 1) -> int:
    """Elbow estimate of the number of clusters of ``x`` ``[N, D]`` over ``K = k_min..k_max`` (§2.2(c))."""
    k, _ = elbow_k(x, k_min=k_min, k_max=k_max, seed=seed, niter=niter, nredo=nredo)
    return int(k)


def build_structure(
    bank_a: torch.Tensor,
    bank_b: torch.Tensor,
    k_a: int,
    k_b: int,
    seed: int,
    niter: int = 20,
    nredo: int = 5,
    normalize_prototypes: bool = False,
    merge_rule: str = "global",
) -> PrototypeStructure:
    """K-means (``k_a`` / ``k_b`` clusters) on the two memory banks, then Eqs. 8–9 and the merged sets.

    Args:
        bank_a, bank_b: ``[N_A, D]``, ``[N_B, D]`` memory banks (their means give Eq. 8's translation).
        k_a, k_b: numbers of clusters (Elbow estimates).
        seed: K-means seed (domain B uses ``seed + 1``).
        niter, nredo: faiss K-means iterations and restarts.
        normalize_prototypes: L2-normalise the prototype vectors handed to the losses (own and merged
            sets) *after* translation and merging, which always use the raw centroids (paper-spec §7 #2).
        merge_rule: Eq. 9's reading, ``global`` or ``pair``
            (:func:`~u2cdr_bench.blocks.merging.merge_prototypes`).
    """
    dev = bank_a.device
    xa = bank_a.detach().cpu().float().numpy()
    xb = bank_b.detach().cpu().float().numpy()
    km_a: KMeansResult = kmeans(xa, k_a, seed=seed, niter=niter, nredo=nredo)
    km_b: KMeansResult = kmeans(xb, k_b, seed=seed + 1, niter=niter, nredo=nredo)
    pa, pb = km_a.centroids, km_b.centroids
    merge = merge_prototypes(pa, pb, xa.mean(axis=0), xb.mean(axis=0), rule=merge_rule)

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a)).to(dev)

    def p(a: np.ndarray) -> torch.Tensor:
        out = t(np.asarray(a, dtype=np.float32))
        return F.normalize(out, dim=1) if normalize_prototypes else out

    assign_a = t(km_a.assign)
    assign_b = t(km_b.assign)
    return PrototypeStructure(
        own_a=p(pa),
        own_b=p(pb),
        merged_mask_a=t(merge.merged_a),
        merged_mask_b=t(merge.merged_b),
        merged_a=p(merge.proto_a),
        merged_b=p(merge.proto_b),
        assign_a=assign_a,
        assign_b=assign_b,
        assign_a_merged=t(merge.a_to_a)[assign_a],
        assign_b_merged=t(merge.b_to_b)[assign_b],
        a_to_b=t(merge.a_to_b),
        b_to_a=t(merge.b_to_a),
        merge=merge,
    )

"""Multi-granularity k-means prototypes with PCL concentrations (Li, Zhou, Xiong, Hoi, ICLR 2021).

A generic block for every prototype-contrastive method (ProtoNCE, PCS, UCDIR, CoDA). Three steps:

1. :func:`cluster_multi` — k-means of the features ``V`` (``[N, D]``) once per granularity
   ``K_m in ks`` (PCL's ``--num-cluster`` list), with :func:`u2cdr_bench.blocks.kmeans.kmeans`
   (faiss, niter 20, nredo 5, as PCL's ``run_kmeans``); granularity ``m`` uses seed ``seed + m``.
2. :func:`concentration` — PCL's per-cluster concentration (PCL Eq. 12)

   .. math:: \\phi_c = \\frac{\\sum_{z=1}^{Z_c} \\lVert v_z - C_c \\rVert_2}{Z_c \\, \\log(Z_c + \\alpha)},
             \\qquad \\alpha = 10,

   over the ``Z_c`` members ``v_z`` of cluster ``c`` and its (unnormalised) k-means centroid ``C_c``.
   As in PCL's ``main_pcl.py``: a cluster with at most one member gets the largest ``phi`` of the others;
   ``phi`` is then clipped to its 10th..90th percentiles, and rescaled so that its mean equals the
   temperature ``tau`` ("scale the mean to temperature"). Units: feature-space Euclidean distance
   (dimensionless) before the rescaling, temperature units after it.
3. :func:`build_prototypes` / :func:`proto_nce_multi` — the prototype part of ProtoNCE (PCL Eq. 6):

   .. math:: \\mathcal L_{proto} = \\frac1M \\sum_{m=1}^{M} -\\log
             \\frac{\\exp(v\\cdot c^m_s/\\phi^m_s)}{\\sum_{j=1}^{K_m}\\exp(v\\cdot c^m_j/\\phi^m_j)},

   with L2-normalised centroids ``c`` (PCL normalises them after clustering) and ``s`` the cluster of
   the sample. Deviation from PCL's code: every prototype of the granularity is a negative (PCL samples
   ``r = 16384`` negatives among its 25k..100k prototypes; with a few dozen clusters all of them fit).

Example::

    levels = build_prototypes(memory_feats, ks=[10, 20, 40], seed=0, tau=0.2)
    loss = proto_nce_multi(f, levels, idx)        # f [B, D] normalised, idx [B] rows of memory_feats
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .kmeans import KMeansResult, kmeans
from .losses import prototype_nce


@dataclass(frozen=True)
class PrototypeLevel:
    """One granularity of prototypes, ready for the loss.

    Attributes:
        centroids: ``[K, D]`` float32, L2-normalised k-means centroids.
        assign: ``[N]`` int64, cluster index of every clustered sample.
        phi: ``[K]`` float32, per-prototype concentration (temperature) of PCL Eq. 12.
    """

    centroids: torch.Tensor
    assign: torch.Tensor
    phi: torch.Tensor

    @property
    def k(self) -> int:
        return int(self.centroids.shape[0])


def _as_numpy(feats: np.ndarray | torch.Tensor) -> np.ndarray:
    if torch.is_tensor(feats):
        feats = feats.detach().cpu().numpy()
    return np.ascontiguousarray(feats, dtype=np.float32)


def cluster_multi(
    feats: np.ndarray | torch.Tensor,
    ks: Sequence[int],
    seed: int = 0,
    niter: int = 20,
    nredo: int = 5,
) -> list[KMeansResult]:
    """K-means of ``feats`` (``[N, D]``) at every granularity in ``ks``; one :class:`KMeansResult` each.

    Granularity ``m`` (0-based position in ``ks``) is seeded with ``seed + m``; each ``K`` is clamped to
    ``[1, N]`` by :func:`~u2cdr_bench.blocks.kmeans.kmeans`.
    """
    x = _as_numpy(feats)
    if x.ndim != 2 or len(x) == 0:
        raise ValueError(f"features to cluster must be a non-empty [N, D] array, got shape {x.shape}")
    if len(ks) == 0:
        raise ValueError("ks must hold at least one number of clusters")
    return [kmeans(x, int(k), seed=seed + m, niter=niter, nredo=nredo) for m, k in enumerate(ks)]


def concentration(
    feats: np.ndarray | torch.Tensor,
    result: KMeansResult,
    alpha: float = 10.0,
    tau: float | None = None,
    clip: tuple[float, float] | None = (10.0, 90.0),
) -> np.ndarray:
    """PCL's concentration ``phi`` (Eq. 12) of every cluster of ``result``, ``[K]`` float64.

    Args:
        feats: ``[N, D]`` the clustered features (the ``v_z``).
        result: their k-means result (centroids ``C_c`` unnormalised, assignment).
        alpha: the smoothing constant of Eq. 12 (PCL: 10), so small clusters do not get a tiny ``phi``.
        tau: when given, rescale so that ``mean(phi) == tau`` (PCL's ``args.temperature * d / d.mean()``).
        clip: percentiles ``(lo, hi)`` to clamp ``phi`` to before rescaling (PCL: 10, 90); None: no clamp.
    """
    x = _as_numpy(feats).astype(np.float64)
    centroids = np.asarray(result.centroids, dtype=np.float64)
    assign = np.asarray(result.assign, dtype=np.int64)
    k = len(centroids)
    dist = np.linalg.norm(x - centroids[assign], axis=1)
    counts = np.bincount(assign, minlength=k)
    sums = np.bincount(assign, weights=dist, minlength=k)
    phi = np.zeros(k)
    big = counts > 1
    phi[big] = sums[big] / counts[big] / np.log(counts[big] + alpha)
    # PCL: "if cluster only has one point, use the max to estimate its concentration"
    phi[~big] = phi.max() if big.any() else 0.0
    if clip is not None:
        phi = np.clip(phi, np.percentile(phi, clip[0]), np.percentile(phi, clip[1]))
    if tau is not None:
        mean = phi.mean()
        phi = np.full(k, float(tau)) if mean <= 0 else float(tau) * phi / mean
    return phi


def build_prototypes(
    feats: np.ndarray | torch.Tensor,
    ks: Sequence[int],
    seed: int,
    tau: float,
    alpha: float = 10.0,
    device: torch.device | str = "cpu",
    niter: int = 20,
    nredo: int = 5,
) -> list[PrototypeLevel]:
    """:func:`cluster_multi` + :func:`concentration` (clipped, mean rescaled to ``tau``) per granularity.

    Returns one :class:`PrototypeLevel` per ``K`` in ``ks`` with L2-normalised centroids, as PCL's
    ``run_kmeans`` (features are expected L2-normalised, as PCL's). ``niter`` / ``nredo``: k-means
    iterations and restarts (PCL: 20 and 5).
    """
    levels = []
    for res in cluster_multi(feats, ks, seed=seed, niter=niter, nredo=nredo):
        phi = concentration(feats, res, alpha=alpha, tau=tau)
        levels.append(
            PrototypeLevel(
                centroids=F.normalize(torch.from_numpy(res.centroids).float(), dim=1).to(device),
                assign=torch.from_numpy(res.assign).long().to(device),
                phi=torch.from_numpy(phi).float().to(device),
            )
        )
    return levels


def proto_nce_multi(f: torch.Tensor, levels: Sequence[PrototypeLevel], idx: torch.Tensor) -> torch.Tensor:
    """Prototype part of ProtoNCE (PCL Eq. 6), averaged over the granularities and the batch.

    ``f`` ``[B, D]`` L2-normalised features of samples ``idx`` (``[B]`` rows of the clustered set);
    per level the logits are ``f . c_j / phi_j`` and the target is the sample's cluster.
    """
    if len(levels) == 0:
        raise ValueError("proto_nce_multi needs at least one prototype level")
    total = f.new_zeros(())
    for lv in levels:
        total = total + prototype_nce(f, lv.centroids, lv.assign[idx], tau=lv.phi)
    return total / len(levels)

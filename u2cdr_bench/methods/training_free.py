"""Training-free retrieval on the input representation: the rows a skeptic runs first (issue 16).

No method here trains anything or reads a label. Each maps a domain's inputs ``x`` ``[N, D]`` (frozen backbone
features in features mode; the flattened pixels of image datasets such as digits) to retrieval features;
retrieval ranks by Euclidean distance between them (paper-spec §2.4), so an L2-normalised output ranks by
cosine. Open-set flags come from the generic detector (paper-spec §4.2) in each method's own distance.

``pretrained-cosine``
    ``l2(x)``: cosine retrieval on the raw input.
``center-l2``
    ``l2(x - mean_d(x))``: each domain's own mean (of that domain's samples in the task) removed, then
    L2-normalised. Under partial and open-set the two domains hold different class sets, so each domain's
    mean also holds its class composition: removing it removes the domain style *and* moves the classes the
    other domain lacks, the same effect as UEM's Eq. 8 translation (paper-spec §2.2(d)); docs/uem.md measures
    it.
``center-whiten``
    Centring per domain, then a shrinkage PCA-whitening fitted on the pooled centred domains,
    ``Sigma_s = (1 - s) Sigma + s (tr Sigma / D) I``, keeping the top ``dims`` axes each scaled by
    ``1 / sqrt(eigenvalue)``, then L2. ``shrinkage`` and ``dims`` are hyper-parameters; full per-domain
    CORAL-style whitening fell to 17.4 mAP@All on PACS close-set (issue 16), hence the shrinkage. The
    defaults come from ``benchmarks/whiten_sweep.py`` over every pair and setting of ``pacs`` and ``digits``
    (docs/training-free.md): every shrinkage below 1 scores below ``s = 1`` in every (dataset, setting)
    cell, so the default is ``s = 1`` (no whitening: the centred features on Sigma's leading axes); fewer
    axes score higher on these two datasets of 7 and 10 classes (8 axes: +1.4 over 128 on the mean), but a
    truncation below a dataset's class count merges classes by construction, so the default keeps 128 axes,
    above the 65 classes of Office-Home, the largest shipped dataset (an assumption, not a measurement).
``kmeans-match``
    Per-domain k-means on the centred, L2-normalised features, Hungarian matching of the two domains'
    centroids (cosine cost, :func:`scipy.optimize.linear_sum_assignment`), and each sample expressed by its
    cosine similarities to its own domain's matched centroids, in matched order: both domains then share one
    coordinate system of ``M = min(K_A, K_B)`` anchors. This follows Kangin & Angelov (2024, "Unsupervised
    domain adaptation within deep foundation latent spaces": k-means on frozen foundation features and a
    matching of the domains' clusters) with the relative representation of Moschella et al. (ICLR 2023,
    "Relative representations enable zero-shot latent space communication") as the shared space. K is the
    true per-domain class count, which the protocol gives to PCS, UCDIR, DGDIR and the ProtoNCE variants
    (paper-spec §3; recorded as ``num_classes_given``); ``k_source`` = an estimator name of
    :mod:`u2cdr_bench.blocks.cluster_count` estimates it instead.
"""

from __future__ import annotations

from typing import Any, ClassVar

import numpy as np

from ..data.types import UnlabeledDomain
from . import register_method
from .base import Method
from .hparams import Choice, Range, Space

__all__ = ["CenterL2", "CenterWhiten", "KMeansMatch", "PretrainedCosine", "center", "l2"]


def l2(x: np.ndarray) -> np.ndarray:
    """Rows of ``x`` scaled to unit Euclidean norm (zero rows stay zero), float32."""
    x = np.asarray(x, dtype=np.float64)
    return (x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)).astype(np.float32)


def center(x: np.ndarray) -> np.ndarray:
    """``x - mean(x)`` over the rows (the domain's own mean), float64."""
    x = np.asarray(x, dtype=np.float64)
    return x - x.mean(axis=0, keepdims=True)


def _inputs(domain: UnlabeledDomain) -> np.ndarray:
    return domain.x.reshape(domain.n, -1).numpy().astype(np.float64)


class _TrainingFree(Method):
    """Shared parts: no training; ``fit`` only records that, or fits label-free statistics."""

    group: ClassVar[str] = "training-free"
    citation: ClassVar[str] = "—"

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        self.info["trained"] = False


@register_method
class PretrainedCosine(_TrainingFree):
    name = "pretrained-cosine"
    summary = "No training: L2-normalised input features, cosine ranking."
    distance = "cosine"

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        return l2(_inputs(domain))


@register_method
class CenterL2(_TrainingFree):
    name = "center-l2"
    summary = "No training: each domain's own mean subtracted, then L2-normalised (cosine)."
    distance = "cosine"

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        return l2(center(_inputs(domain)))


@register_method
class CenterWhiten(_TrainingFree):
    name = "center-whiten"
    summary = "No training: per-domain centring, shrinkage PCA-whitening on the pooled domains, L2."
    distance = "cosine"
    hparam_space: ClassVar[dict[str, Space]] = {"shrinkage": Range(0, 1), "dims": Range(1)}
    defaults: ClassVar[dict[str, Any]] = {"shrinkage": 1.0, "dims": 128}

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        super().fit(domain_a, domain_b)
        pooled = np.concatenate([center(_inputs(domain_a)), center(_inputs(domain_b))])
        cov = pooled.T @ pooled / max(1, len(pooled) - 1)
        s = float(self.hp["shrinkage"])
        # Sigma_s has Sigma's eigenvectors and eigenvalues (1 - s) lam + s tr/D: decompose Sigma itself, so
        # the kept axes are Sigma's leading ones for every s (at s = 1 Sigma_s is isotropic, ranks none)
        lam, vecs = np.linalg.eigh(cov)
        order = np.argsort(lam)[::-1][: int(self.hp["dims"])]
        vals = (1.0 - s) * lam[order] + s * np.trace(cov) / cov.shape[0]
        self._proj = vecs[:, order] / np.sqrt(np.maximum(vals, 1e-12))[None, :]
        self.info["whitening"] = {"shrinkage": s, "dims": int(len(order))}

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        return l2(center(_inputs(domain)) @ self._proj)


@register_method
class KMeansMatch(_TrainingFree):
    name = "kmeans-match"
    summary = "No training: per-domain k-means, Hungarian-matched centroids as shared anchors (cosine)."
    distance = "cosine"
    needs_num_classes = True
    citation = (
        "Kangin & Angelov, 'Unsupervised domain adaptation within deep foundation latent spaces', 2024; "
        "Moschella et al., 'Relative representations ...', ICLR 2023"
    )
    hparam_space: ClassVar[dict[str, Space]] = {
        "k_source": Choice("given", "elbow", "eigengap", "gap", "silhouette")
    }
    defaults: ClassVar[dict[str, Any]] = {"k_source": "given", "kmeans_niter": 20, "kmeans_nredo": 5}

    def _k(self, x: np.ndarray, side: int) -> int:
        source = self.hp["k_source"]
        if source == "given" and self.ctx.num_classes is not None:
            return int(self.ctx.num_classes[side])
        from ..blocks.cluster_count import estimate_k

        name = "eigengap" if source == "given" else source
        return estimate_k(x, name, seed=int(self.ctx.seed) + side).k

    def fit(self, domain_a: UnlabeledDomain, domain_b: UnlabeledDomain) -> None:
        from scipy.optimize import linear_sum_assignment

        from ..blocks.kmeans import kmeans

        super().fit(domain_a, domain_b)
        cents = []
        for side, d in enumerate((domain_a, domain_b)):
            z = l2(center(_inputs(d)))
            k = self._k(z, side)
            km = kmeans(
                z,
                k,
                seed=int(self.ctx.seed) + side,
                niter=int(self.hp["kmeans_niter"]),
                nredo=int(self.hp["kmeans_nredo"]),
            )
            cents.append(l2(km.centroids))
        rows, cols = linear_sum_assignment(-(cents[0] @ cents[1].T))  # max total cosine
        self._anchors = {domain_a.name: cents[0][rows], domain_b.name: cents[1][cols]}
        self.info["k"] = [len(cents[0]), len(cents[1])]
        self.info["matched"] = int(len(rows))

    def embed(self, domain: UnlabeledDomain) -> np.ndarray:
        anchors = self._anchors.get(domain.name)
        if anchors is None:
            raise ValueError(f"kmeans-match was fitted on {sorted(self._anchors)}, not on {domain.name!r}")
        return l2(l2(center(_inputs(domain))) @ anchors.T)

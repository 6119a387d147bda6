"""Synthetic two-domain data and a naive retrieval score shared by the baseline tests."""

from __future__ import annotations

import numpy as np
import torch

from u2cdr_bench.data.types import UnlabeledDomain

D_IN = 32


def synthetic_pair(seed: int = 0, n: int = 240, classes: int = 4, shift: float = 3.0):
    """Two feature-mode domains of ``classes`` clusters in 8 signal dims plus 24 nuisance dims.

    The nuisance dims (std 2, domain B shifted by ``shift``) are redrawn in every stored view, so
    instance discrimination has to learn to ignore them; the untrained head is dominated by them.
    """
    rng = np.random.default_rng(seed)
    centers = rng.normal(0.0, 2.5, (classes, 8))
    out = []
    for name, offset in (("A", 0.0), ("B", shift)):
        y = np.repeat(np.arange(classes), n // classes)
        sig = centers[y] + rng.normal(0.0, 0.5, (n, 8))

        def nuisance(offset: float = offset) -> np.ndarray:
            return rng.normal(0.0, 2.0, (n, D_IN - 8)) + offset

        x = np.concatenate([sig, nuisance()], 1)
        views = np.stack(
            [np.concatenate([sig + rng.normal(0, 0.1, sig.shape), nuisance()], 1) for _ in range(6)]
        )
        dom = UnlabeledDomain(
            name,
            torch.tensor(x, dtype=torch.float32),
            kind="features",
            views=torch.tensor(views, dtype=torch.float32),
        )
        out.append((dom, y))
    return out


def mean_ap(q: np.ndarray, g: np.ndarray, yq: np.ndarray, yg: np.ndarray) -> float:
    """Plain mAP of cosine ranking (naive loop; every query has relevant items)."""
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    g = g / np.linalg.norm(g, axis=1, keepdims=True)
    sims = q @ g.T
    aps = []
    for i in range(len(q)):
        rel = (yg[np.argsort(-sims[i], kind="stable")] == yq[i]).astype(float)
        prec = np.cumsum(rel) / np.arange(1, len(rel) + 1)
        aps.append(float((prec * rel).sum() / rel.sum()))
    return float(np.mean(aps))

"""UEM's product distance ``delta`` (paper-spec §2.3(c), Eqs. 15–16, 25, 27).

    delta(u, v) = (1 - u.v / (|u| |v|)) * |u - v|

the cosine distance times the Euclidean distance. On unit vectors it is a monotone function of the cosine,
``sqrt(2) (1 - cos)^{3/2}``; it differs from the cosine ranking only when one side is a (non-unit) K-means
prototype (paper-spec §7 #2). Everything here is computed without gradient: ``delta`` is only used to
search nearest prototypes / instances and to set the open-set thresholds.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["nearest_by_delta", "product_distance"]


@torch.no_grad()
def product_distance(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` matrix ``delta(u_i, v_j)`` for ``u`` ``[N, D]`` and ``v`` ``[M, D]`` (float32, >= 0)."""
    u = u.float()
    v = v.float()
    cos = F.normalize(u, dim=1) @ F.normalize(v, dim=1).t()
    sq = (u * u).sum(1, keepdim=True) + (v * v).sum(1)[None, :] - 2.0 * (u @ v.t())
    return (1.0 - cos).clamp_min(0.0) * sq.clamp_min(0.0).sqrt()


@torch.no_grad()
def nearest_by_delta(
    u: torch.Tensor, v: torch.Tensor, chunk: int = 4096
) -> tuple[torch.Tensor, torch.Tensor]:
    """Index ``[N]`` (int64) and value ``[N]`` of the ``delta``-nearest row of ``v`` for each row of ``u``.

    ``v`` is processed in chunks of ``chunk`` rows so the ``[N, M]`` matrix is never held whole;
    ties go to the lowest index.
    """
    best_val = torch.full((len(u),), float("inf"), device=u.device)
    best_idx = torch.zeros(len(u), dtype=torch.long, device=u.device)
    for s in range(0, len(v), chunk):
        val, idx = product_distance(u, v[s : s + chunk]).min(dim=1)
        better = val < best_val
        best_val = torch.where(better, val, best_val)
        best_idx = torch.where(better, idx + s, best_idx)
    return best_idx, best_val

"""Contrastive losses shared by UEM and the baselines (one implementation each, tested once).

Notation: ``f`` are L2-normalised features ``[B, D]``, ``tau`` the temperature.

* :func:`instance_nce` — instance discrimination against a memory bank (paper-spec Eq. 6; Wu et al.
  2018 InstDisc; MoCo): ``-log exp(f_i.m_i/tau) / sum_j exp(f_i.m_j/tau)`` with the negatives ``j`` over the
  whole bank (``negatives="bank"``) or over the batch's memory entries (``"batch"``, Eq. 6 as printed).
* :func:`prototype_nce` — prototype contrast (paper-spec Eq. 7; PCL's ProtoNCE term):
  ``-log exp(f_i.p_{c_i}/phi_{c_i}) / sum_c exp(f_i.p_c/phi_c)`` with per-prototype temperatures ``phi``
  (all ``tau`` unless given, e.g. PCL's concentrations).
* :func:`multi_positive_nce` — ``-log sum_{pos} exp(l) / sum_{all} exp(l)`` over a logit row with a
  boolean positive mask (SN2M Eq. 17, DN2A, UCDIR's cluster-wise contrast).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _reduce(loss: torch.Tensor, reduction: str) -> torch.Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    if reduction == "none":
        return loss
    raise ValueError(f"reduction must be mean, sum or none, got {reduction!r}")


def instance_nce(
    f: torch.Tensor,
    bank: torch.Tensor,
    idx: torch.Tensor,
    tau: float = 0.07,
    negatives: str = "bank",
    reduction: str = "mean",
) -> torch.Tensor:
    """Eq. 6. ``f`` ``[B, D]``, ``bank`` ``[N, D]`` (no grad), ``idx`` ``[B]`` rows of ``f`` in the bank."""
    if negatives == "bank":
        logits = f @ bank.t() / tau
        target = idx
    elif negatives == "batch":
        logits = f @ bank[idx].t() / tau
        target = torch.arange(len(idx), device=f.device)
    else:
        raise ValueError(f"negatives must be 'bank' or 'batch', got {negatives!r}")
    return _reduce(F.cross_entropy(logits, target, reduction="none"), reduction)


def prototype_nce(
    f: torch.Tensor,
    prototypes: torch.Tensor,
    assign: torch.Tensor,
    tau: float | torch.Tensor = 0.07,
    reduction: str = "mean",
) -> torch.Tensor:
    """Eq. 7. ``prototypes`` ``[K, D]``, ``assign`` ``[B]`` prototype index of each sample.

    ``tau`` is a scalar or a ``[K]`` tensor of per-prototype temperatures (PCL's concentration phi).
    """
    logits = f @ prototypes.t()
    logits = logits / (tau if not torch.is_tensor(tau) else tau.to(logits).unsqueeze(0))
    return _reduce(F.cross_entropy(logits, assign, reduction="none"), reduction)


def multi_positive_nce(logits: torch.Tensor, pos_mask: torch.Tensor, reduction: str = "mean") -> torch.Tensor:
    """``-log(sum_{pos} e^l / sum_{all} e^l)`` per row of ``logits`` ``[B, M]``; ``pos_mask`` ``[B, M]`` bool.

    Rows without a positive contribute 0 and are left out of the mean.
    """
    pos_mask = pos_mask.bool()
    has_pos = pos_mask.any(dim=1)
    log_all = torch.logsumexp(logits, dim=1)
    log_pos = torch.logsumexp(logits.masked_fill(~pos_mask, float("-inf")), dim=1)
    loss = torch.where(has_pos, log_all - log_pos, torch.zeros_like(log_all))
    if reduction == "mean":
        return loss.sum() / has_pos.sum().clamp(min=1)
    return _reduce(loss, reduction)


def entropy(p: torch.Tensor, dim: int = -1, eps: float = 1e-12) -> torch.Tensor:
    """Shannon entropy ``-sum p log p`` along ``dim`` (nats)."""
    return -(p * (p + eps).log()).sum(dim=dim)

"""Stage 1 of UEM, IDSE: the per-domain losses (paper-spec §2.2, Eqs. 6, 7, 10–12).

For one domain with L2-normalised batch features ``f`` (``[B, D]``), its memory bank ``M`` (``[N, D]``) and
its prototype structure ``P`` (``[C, D]``: the merged set ``P^{A'}``, or the domain's own K-means
prototypes in the ``uem-no-pm`` ablation) with the prototype index ``c_i`` of every sample:

* Eq. 6  ``L_INCE``  instance discrimination against the memory
  (:func:`u2cdr_bench.blocks.losses.instance_nce`);
* Eq. 7  ``L_PNCE``  prototype contrast over ``P`` (:func:`u2cdr_bench.blocks.losses.prototype_nce`);
* Eq. 10 ``L_IPM = L_INCE + alpha * L_PNCE`` with ``alpha = 1 / (1 + exp(0.5 E - e))`` (:func:`alpha_ramp`);
* Eq. 11 ``L_SEL`` the softmax-weighted Euclidean pull towards every prototype (:func:`sel_loss`);
* Eq. 12 ``L_IDSE = sum_domains (L_IPM + alpha * L_SEL)``; :func:`idse_domain_loss` returns one domain's term.
"""

from __future__ import annotations

import math

import torch

from ...blocks.losses import instance_nce, prototype_nce

__all__ = ["alpha_ramp", "idse_domain_loss", "pairwise_euclidean_grad", "sel_loss"]


def alpha_ramp(epoch: float, total_epochs: float) -> float:
    """Eq. 10: ``alpha = 1 / (1 + exp(0.5 E - e))`` at epoch ``e`` of ``E`` IDSE epochs (0.5 at e = E/2)."""
    z = 0.5 * float(total_epochs) - float(epoch)
    if z > 700.0:  # exp overflow; alpha underflows to 0 anyway
        return 0.0
    return 1.0 / (1.0 + math.exp(z))


def pairwise_euclidean_grad(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``[N, M]`` Euclidean distances ``|a_i - b_j|`` with a finite gradient everywhere.

    Computed from explicit differences (``[N, M, D]`` memory), so an exactly zero distance (``a_i = b_j``,
    e.g. the diagonal of a self-distance matrix) has gradient 0 instead of NaN.
    """
    diff = a[:, None, :] - b[None, :, :]
    sq = (diff * diff).sum(-1)
    zero = sq <= 0
    dist = torch.sqrt(torch.where(zero, torch.ones_like(sq), sq))
    return torch.where(zero, torch.zeros_like(dist), dist)


def sel_loss(
    f: torch.Tensor, prototypes: torch.Tensor, tau: float = 0.07, detach_weights: bool = False
) -> torch.Tensor:
    """Eq. 11: ``(1/B) sum_i sum_c softmax_c(f_i . p_c / tau) * d(f_i, p_c)``.

    Args:
        f: ``[B, D]`` features.
        prototypes: ``[C, D]`` the domain's prototypes after merging (``C = C~``).
        tau: softmax temperature.
        detach_weights: stop the gradient through the softmax weights (paper-spec §7 #6; default: literal
            formula, gradient through both factors).

    Returns:
        scalar, the mean over the batch (Eq. 11 has ``1/B``).
    """
    w = torch.softmax(f @ prototypes.t() / tau, dim=1)
    if detach_weights:
        w = w.detach()
    d = pairwise_euclidean_grad(f, prototypes)
    return (w * d).sum(dim=1).mean()


def idse_domain_loss(
    f: torch.Tensor,
    bank: torch.Tensor,
    idx: torch.Tensor,
    alpha: float,
    prototypes: torch.Tensor | None = None,
    assign: torch.Tensor | None = None,
    tau: float = 0.07,
    ince_negatives: str = "bank",
    nce_reduction: str = "mean",
    use_sel: bool = True,
    sel_detach_weights: bool = False,
) -> tuple[torch.Tensor, dict[str, float]]:
    """One domain's share of Eq. 12: ``L_INCE + alpha * L_PNCE + alpha * L_SEL``.

    Args:
        f: ``[B, D]`` L2-normalised features of the batch.
        bank: ``[N, D]`` the domain's memory bank (no gradient).
        idx: ``[B]`` rows of the batch in the bank.
        alpha: Eq. 10 weight of the current epoch.
        prototypes: ``[C, D]`` prototype structure, or ``None`` before the first clustering (then only
            ``L_INCE`` is used).
        assign: ``[N]`` prototype index (row of ``prototypes``) of every sample of the domain.
        tau: temperature of Eqs. 6, 7, 11.
        ince_negatives: ``"bank"`` (all memory entries) or ``"batch"`` (the batch's entries, as printed).
        nce_reduction: ``"mean"`` or ``"sum"`` (as printed) over the batch for Eqs. 6 and 7.
        use_sel: add ``alpha * L_SEL`` (False in ``uem-no-sel``).
        sel_detach_weights: see :func:`sel_loss`.

    Returns:
        ``(loss, parts)`` with the float values of the parts for logging.
    """
    l_ince = instance_nce(f, bank, idx, tau=tau, negatives=ince_negatives, reduction=nce_reduction)
    parts = {"ince": float(l_ince.detach())}
    loss = l_ince
    if prototypes is not None and assign is not None:
        l_pnce = prototype_nce(f, prototypes, assign[idx], tau=tau, reduction=nce_reduction)
        loss = loss + alpha * l_pnce
        parts["pnce"] = float(l_pnce.detach())
        if use_sel:
            l_sel = sel_loss(f, prototypes, tau=tau, detach_weights=sel_detach_weights)
            loss = loss + alpha * l_sel
            parts["sel"] = float(l_sel.detach())
    return loss, parts

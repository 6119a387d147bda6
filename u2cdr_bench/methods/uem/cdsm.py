"""Stage 2 of UEM, CDSM: the cross-domain losses (paper-spec §2.3, Eqs. 13–18).

* Eq. 13 ``L_DAL`` domain-adversarial loss with the two-layer classifier (:func:`adversarial_loss`);
* Eq. 14 ``L_SPR`` semantic-preserving regulation: pairwise cosine and Euclidean structure of the batch
  under the trained ``f_theta`` matched to the frozen stage-1 copy ``f_theta'`` (:func:`spr_loss`);
* Eqs. 15–17 ``L_SN2M`` switchable nearest-neighbour match (:func:`sn2m_targets`, :func:`sn2m_loss`);
  the ``uem-no-sn2m`` ablation replaces it by a plain cross-domain cosine nearest-neighbour positive
  (:func:`nn_match_loss`, paper-spec §7 #20);
* Eq. 18 ``L_CDSM = L_DAL + L^A_SPR + L^B_SPR + L^A_SN2M + L^B_SN2M`` (weights 1; assembled by the method).

Written for the query side A; the B side swaps the roles.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ...blocks.grl import DomainClassifier, domain_adversarial_loss
from ...blocks.losses import multi_positive_nce
from .distance import nearest_by_delta
from .idse import pairwise_euclidean_grad

__all__ = [
    "SN2M_UNMERGED",
    "Sn2mTargets",
    "adversarial_loss",
    "nn_match_loss",
    "sn2m_loss",
    "sn2m_targets",
    "spr_loss",
]


def spr_loss(f: torch.Tensor, f_frozen: torch.Tensor) -> torch.Tensor:
    """Eq. 14 for one domain: ``(1/B^2) sum_{i,j} [(cos_ij - cos'_ij)^2 + (d_ij - d'_ij)^2]``.

    Args:
        f: ``[B, D]`` features of the batch under the trained ``f_theta`` (with gradient).
        f_frozen: ``[B, D]`` features of the same inputs under the frozen copy ``f_theta'``.

    Returns:
        scalar. ``cos`` is the cosine similarity and ``d`` the Euclidean distance of the given vectors
        (UEM's features are L2-normalised, paper-spec §7 #2).
    """
    f_frozen = f_frozen.detach()
    fn = F.normalize(f, dim=1)
    gn = F.normalize(f_frozen, dim=1)
    cos_diff = fn @ fn.t() - gn @ gn.t()
    dist_diff = pairwise_euclidean_grad(f, f) - pairwise_euclidean_grad(f_frozen, f_frozen)
    return (cos_diff.pow(2) + dist_diff.pow(2)).mean()


@dataclass(frozen=True)
class Sn2mTargets:
    """Targets of Eq. 17 for a batch of the query-side domain (A when computing ``L^A_SN2M``).

    Attributes:
        own_proto: ``[B]`` Eq. 15, index of the ``delta``-nearest prototype in the domain's own ``P^A``.
        neighbour: ``[B]`` Eq. 16, index of the ``delta``-nearest instance among the other domain's
            candidates (its memory bank by default).
        neighbour_proto: ``[B]`` index in ``P^{B'}`` of the neighbour's ``delta``-nearest merged prototype.
        proto_pos: ``[B]`` index in ``P^{B'}`` of ``p~^A_{c_i}``: the own prototype translated into B and
            merged or not by Eq. 9.
        agree: ``[B]`` bool, ``neighbour_proto == proto_pos`` (the switch of Eq. 17: the neighbour is a
            positive only then).
        partnered: ``[B]`` bool, the own prototype ``p^A_{c_i}`` merged with a B prototype by Eq. 9 (so
            ``p~^A_{c_i}`` is a merged midpoint rather than A's own prototype translated into B).
    """

    own_proto: torch.Tensor
    neighbour: torch.Tensor
    neighbour_proto: torch.Tensor
    proto_pos: torch.Tensor
    agree: torch.Tensor
    partnered: torch.Tensor


#: Readings of Eq. 17 for a sample whose own prototype has no merged partner (``p~^A_{c_i}`` is then A's own
#: prototype translated into B, a member of ``P^{B'}`` that no B instance belongs to):
#: ``literal`` — Eq. 17 as printed (that translated prototype is the positive, every B instance a negative);
#: ``skip`` — such samples have no SN2M term (no cross-domain match exists for them, by Eq. 9);
#: ``prototypes`` — the positive stays, but the denominator holds only the prototypes of ``P^{B'}`` (the
#: B instances are not pushed away from a sample that has no partner among them).
SN2M_UNMERGED = ("literal", "skip", "prototypes")


@torch.no_grad()
def sn2m_targets(
    f: torch.Tensor,
    own_prototypes: torch.Tensor,
    own_to_other: torch.Tensor,
    other_merged: torch.Tensor,
    candidates: torch.Tensor,
    own_merged: torch.Tensor | None = None,
) -> Sn2mTargets:
    """Eqs. 15–16 and the switch of Eq. 17, all searches in the product distance ``delta``.

    Args:
        f: ``[B, D]`` features of the batch of domain A.
        own_prototypes: ``[K_A, D]`` A's own K-means prototypes ``P^A``.
        own_to_other: ``[K_A]`` row of ``P^{B'}`` that each A prototype maps to (``MergeResult.a_to_b``).
        other_merged: ``[C~_B, D]`` B's merged structure ``P^{B'}``.
        candidates: ``[N, D]`` B's instance features searched by Eq. 16 (memory bank or batch).
        own_merged: ``[K_A]`` bool, A's prototypes merged by Eq. 9 (``MergeResult.merged_a``); ``None`` =
            all partnered.
    """
    own, _ = nearest_by_delta(f, own_prototypes)  # Eq. 15
    nb, _ = nearest_by_delta(f, candidates)  # Eq. 16
    nb_proto, _ = nearest_by_delta(candidates[nb], other_merged)
    pos = own_to_other[own]
    partnered = torch.ones_like(own, dtype=torch.bool) if own_merged is None else own_merged[own]
    return Sn2mTargets(own, nb, nb_proto, pos, nb_proto == pos, partnered)


def sn2m_loss(
    f: torch.Tensor,
    other_merged: torch.Tensor,
    candidates: torch.Tensor,
    targets: Sn2mTargets,
    tau: float = 0.07,
    unmerged: str = "literal",
) -> torch.Tensor:
    """Eq. 17: ``(1/B) sum_i -log(Delta_i / (sum_c e^{f_i.p^{B'}_c/tau} + sum_j e^{f_i.x^B_j/tau}))``.

    ``Delta_i`` holds ``e^{f_i.p~/tau}`` and, when ``targets.agree[i]``, also ``e^{f_i.x^{A,B}_i/tau}``.
    ``unmerged`` (:data:`SN2M_UNMERGED`) says what a sample without a merged own prototype contributes.

    Args:
        f: ``[B, D]`` features of domain A's batch (with gradient).
        other_merged: ``[C~_B, D]`` ``P^{B'}`` (negatives and the prototype positive).
        candidates: ``[N, D]`` B's instances (negatives and the instance positive).
        targets: from :func:`sn2m_targets`.
    """
    c = len(other_merged)
    logits = torch.cat([f @ other_merged.t(), f @ candidates.t()], dim=1) / tau
    rows = torch.arange(len(f), device=f.device)
    pos = torch.zeros_like(logits, dtype=torch.bool)
    pos[rows, targets.proto_pos] = True
    pos[rows[targets.agree], c + targets.neighbour[targets.agree]] = True
    if unmerged not in SN2M_UNMERGED:
        raise ValueError(f"unmerged must be one of {SN2M_UNMERGED}, got {unmerged!r}")
    alone = ~targets.partnered
    if unmerged == "skip":
        pos[alone] = False  # rows without a positive are left out of the mean
    elif unmerged == "prototypes":
        inst = torch.zeros_like(pos)
        inst[alone, c:] = True
        pos = pos & ~inst
        logits = logits.masked_fill(inst, float("-inf"))
    return multi_positive_nce(logits, pos, reduction="mean")


def nn_match_loss(f: torch.Tensor, candidates: torch.Tensor, tau: float = 0.07) -> torch.Tensor:
    """``uem-no-sn2m`` stand-in (paper-spec §7 #20): the cross-domain cosine nearest neighbour as positive.

    ``(1/B) sum_i -log(e^{f_i.x_nn(i)/tau} / sum_j e^{f_i.x_j/tau})`` with ``nn(i) = argmax_j cos(f_i, x_j)``
    over the other domain's candidates ``[N, D]``; no prototypes and no reliability switch.
    """
    logits = f @ candidates.t()
    with torch.no_grad():
        nn_idx = (F.normalize(f, dim=1) @ F.normalize(candidates, dim=1).t()).argmax(dim=1)
    return F.cross_entropy(logits / tau, nn_idx)


def adversarial_loss(
    classifier: DomainClassifier,
    f_a: torch.Tensor,
    f_b: torch.Tensor,
    mode: str = "grl",
    lam: float = 1.0,
    reduction: str = "mean",
) -> torch.Tensor:
    """Eq. 13 in one optimiser step (paper-spec §7 #7).

    * ``mode="grl"``: gradient reversal (DANN): the classifier minimises Eq. 13 and the features receive
      ``-lam`` times its gradient (:func:`u2cdr_bench.blocks.grl.domain_adversarial_loss`).
    * ``mode="flip"``: the classifier minimises Eq. 13 on detached features, and the feature extractor
      minimises Eq. 13 with flipped domain labels through a gradient-free copy of the classifier (GAN-style
      label flipping; equivalent to alternating updates with one step each).

    ``reduction`` is ``"sum"`` (Eq. 13 as printed) or ``"mean"`` over the ``2B`` samples.
    """
    if mode == "grl":
        return domain_adversarial_loss(classifier, f_a, f_b, lam=lam, reduction=reduction)
    if mode == "flip":
        feats = torch.cat([f_a, f_b])
        y = torch.cat([torch.ones(len(f_a)), torch.zeros(len(f_b))]).to(feats)
        d_loss = F.binary_cross_entropy_with_logits(classifier(feats.detach()), y, reduction=reduction)
        frozen = {k: v.detach() for k, v in classifier.named_parameters()}
        g_logits = functional_call(classifier, frozen, (feats,))
        g_loss = F.binary_cross_entropy_with_logits(g_logits, 1.0 - y, reduction=reduction)
        return d_loss + lam * g_loss
    raise ValueError(f"adv_mode must be 'grl' or 'flip', got {mode!r}")

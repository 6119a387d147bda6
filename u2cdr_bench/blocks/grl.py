"""Gradient reversal and the two-layer domain classifier (paper-spec §2.3(a), Eq. 13; Ganin & Lempitsky 2015).

``grad_reverse(x, lam)`` is the identity in the forward pass and multiplies the gradient by ``-lam`` in
the backward pass, so one optimiser step makes the classifier g_omega *minimise* the domain loss while the
feature extractor *maximises* it (the "bi-level" game of Eq. 13 in its DANN form; paper-spec §7 #7).
"""

from __future__ import annotations

import math

import torch
from torch import nn


class _GradReverse(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:  # type: ignore[override]
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:  # type: ignore[override]
        return -ctx.lam * grad, None


def grad_reverse(x: torch.Tensor, lam: float = 1.0) -> torch.Tensor:
    """Identity forward; gradient times ``-lam`` backward."""
    return _GradReverse.apply(x, lam)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """DANN's warm-up schedule ``2 / (1 + exp(-gamma * p)) - 1`` for training progress ``p`` in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-gamma * progress)) - 1.0


class DomainClassifier(nn.Module):
    """Two fully-connected layers ``D -> hidden -> 1`` (ReLU between), returning logits ``[B]``.

    The paper says "two fully-connected layers" without a width (paper-spec §7 #7); ``hidden`` defaults
    to 256. The probability of domain A is ``sigmoid(logit)``.
    """

    def __init__(self, in_dim: int, hidden: int = 256) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


class DomainDiscriminator(nn.Module):
    """tllib's DANN domain discriminator ``D -> hidden -> hidden -> 1`` with BatchNorm; logits ``[B]``.

    ``Linear(D, h) - BN(h) - ReLU - Linear(h, h) - BN(h) - ReLU - Linear(h, 1)``, ``h = 1024`` in tllib's DANN
    (thuml/Transfer-Learning-Library at c4aa59e: ``tllib/modules/domain_discriminator.py`` ll. 29-46 with
    ``batch_norm=True``; ``examples/domain_adaptation/image_classification/dann.py`` l. 76). tllib ends in a
    sigmoid and uses ``binary_cross_entropy``; we return the logit for ``binary_cross_entropy_with_logits``
    (the same loss, numerically stable). Same interface as :class:`DomainClassifier`.
    """

    def __init__(self, in_dim: int, hidden: int = 1024) -> None:
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(in_dim, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, hidden),
            nn.BatchNorm1d(hidden),
            nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(-1)


def domain_adversarial_loss(
    classifier: nn.Module,
    feats_a: torch.Tensor,
    feats_b: torch.Tensor,
    lam: float = 1.0,
    reduction: str = "sum",
) -> torch.Tensor:
    """Eq. 13: binary cross-entropy of the domain classifier on reversed-gradient features.

    ``y = 1`` for domain A and ``y = 0`` for domain B over the ``2B`` samples;
    ``reduction="sum"`` is Eq. 13 as printed, ``"mean"`` divides by ``2B``.
    """
    return domain_adversarial_loss_and_logits(classifier, feats_a, feats_b, lam, reduction)[0]


def domain_adversarial_loss_and_logits(
    classifier: nn.Module,
    feats_a: torch.Tensor,
    feats_b: torch.Tensor,
    lam: float = 1.0,
    reduction: str = "sum",
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`domain_adversarial_loss` and the classifier's logits ``[B_A + B_B]`` (A first) it was computed
    from, so a caller can read the domain accuracy without a second forward pass."""
    feats = grad_reverse(torch.cat([feats_a, feats_b]), lam)
    logits = classifier(feats)
    y = torch.cat([torch.ones(len(feats_a)), torch.zeros(len(feats_b))]).to(logits)
    return nn.functional.binary_cross_entropy_with_logits(logits, y, reduction=reduction), logits

"""Trainable encoders: what a method optimises in each input mode (DESIGN.md "Two input modes").

* image inputs (embedded digits): :class:`SmallCNN` trained from scratch + :class:`MLPHead`;
* cached frozen-backbone features: an :class:`MLPHead` alone (the trainable head);
* finetune mode: a real backbone + head (built by :mod:`u2cdr_bench.backbones`).

Every encoder maps a batch of inputs to ``[B, out_dim]`` *unnormalised* features and exposes
``out_dim``; methods L2-normalise where their losses need it.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn


class SmallCNN(nn.Module):
    """Three 3×3 conv blocks (32, 64, 128 channels, BN, ReLU, two 2×2 max-pools), global average pool.

    Input ``[B, C, H, W]`` (digits: ``[B, 1, 16, 16]``), output ``[B, 128]``.
    """

    out_dim = 128

    def __init__(self, in_channels: int = 1, width: int = 32) -> None:
        super().__init__()
        w = width

        def block(cin: int, cout: int) -> list[nn.Module]:
            return [
                nn.Conv2d(cin, cout, 3, padding=1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(inplace=True),
            ]

        self.net = nn.Sequential(
            *block(in_channels, w),
            nn.MaxPool2d(2),
            *block(w, 2 * w),
            nn.MaxPool2d(2),
            *block(2 * w, 4 * w),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_dim = 4 * w

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class MLPHead(nn.Module):
    """Two-layer projection head ``in -> hidden -> out`` (ReLU), as MoCo-v2 / UCDIR (paper-spec §7 #1)."""

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.net = nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))
        self.out_dim = out_dim

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class StructureHead(nn.Module):
    """A head that starts as the input's own geometry: a PCA projection plus a residual MLP starting at zero.

    ``head(x) = W (x - mu) + MLP(x)``, with ``W`` ``[out, in]`` the top-``out`` principal axes of the pooled
    training inputs of both domains (orthonormal rows, so Euclidean distances inside that subspace are kept),
    ``mu`` their mean, and ``MLP = Linear(in, hidden) - ReLU - Linear(hidden, out)`` whose last layer is
    initialised at zero. At initialisation the output is exactly the centred PCA projection of the input
    (issue 10: the old random MLP head cost about 8 mAP@All points on PACS before any training); training
    then moves both paths. :meth:`init_from_data` must be called with the training inputs before the first
    step (``EncoderMethod`` does it at the start of ``fit``); until then the linear path is zero.

    Which data: only the inputs of the two domains of the task, without labels (transductive, as every
    method's training; paper-spec §7 #14).
    """

    def __init__(self, in_dim: int, hidden: int = 512, out_dim: int = 128) -> None:
        super().__init__()
        self.mlp = MLPHead(in_dim, hidden, out_dim)
        self.linear = nn.Linear(in_dim, out_dim)
        nn.init.zeros_(self.mlp.net[-1].weight)
        nn.init.zeros_(self.mlp.net[-1].bias)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)
        self.out_dim = out_dim

    @torch.no_grad()
    def init_from_data(self, x: torch.Tensor) -> None:
        """Set ``W`` and the bias ``-W mu`` from inputs ``x`` ``[N, in]`` (PCA by SVD, float64)."""
        xd = x.reshape(len(x), -1).double()
        mu = xd.mean(dim=0)
        _, _, vt = torch.linalg.svd(xd - mu, full_matrices=False)
        w = torch.zeros(self.out_dim, xd.shape[1], dtype=torch.float64)
        k = min(self.out_dim, vt.shape[0])
        w[:k] = vt[:k]
        # a deterministic sign per axis (the SVD's is arbitrary): the largest |entry| of each axis positive
        sign = torch.sign(w[torch.arange(k), w[:k].abs().argmax(dim=1)])
        w[:k] *= torch.where(sign == 0, torch.ones_like(sign), sign)[:, None]
        self.linear.weight.copy_(w.float())
        self.linear.bias.copy_((-(w @ mu)).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(x) + self.mlp(x)


#: Heads of the features mode: ``structure`` (:class:`StructureHead`, default) or ``random`` (the old
#: randomly initialised :class:`MLPHead`, kept under its name).
FEATURE_HEADS = ("structure", "random")


class Encoder(nn.Module):
    """``backbone`` followed by ``head``; ``out_dim`` is the head's output size."""

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.head = head
        self.out_dim = int(head.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.backbone(x))


def make_encoder_factory(
    input_kind: str,
    input_shape: tuple[int, ...],
    out_dim: int = 128,
    hidden: int = 512,
    backbone_factory: Callable[[], nn.Module] | None = None,
) -> Callable[..., nn.Module]:
    """A builder of a fresh encoder for the given inputs: ``factory(head=None)``.

    ``backbone_factory`` (finetune mode) must build a module with an ``out_dim`` attribute. ``head`` picks
    the head in features mode (:data:`FEATURE_HEADS`; default ``structure``); image and finetune encoders
    ignore it.
    """
    if backbone_factory is not None:

        def build_ft(head: str | None = None) -> nn.Module:
            bb = backbone_factory()
            return Encoder(bb, MLPHead(int(bb.out_dim), hidden, out_dim))

        return build_ft
    if input_kind == "image":
        channels = int(input_shape[0])

        def build_img(head: str | None = None) -> nn.Module:
            cnn = SmallCNN(channels)
            return Encoder(cnn, MLPHead(cnn.out_dim, 128, out_dim))

        return build_img
    if input_kind == "features":
        in_dim = int(input_shape[-1])

        def build_feat(head: str | None = None) -> nn.Module:
            kind = head or "structure"
            if kind not in FEATURE_HEADS:
                raise ValueError(f"head must be one of {FEATURE_HEADS}, got {kind!r}")
            cls = StructureHead if kind == "structure" else MLPHead
            return Encoder(nn.Identity(), cls(in_dim, hidden, out_dim))

        return build_feat
    raise ValueError(f"unknown input kind {input_kind!r}")

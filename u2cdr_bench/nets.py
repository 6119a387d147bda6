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
) -> Callable[[], nn.Module]:
    """A zero-argument builder of a fresh encoder for the given inputs.

    ``backbone_factory`` (finetune mode) must build a module with an ``out_dim`` attribute.
    """
    if backbone_factory is not None:

        def build_ft() -> nn.Module:
            bb = backbone_factory()
            return Encoder(bb, MLPHead(int(bb.out_dim), hidden, out_dim))

        return build_ft
    if input_kind == "image":
        channels = int(input_shape[0])

        def build_img() -> nn.Module:
            cnn = SmallCNN(channels)
            return Encoder(cnn, MLPHead(cnn.out_dim, 128, out_dim))

        return build_img
    if input_kind == "features":
        in_dim = int(input_shape[-1])

        def build_feat() -> nn.Module:
            return Encoder(nn.Identity(), MLPHead(in_dim, hidden, out_dim))

        return build_feat
    raise ValueError(f"unknown input kind {input_kind!r}")

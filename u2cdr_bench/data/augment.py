"""Batch image augmentations in torch, fully determined by a ``torch.Generator``.

:class:`DigitAugment` is the :class:`~u2cdr_bench.data.types.Augmenter` of the embedded ``digits`` dataset:
``(x [B, C, H, W] float in [0, 1], generator) -> [B, C, H, W]``. Each call draws one independent set of
parameters per sample, in a fixed order, from ``generator`` only, so the same generator state always gives
the same views. The helpers (:func:`affine_transform`, :func:`dilate`, :func:`erode`, :func:`random_erase`)
work on any ``[B, C, H, W]`` batch and may serve real images too.

Example::

    aug = DigitAugment()                 # default (weak) views
    strong = DigitAugment(strong=True)   # larger ranges plus cutout
    g = torch.Generator().manual_seed(0)
    v = aug(x, g)                        # x: [B, 1, 16, 16] -> v: [B, 1, 16, 16]
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch
import torch.nn.functional as F

__all__ = ["DigitAugment", "affine_transform", "dilate", "erode", "random_erase"]


def _uniform(generator: torch.Generator, n: int, low: float, high: float) -> torch.Tensor:
    """``[n]`` float32 samples of U(low, high), drawn on the generator's device."""
    u = torch.rand(n, generator=generator, device=generator.device)
    return low + (high - low) * u


def affine_transform(
    x: torch.Tensor,
    angle: torch.Tensor,
    scale: torch.Tensor,
    shear: torch.Tensor,
    tx: torch.Tensor,
    ty: torch.Tensor,
    padding_mode: str = "zeros",
) -> torch.Tensor:
    """Per-sample affine warp of a batch (bilinear, ``F.affine_grid`` + ``F.grid_sample``).

    In pixel coordinates ``p = (column, row)`` centred on the image centre (x right, y down), an input point
    moves to ``p_out = M p_in + t`` with ``M = R(angle) Sh(shear) s`` where
    ``R(a) = [[cos a, -sin a], [sin a, cos a]]`` (positive angle = clockwise on screen, since y points
    down), ``Sh(f) = [[1, tan f], [0, 1]]`` and ``t = (tx, ty)``. The sampler needs the inverse map in
    ``affine_grid``'s normalised coordinates ``n = D^-1 p``, ``D = diag(W/2, H/2)`` (``align_corners=False``):
    ``n_in = D^-1 M^-1 D n_out - D^-1 M^-1 t``.

    Args:
        x: ``[B, C, H, W]`` images.
        angle: ``[B]`` rotation, degrees.
        scale: ``[B]`` isotropic scale factor (1 = unchanged), > 0.
        shear: ``[B]`` horizontal shear angle, degrees.
        tx, ty: ``[B]`` translation, pixels (positive = right / down).
        padding_mode: ``grid_sample`` padding for points mapped from outside the image
            (``"zeros"`` = dark background, ``"border"`` or ``"reflection"`` for natural images).

    Returns:
        ``[B, C, H, W]``; identity parameters (0, 1, 0, 0, 0) return ``x`` up to float rounding.
    """
    b, _, h, w = x.shape
    dt, dev = x.dtype, x.device
    a = torch.deg2rad(angle.to(dev, dt))
    sh = torch.tan(torch.deg2rad(shear.to(dev, dt)))
    s = scale.to(dev, dt)
    cos, sin = torch.cos(a), torch.sin(a)
    # M = R @ Sh @ (s I), written out: R @ [[1, sh], [0, 1]] = [[cos, cos*sh - sin], [sin, sin*sh + cos]].
    m = torch.stack(
        [torch.stack([cos, cos * sh - sin], -1), torch.stack([sin, sin * sh + cos], -1)], -2
    ) * s.view(b, 1, 1)
    m_inv = torch.linalg.inv(m)  # [B, 2, 2]
    d = torch.tensor([w / 2.0, h / 2.0], dtype=dt, device=dev)
    lin = m_inv * d.view(1, 1, 2) / d.view(1, 2, 1)  # D^-1 M^-1 D
    t = torch.stack([tx.to(dev, dt), ty.to(dev, dt)], -1)  # [B, 2] pixels
    shift = -(m_inv @ t.unsqueeze(-1)).squeeze(-1) / d  # -D^-1 M^-1 t
    theta = torch.cat([lin, shift.unsqueeze(-1)], -1)  # [B, 2, 3]
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode=padding_mode, align_corners=False)


def dilate(x: torch.Tensor) -> torch.Tensor:
    """Grayscale dilation by a 3 x 3 square: ``out[i, j] = max of x over the 3 x 3 neighbourhood``."""
    return F.max_pool2d(x, kernel_size=3, stride=1, padding=1)


def erode(x: torch.Tensor) -> torch.Tensor:
    """Grayscale erosion by a 3 x 3 square: ``out[i, j] = min of x over the 3 x 3 neighbourhood``."""
    return -F.max_pool2d(-x, kernel_size=3, stride=1, padding=1)


def random_erase(
    x: torch.Tensor,
    generator: torch.Generator,
    prob: float,
    size: tuple[float, float],
    value: float = 0.0,
) -> torch.Tensor:
    """Cutout: with probability ``prob`` per sample, set one random axis-aligned rectangle to ``value``.

    The rectangle's height and width are ``round(u * H)`` and ``round(v * W)`` with ``u, v ~ U(size)``
    (fractions of the side) and its top-left corner is uniform over the positions that keep it inside.
    Draws 5 ``[B]`` vectors from ``generator`` (whether or not ``prob`` is 0).
    """
    b, _, h, w = x.shape
    apply = _uniform(generator, b, 0.0, 1.0) < prob
    eh = torch.round(_uniform(generator, b, *size) * h).clamp(0, h)
    ew = torch.round(_uniform(generator, b, *size) * w).clamp(0, w)
    top = torch.floor(_uniform(generator, b, 0.0, 1.0) * (h - eh + 1)).clamp(max=h - eh)
    left = torch.floor(_uniform(generator, b, 0.0, 1.0) * (w - ew + 1)).clamp(max=w - ew)
    rows = torch.arange(h, device=generator.device).view(1, h, 1)
    cols = torch.arange(w, device=generator.device).view(1, 1, w)
    inside = (
        (rows >= top.view(b, 1, 1))
        & (rows < (top + eh).view(b, 1, 1))
        & (cols >= left.view(b, 1, 1))
        & (cols < (left + ew).view(b, 1, 1))
        & apply.view(b, 1, 1)
    )
    return x.masked_fill(inside.unsqueeze(1).to(x.device), value)


_PRESETS: dict[bool, dict[str, float | tuple[float, float]]] = {
    False: dict(
        rotation=12.0,
        scale=0.1,
        translate=0.08,
        shear=8.0,
        thickness=0.5,
        brightness=0.1,
        contrast=0.2,
        noise=0.04,
        erase_prob=0.0,
        erase_size=(0.2, 0.4),
    ),
    True: dict(
        rotation=25.0,
        scale=0.2,
        translate=0.15,
        shear=15.0,
        thickness=1.0,
        brightness=0.2,
        contrast=0.4,
        noise=0.1,
        erase_prob=0.5,
        erase_size=(0.25, 0.5),
    ),
}


@dataclass(init=False, frozen=True)
class DigitAugment:
    """Random view of a batch of dark-background images: affine, stroke thickness, photometric, noise, cutout.

    Per sample ``i`` (parameters independent, drawn from the generator in this order):

    1. stroke thickness: ``k ~ U(-thickness, thickness)``;
       ``x <- x + max(k, 0) (dilate(x) - x) + max(-k, 0) (erode(x) - x)`` (3 x 3 grey morphology, so
       ``k = 1`` is a full dilation and ``k = -1`` a full erosion);
    2. affine (:func:`affine_transform`, zero padding): angle ``~ U(-rotation, rotation)`` degrees,
       scale ``~ U(1 - scale, 1 + scale)``, shear ``~ U(-shear, shear)`` degrees, translation
       ``tx ~ U(-translate, translate) W`` and ``ty ~ U(-translate, translate) H`` pixels;
    3. contrast and brightness: ``x <- (x - mean(x)) c + mean(x) + b`` with ``c ~ U(1 - contrast,
       1 + contrast)``, ``b ~ U(-brightness, brightness)`` and ``mean`` over the sample's pixels;
    4. gaussian noise: ``x <- x + sigma z``, ``sigma ~ U(0, noise)``, ``z ~ N(0, 1)`` per pixel;
    5. cutout (:func:`random_erase`): with probability ``erase_prob`` a rectangle with sides
       ``~ U(erase_size)`` times the image side is set to 0;
    6. clamp to [0, 1].

    Args:
        strong: pick the strong preset (larger ranges plus cutout) instead of the default one; any
            explicitly given argument below overrides the preset.
        rotation: max |rotation|, degrees (default 12; strong 25).
        scale: max relative scale change, in [0, 1) (default 0.1; strong 0.2).
        translate: max |translation| as a fraction of the image side (default 0.08; strong 0.15).
        shear: max |shear|, degrees (default 8; strong 15).
        thickness: max |k| of the stroke change, in [0, 1] (default 0.5; strong 1.0).
        brightness: max |additive brightness change|, intensity units (default 0.1; strong 0.2).
        contrast: max relative contrast change, in [0, 1] (default 0.2; strong 0.4).
        noise: max std of the additive gaussian noise, intensity units (default 0.04; strong 0.1).
        erase_prob: probability of one cutout rectangle (default 0; strong 0.5).
        erase_size: (min, max) side of the cutout as a fraction of the image side
            (default (0.2, 0.4); strong (0.25, 0.5)).

    With every range 0 (and ``erase_prob=0``) the output equals the (clamped) input.
    """

    strong: bool
    rotation: float
    scale: float
    translate: float
    shear: float
    thickness: float
    brightness: float
    contrast: float
    noise: float
    erase_prob: float
    erase_size: tuple[float, float]

    def __init__(
        self,
        strong: bool = False,
        *,
        rotation: float | None = None,
        scale: float | None = None,
        translate: float | None = None,
        shear: float | None = None,
        thickness: float | None = None,
        brightness: float | None = None,
        contrast: float | None = None,
        noise: float | None = None,
        erase_prob: float | None = None,
        erase_size: tuple[float, float] | None = None,
    ) -> None:
        given = dict(
            rotation=rotation,
            scale=scale,
            translate=translate,
            shear=shear,
            thickness=thickness,
            brightness=brightness,
            contrast=contrast,
            noise=noise,
            erase_prob=erase_prob,
            erase_size=erase_size,
        )
        object.__setattr__(self, "strong", bool(strong))
        for name, val in given.items():
            val = _PRESETS[bool(strong)][name] if val is None else val
            if name == "erase_size":
                val = (float(val[0]), float(val[1]))
                if not 0.0 <= val[0] <= val[1] <= 1.0:
                    raise ValueError(f"erase_size must satisfy 0 <= min <= max <= 1, got {val}")
            else:
                val = float(val)
                if val < 0:
                    raise ValueError(f"{name} must be >= 0, got {val}")
            object.__setattr__(self, name, val)
        if self.scale >= 1.0:
            raise ValueError(f"scale must be < 1, got {self.scale}")
        for name in ("thickness", "contrast", "erase_prob"):
            if getattr(self, name) > 1.0:
                raise ValueError(f"{name} must be <= 1, got {getattr(self, name)}")

    def params(self) -> dict[str, float | tuple[float, float] | bool]:
        """The resolved parameters (for records)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One random view of ``x`` ``[B, C, H, W]`` in [0, 1]; returns ``[B, C, H, W]`` in [0, 1]."""
        if x.ndim != 4:
            raise ValueError(f"DigitAugment expects [B, C, H, W] images, got shape {tuple(x.shape)}")
        b, _, h, w = x.shape
        dev = x.device

        def draw(low: float, high: float) -> torch.Tensor:
            return _uniform(generator, b, low, high).to(dev).view(b, 1, 1, 1)

        # 1. stroke thickness
        k = draw(-self.thickness, self.thickness)
        x = x + k.clamp(min=0) * (dilate(x) - x) + (-k).clamp(min=0) * (erode(x) - x)
        # 2. affine
        angle = _uniform(generator, b, -self.rotation, self.rotation)
        scale = _uniform(generator, b, 1.0 - self.scale, 1.0 + self.scale)
        shear = _uniform(generator, b, -self.shear, self.shear)
        tx = _uniform(generator, b, -self.translate, self.translate) * w
        ty = _uniform(generator, b, -self.translate, self.translate) * h
        if self.rotation or self.scale or self.shear or self.translate:
            x = affine_transform(x, angle, scale, shear, tx, ty)
        # 3. contrast and brightness
        c = draw(1.0 - self.contrast, 1.0 + self.contrast)
        bright = draw(-self.brightness, self.brightness)
        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        x = (x - mean) * c + mean + bright
        # 4. gaussian noise
        sigma = draw(0.0, self.noise)
        z = torch.randn(x.shape, generator=generator, device=generator.device, dtype=x.dtype).to(dev)
        x = x + sigma * z
        # 5. cutout
        x = random_erase(x, generator, self.erase_prob, self.erase_size)
        return x.clamp(0.0, 1.0)

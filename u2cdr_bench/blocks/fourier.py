"""Fourier amplitude / phase image operations (DGDIR's domain augmentation; Hu, Zhang & Lee, ICCV 2023).

All functions work on image batches ``x`` of shape ``[B, C, H, W]`` with intensities in [0, 1]; the 2-D
discrete Fourier transform runs over the last two axes (``torch.fft.fft2``), unnormalised forward and
``1/(H W)`` on the inverse (numpy / torch convention). For an image ``x`` write

    F(x)[u, v] = A(x)[u, v] * exp(i * P(x)[u, v]),    A = |F(x)| (amplitude),  P = angle(F(x)) (phase).

The amplitude carries low-level style (colour, texture, contrast), the phase the structure (edges, shape);
DGDIR uses this split twice (official code ``conghui1002/DG-UCDIR``, ``utils/domainnet.py``):

1. **Domain augmentation** (:func:`spectrum_mix`, ``colorful_spectrum_mix`` there): the amplitude of an
   image is interpolated towards the amplitude of a random partner image from any training domain,

       A_mix = (1 - lam) * A(x) + lam * A(x'),               lam ~ U(0, alpha),  alpha = 1,

   and, second stage, the phase inside a centred low-frequency square of side ``w`` (in the
   ``fftshift``-ed spectrum) is linearly interpolated towards the partner's phase, the rest kept:

       P_mix = P(x) * (1 - mu * L) + P(x') * mu * L,          mu ~ U(0, beta),  beta = 0.4,

   with ``L`` the 0/1 low-pass mask (:func:`low_frequency_mask`; official ``--hpf_range 50`` on 224-pixel
   images, i.e. ``w = 50/224`` of the side, and ``--hpf_alpha 0.4``). The augmented image is
   ``clip(Re(IFFT2(A_mix * exp(i P_mix))), 0, 1)``. With ``lam = mu = 0`` it is ``x`` itself.
2. **Phase image** (:func:`phase_only_image`, ``phase_img_getter`` there): a constant amplitude with the
   phase of the grey-level image, ``clip(Re(IFFT2(a * exp(i P(gray(x))))), 0, 1)``, replicated over the
   channels: an edge map, the domain-invariant proxy of DGDIR. The official constant is 50000 on 0..255
   images of 224 x 224 pixels; we write it as ``a = c * sqrt(H W)`` (intensities in [0, 1]) with
   ``c = 50000 / (255 * 224)`` so the same constant gives the same contrast at any image size.

Grey level follows PIL's ``convert("L")``: ``0.299 R + 0.587 G + 0.114 B`` (one-channel input unchanged).

Example::

    g = torch.Generator().manual_seed(0)
    mixed, phase = fourier_augment(x, partner, g)      # x, partner: [B, C, H, W] in [0, 1]
"""

from __future__ import annotations

import math

import torch

#: ``c`` of the phase-image amplitude ``a = c * sqrt(H W)``: the official 50000 on 0..255, 224 x 224 images.
PHASE_AMPLITUDE = 50000.0 / (255.0 * 224.0)
#: Side of the low-frequency phase-mixing square as a fraction of the image side (official 50 of 224).
PHASE_MIX_FRACTION = 50.0 / 224.0

__all__ = [
    "PHASE_AMPLITUDE",
    "PHASE_MIX_FRACTION",
    "amplitude_phase",
    "fourier_augment",
    "low_frequency_mask",
    "match_partner",
    "phase_only_image",
    "spectrum_mix",
    "to_gray",
]


def amplitude_phase(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Amplitude ``|F(x)|`` and phase ``angle(F(x))`` (radians, in (-pi, pi]) of ``x`` ``[..., H, W]``."""
    spec = torch.fft.fft2(x.to(torch.float64))
    return spec.abs(), spec.angle()


def _compose(amplitude: torch.Tensor, phase: torch.Tensor) -> torch.Tensor:
    """``Re(IFFT2(amplitude * exp(i phase)))`` as float64 ``[..., H, W]``."""
    return torch.fft.ifft2(torch.polar(amplitude, phase)).real


def to_gray(x: torch.Tensor) -> torch.Tensor:
    """Grey level ``[B, 1, H, W]`` of ``[B, C, H, W]`` (C=1 unchanged, C=3 ITU-R 601 weights, else mean)."""
    c = x.shape[1]
    if c == 1:
        return x
    if c == 3:
        w = torch.tensor([0.299, 0.587, 0.114], dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    return x.mean(dim=1, keepdim=True)


def low_frequency_mask(h: int, w: int, width: int, device: torch.device | None = None) -> torch.Tensor:
    """``[H, W]`` float 0/1 mask of the centred ``width x width`` low-frequency square, unshifted layout.

    In the ``fftshift``-ed spectrum (zero frequency at ``(H//2, W//2)``) the square covers rows
    ``round((H - width) / 2) .. round((H + width) / 2) - 1`` and the same columns (official
    ``generateFilter``, Python/numpy round-half-to-even); the mask is returned ``ifftshift``-ed so it
    multiplies the plain ``fft2`` output directly. ``width <= 0`` gives an all-zero mask.
    """
    mask = torch.zeros(h, w, dtype=torch.float64, device=device)
    if width > 0:
        r0, r1 = int(round((h - width) / 2)), int(round((h + width) / 2))
        c0, c1 = int(round((w - width) / 2)), int(round((w + width) / 2))
        mask[max(r0, 0) : max(r1, 0), max(c0, 0) : max(c1, 0)] = 1.0
    return torch.fft.ifftshift(mask, dim=(-2, -1))


def spectrum_mix(
    x: torch.Tensor,
    partner: torch.Tensor,
    lam: torch.Tensor | float,
    phase_lam: torch.Tensor | float = 0.0,
    phase_width: int = 0,
    clip: bool = True,
) -> torch.Tensor:
    """Amplitude interpolation plus low-frequency phase interpolation (module docstring, step 1).

    Args:
        x: ``[B, C, H, W]`` images whose structure (phase) is kept.
        partner: ``[B, C, H, W]`` images lending their amplitude (and low-frequency phase).
        lam: amplitude ratio, scalar or ``[B]``; 0 keeps ``A(x)``, 1 takes ``A(partner)``.
        phase_lam: low-frequency phase ratio, scalar or ``[B]``.
        phase_width: side of the low-frequency square in pixels (0: phase untouched).
        clip: clip the result to [0, 1] (the official code clips to the uint8 range).

    Returns:
        ``[B, C, H, W]`` in ``x``'s dtype.
    """
    if x.shape != partner.shape:
        raise ValueError(f"spectrum_mix needs equal shapes, got {tuple(x.shape)} and {tuple(partner.shape)}")
    b, _, h, w = x.shape
    amp1, pha1 = amplitude_phase(x)
    amp2, pha2 = amplitude_phase(partner)
    lam_t = torch.as_tensor(lam, dtype=torch.float64, device=x.device).reshape(-1, 1, 1, 1).expand(b, 1, 1, 1)
    mu = (
        torch.as_tensor(phase_lam, dtype=torch.float64, device=x.device)
        .reshape(-1, 1, 1, 1)
        .expand(b, 1, 1, 1)
    )
    amp = (1.0 - lam_t) * amp1 + lam_t * amp2
    low = low_frequency_mask(h, w, phase_width, device=x.device) * mu  # [B, 1, H, W]
    pha = pha1 * (1.0 - low) + pha2 * low
    out = _compose(amp, pha)
    if clip:
        out = out.clamp(0.0, 1.0)
    return out.to(x.dtype)


def phase_only_image(
    x: torch.Tensor, amplitude: float = PHASE_AMPLITUDE, clip: bool = True, gray: bool = True
) -> torch.Tensor:
    """Phase image (module docstring, step 2): ``Re(IFFT2(c sqrt(HW) exp(i P(gray(x)))))``, ``[B, C, H, W]``.

    With ``clip=False`` its Fourier phase equals the phase of ``gray(x)`` wherever ``F(gray(x)) != 0`` and
    its amplitude is the constant ``c sqrt(H W)``. ``gray=False`` keeps the channels separate.
    """
    b, c, h, w = x.shape
    src = to_gray(x) if gray else x
    _, pha = amplitude_phase(src)
    const = torch.full_like(pha, amplitude * math.sqrt(h * w))
    out = _compose(const, pha)
    if clip:
        out = out.clamp(0.0, 1.0)
    if gray and c != 1:
        out = out.expand(b, c, h, w)
    return out.to(x.dtype).contiguous()


def match_partner(partner: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """``partner`` ``[B, C', H', W']`` in ``like``'s channels and size (grey/replicate, bilinear resize)."""
    p = partner.to(like.dtype)
    c = like.shape[1]
    if p.shape[1] != c:
        p = to_gray(p)
        if c != 1:
            p = p.expand(-1, c, -1, -1)
    if p.shape[-2:] != like.shape[-2:]:
        p = torch.nn.functional.interpolate(p, size=like.shape[-2:], mode="bilinear", align_corners=False)
    return p.contiguous()


def fourier_augment(
    x: torch.Tensor,
    partner: torch.Tensor,
    generator: torch.Generator,
    alpha: float = 1.0,
    phase_alpha: float = 0.4,
    phase_fraction: float = PHASE_MIX_FRACTION,
    phase_amplitude: float = PHASE_AMPLITUDE,
) -> tuple[torch.Tensor, torch.Tensor]:
    """DGDIR's per-sample augmentation: ``(mixed image, phase image of x)``, both ``[B, C, H, W]``.

    Draws ``lam ~ U(0, alpha)`` and ``mu ~ U(0, phase_alpha)`` per sample from ``generator`` (in that
    order), mixes ``x`` with ``partner`` by :func:`spectrum_mix` (low-frequency square of side
    ``round(phase_fraction * H)``) and forms the phase image of the *unmixed* ``x`` (official order).
    """
    b = x.shape[0]
    partner = match_partner(partner, x)
    lam = torch.rand(b, generator=generator, dtype=torch.float64) * alpha
    mu = torch.rand(b, generator=generator, dtype=torch.float64) * phase_alpha
    width = int(round(phase_fraction * x.shape[-2]))
    mixed = spectrum_mix(x, partner, lam.to(x.device), mu.to(x.device), width)
    return mixed, phase_only_image(x, amplitude=phase_amplitude)

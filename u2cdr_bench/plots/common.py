"""What every plot shares: output files, figure sizes, titles, colours and the images behind sample ids.

Figures are built with matplotlib's object API (:class:`matplotlib.figure.Figure`, no pyplot state, no
display needed) and constrained layout, and saved without ``bbox_inches="tight"``, so a figure of
``(w, h)`` inches at ``dpi`` is exactly ``w·dpi × h·dpi`` pixels (tests check the size).

Images behind the saved sample ids (:class:`ImageSource`):

* datasets of kind ``image`` (the embedded digits): the id ``"<domain>/<row>"`` is the row of the loaded
  domain, read back from the digits cache (built in ~3 s if missing);
* real images (PACS, ``folder:PATH``): the saved absolute path, else ``--data-dir/<dataset>/<id>``;
* anything else (``npz:`` features, images that cannot be found): a tile with the class name.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from ..errors import UserError

FORMATS = ("png", "pdf", "svg")
DPI = 100
CORRECT = "#1a9850"  # green frame: same class as the query
WRONG = "#d73027"  # red frame: another class
QUERY = "#2c7bb6"  # blue frame: the query itself
NEUTRAL = "#777777"  # grey frame: correctness unknown


def output_path(path: Path | None, default: str) -> Path:
    """``path`` (or ``default``) with a supported suffix; UserError otherwise."""
    out = Path(path) if path is not None else Path(default)
    suffix = out.suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        raise UserError(
            f"Cannot write a figure to '{out}': the suffix must be one of .{', .'.join(FORMATS)}."
        )
    return out


def new_figure(width: float, height: float, dpi: int = DPI) -> Figure:
    """A figure of ``width × height`` inches with constrained layout."""
    return Figure(figsize=(width, height), dpi=dpi, layout="constrained")


def save_figure(fig: Figure, path: Path) -> Path:
    """Write ``fig`` to ``path`` (format from the suffix), creating the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=fig.dpi, format=path.suffix.lower().lstrip("."))
    return path


def task_title(record: dict[str, Any], with_method: bool = True) -> str:
    """``"pacs · open-set · P→S · uem · seed 2024"`` from a record."""
    c = record["config"]
    parts = [c["dataset"], c["setting"], record["task"]["pair"]]
    if with_method:
        parts.append(c["method"])
    parts.append(f"seed {c['seed']}")
    return " · ".join(parts)


def class_colours(n: int) -> list[tuple[float, float, float, float]]:
    """``n`` distinguishable colours: tab10 up to 10 classes, tab20 up to 20, then a hue wheel."""
    from matplotlib import colormaps

    if n <= 10:
        cmap = colormaps["tab10"]
        return [cmap(i) for i in range(n)]
    if n <= 20:
        cmap = colormaps["tab20"]
        return [cmap(i) for i in range(n)]
    cmap = colormaps["hsv"]
    return [cmap(i / n) for i in range(n)]


def shorten(text: str, width: int = 14) -> str:
    """``text`` cut to ``width`` characters with an ellipsis."""
    return text if len(text) <= width else text[: width - 1] + "…"


@dataclass
class ImageSource:
    """Finds the image of a saved sample (see the module docstring); ``None`` when there is none.

    Attributes:
        dataset: the record's dataset name.
        data_dir: ``--data-dir`` (a data home) for real images whose saved path is gone.
        cache_dir: the cache of the embedded digits.
    """

    dataset: str
    data_dir: Path | None = None
    cache_dir: Path | None = None
    _domains: dict[str, np.ndarray] = field(default_factory=dict)
    _kind: str | None = None

    def kind(self) -> str:
        if self._kind is None:
            try:
                from ..data.registry import get_dataset

                self._kind = get_dataset(self.dataset).kind
            except UserError:
                self._kind = "unknown"
        return self._kind

    def _pixels(self, domain: str) -> np.ndarray | None:
        if domain not in self._domains:
            from ..data.registry import DataOptions, get_dataset

            try:
                spec = get_dataset(self.dataset)
                samples = spec.load(domain, DataOptions(cache_dir=self.cache_dir, quiet=True))
            except UserError:
                return None
            self._domains[domain] = samples.x.numpy()
        return self._domains[domain]

    def image(self, sample_id: str, file: str | None = None) -> np.ndarray | None:
        """``[H, W]`` (gray, in [0, 1]) or ``[H, W, 3]`` (uint8) image of one sample, or ``None``."""
        if self.kind() == "image":
            domain, _, row = sample_id.rpartition("/")
            x = self._pixels(domain) if row.isdigit() else None
            if x is None or int(row) >= len(x):
                return None
            img = x[int(row)]
            return img[0] if img.shape[0] == 1 else np.moveaxis(img, 0, -1)
        candidates = [Path(file)] if file else []
        if self.data_dir is not None:
            candidates += [self.data_dir / self.dataset / sample_id, self.data_dir / sample_id]
        for path in candidates:
            if path.is_file():
                return load_thumbnail(path)
        return None


def load_thumbnail(path: Path, size: int = 128) -> np.ndarray | None:
    """A square ``[size, size, 3]`` uint8 centre crop of an image file, or ``None`` when unreadable."""
    from PIL import Image

    from ..data.images import open_rgb

    img = open_rgb(path)
    if img is None:
        return None
    w, h = img.size
    s = min(w, h)
    img = img.crop(((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s))
    return np.asarray(img.resize((size, size), Image.Resampling.BILINEAR))


def draw_tile(ax: Any, image: np.ndarray | None, label: str, frame: str, caption: str | None = None) -> None:
    """One retrieval tile: the image (or the class name when there is none) in a coloured frame."""
    ax.set_xticks([])
    ax.set_yticks([])
    if image is not None:
        if image.ndim == 2:
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(image, interpolation="bilinear")
    else:
        ax.set_facecolor("#f2f2f2")
        ax.text(0.5, 0.5, shorten(label, 12), ha="center", va="center", fontsize=8, transform=ax.transAxes)
    for spine in ax.spines.values():
        spine.set_edgecolor(frame)
        spine.set_linewidth(3.0)
    if caption:
        ax.set_xlabel(caption, fontsize=7, labelpad=2)


def record_seeds(records: Sequence[dict[str, Any]]) -> list[int]:
    return sorted({int(r["config"]["seed"]) for r in records})

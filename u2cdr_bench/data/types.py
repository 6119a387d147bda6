"""Data containers: the evaluation side (with labels) and the method side (no labels at all).

* :class:`DomainSamples` holds one domain of one dataset: inputs, labels (evaluation only) and the
  means to draw augmented views. It never reaches a method.
* :class:`UnlabeledDomain` is what :meth:`Method.fit` receives. It is built from a ``DomainSamples``
  by copying the inputs and the augmentation means only; it has no label attribute and cannot get one
  (``__slots__``), so label leakage is impossible by construction (DESIGN.md, "Methods never see labels").

Input modes (DESIGN.md "Two input modes, one method code"):

* ``image``: ``x`` is ``[N, C, H, W]`` float32 in [0, 1]; augmented views are drawn on the fly by an
  :class:`Augmenter` (the embedded ``digits`` and the ``finetune`` mode).
* ``features``: ``x`` is ``[N, D]`` float32 frozen-backbone features of the clean view; ``views`` is
  ``[V, N, D]`` features of V pre-extracted augmented views, and a "view" draws one of them per sample.

Methods see tensors plus sample indices and never know which mode produced them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

if TYPE_CHECKING:  # torch is imported where it is used, so listing datasets stays light
    import torch

InputKind = Literal["image", "features"]


class Augmenter(Protocol):
    """Draws one random augmented view of a batch of inputs: ``(x [B, ...], generator) -> [B, ...]``."""

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor: ...


@dataclass(frozen=True)
class DomainSamples:
    """One domain's samples with labels (evaluation side only).

    Attributes:
        domain: canonical domain name, e.g. ``"mnist"``.
        x: clean inputs, ``[N, C, H, W]`` (image) or ``[N, D]`` (features), float32.
        labels: ``[N]`` int64 indices into the dataset's ``class_names``.
        class_names: the dataset's class names, in the dataset's fixed order.
        kind: ``"image"`` or ``"features"``.
        views: ``[V, N, D]`` pre-extracted augmented views (features mode) or ``None``.
        augment: on-the-fly augmenter (image mode) or ``None``.
        strong_augment: optional stronger augmenter (image mode; e.g. DN2A's strong augmentation).
        extra_views: named extra pre-extracted view sets (features mode), e.g. ``{"strong": [V, N, D]}``.
        info: free-form facts for the record (e.g. skipped corrupt files).
        ids: ``[N]`` stable sample ids (real images: the path relative to the dataset folder) or ``None``;
            :meth:`sample_ids` then numbers the samples ``"<domain>/<row>"`` in the loaded order.
        files: ``[N]`` absolute image paths (real images) or ``None``; used by ``plot retrievals``.
    """

    domain: str
    x: torch.Tensor
    labels: np.ndarray
    class_names: tuple[str, ...]
    kind: InputKind
    views: torch.Tensor | None = None
    augment: Augmenter | None = None
    strong_augment: Augmenter | None = None
    extra_views: dict[str, torch.Tensor] = field(default_factory=dict)
    info: dict = field(default_factory=dict)
    ids: tuple[str, ...] | None = None
    files: tuple[str, ...] | None = None

    def __post_init__(self) -> None:
        if len(self.x) != len(self.labels):
            raise ValueError(f"{self.domain}: {len(self.x)} inputs but {len(self.labels)} labels")
        if self.views is not None and self.views.shape[1] != len(self.x):
            raise ValueError(f"{self.domain}: views hold {self.views.shape[1]} samples, inputs {len(self.x)}")

    def __len__(self) -> int:
        return len(self.labels)

    def sample_ids(self) -> tuple[str, ...]:
        """``ids``, or ``"<domain>/<row>"`` per sample when the loader gave none (e.g. ``"mnist/17"``)."""
        if self.ids is not None:
            return self.ids
        return tuple(f"{self.domain}/{i}" for i in range(len(self)))

    def select_classes(self, names: Sequence[str]) -> DomainSamples:
        """Keep only the samples whose class name is in ``names`` (labels keep the dataset indexing)."""
        keep_idx = [self.class_names.index(n) for n in names]
        mask = np.isin(self.labels, keep_idx)
        import torch

        rows = np.flatnonzero(mask)
        idx = torch.from_numpy(rows)
        ids = self.sample_ids()
        return DomainSamples(
            domain=self.domain,
            x=self.x[idx],
            labels=self.labels[mask],
            class_names=self.class_names,
            kind=self.kind,
            views=None if self.views is None else self.views[:, idx],
            augment=self.augment,
            strong_augment=self.strong_augment,
            extra_views={k: v[:, idx] for k, v in self.extra_views.items()},
            info=dict(self.info),
            ids=tuple(ids[i] for i in rows),
            files=None if self.files is None else tuple(self.files[i] for i in rows),
        )

    def unlabeled(self) -> UnlabeledDomain:
        """The label-free view handed to methods."""
        return UnlabeledDomain(
            name=self.domain,
            x=self.x,
            kind=self.kind,
            views=self.views,
            augment=self.augment,
            strong_augment=self.strong_augment,
            extra_views=self.extra_views,
        )


class UnlabeledDomain:
    """One domain as a method sees it: inputs and augmentations, never labels.

    ``__slots__`` forbids attaching anything else, so no label array can ride along.

    Example::

        idx = torch.randperm(dom.n, generator=g)[:64]
        v1 = dom.view(idx, g)   # one random augmented view, [64, ...]
        v0 = dom.clean(idx)     # clean inputs, [64, ...]
    """

    __slots__ = ("name", "x", "kind", "_views", "_augment", "_strong", "_extra")

    def __init__(
        self,
        name: str,
        x: torch.Tensor,
        kind: InputKind,
        views: torch.Tensor | None = None,
        augment: Augmenter | None = None,
        strong_augment: Augmenter | None = None,
        extra_views: dict[str, torch.Tensor] | None = None,
    ) -> None:
        self.name = name
        self.x = x
        self.kind = kind
        self._views = views
        self._augment = augment
        self._strong = strong_augment
        self._extra = dict(extra_views or {})

    @property
    def n(self) -> int:
        return len(self.x)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    def clean(self, idx: torch.Tensor) -> torch.Tensor:
        """Clean inputs of samples ``idx``: ``[B, ...]``."""
        return self.x[idx]

    def view(self, idx: torch.Tensor, generator: torch.Generator, strength: str = "default") -> torch.Tensor:
        """One random augmented view of samples ``idx``: ``[B, ...]``.

        ``strength="strong"`` asks for the strong augmentation (image mode) or the ``"strong"`` extra view
        set (features mode); it falls back to the default augmentation when the domain has none.
        In features mode with no pre-extracted views, the clean features are returned.
        """
        if strength == "strong":
            if self._strong is not None:
                return self._strong(self.x[idx], generator)
            if "strong" in self._extra:
                return _pick_views(self._extra["strong"], idx, generator)
        if self._augment is not None:
            return self._augment(self.x[idx], generator)
        if self._views is not None:
            return _pick_views(self._views, idx, generator)
        return self.x[idx]

    def has_view_set(self, name: str) -> bool:
        return name in self._extra

    def view_set(self, name: str, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """A view from a named extra view set (features mode), e.g. ``"fourier"`` for DGDIR."""
        return _pick_views(self._extra[name], idx, generator)

    def __repr__(self) -> str:
        return f"UnlabeledDomain({self.name!r}, n={self.n}, kind={self.kind!r}, shape={self.input_shape})"


def _pick_views(views: torch.Tensor, idx: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """For each sample in ``idx`` pick one of the ``V`` stored views uniformly at random."""
    import torch

    choice = torch.randint(views.shape[0], (len(idx),), generator=generator)
    return views[choice, idx]


Loader = Callable[..., DomainSamples]

"""Feature-space views: augmented views for pre-computed features that come without any (issue 18).

A ``features`` domain (``--dataset npz:PATH`` without ``views_D`` arrays, or real images with
``--n-views 0``) has no stored augmented views, so :meth:`UnlabeledDomain.view` would return the clean
features and every method that contrasts two views of a sample would train on identical positives. The
runner then gives such a domain one of these generators as its augmenter (``DomainSamples.augment``), chosen
by ``--feature-views NAME`` (:data:`DEFAULT_FEATURE_VIEWS` unless told; docs/data.md has the measurement
that chose it). A generator is built from the domain's clean features ``X`` (``[N, D]`` float32, the samples
of the run's protocol classes, never labels) and draws one view of a batch with the method's
``torch.Generator``, so a run stays a pure function of (data, hyper-parameters, seed):

    view = G(x [B, D], generator) -> [B, D]

Registered generators (:data:`FEATURE_VIEWS`; the strengths are ours, see "Calibration" below):

* ``noise`` (:class:`GaussianNoise`): ``x~ = x + gamma * s ⊙ eps``, ``eps ~ N(0, I_D)``, ``s_d`` the
  standard deviation of dimension ``d`` over the domain's ``N`` samples, ``gamma = 1``. ``E[x~] = x``;
  ``x~ - x`` has per-dimension standard deviation ``gamma * s_d``, so across the domain each dimension's
  spread grows from ``s_d`` to ``sqrt(1 + gamma^2) * s_d``.
* ``dropout`` (:class:`FeatureDropout`): ``x~ = m ⊙ x / (1 - p)``, ``m_d ~ Bernoulli(1 - p)`` i.i.d.,
  ``p = 0.4``, **with** the inverted-dropout rescale ``1 / (1 - p)`` (Srivastava et al., JMLR 2014), so
  ``E[x~] = x`` and ``Var[x~_d | x] = x_d^2 * p / (1 - p)``; a kept entry is exactly ``x_d / (1 - p)``.
* ``mix`` (:class:`NeighbourMix`): ``x~_i = (1 - lam) * x_i + lam * x_j``, ``j`` uniform among the ``k = 5``
  nearest neighbours of ``i`` in its own domain by cosine similarity (exact search, ``faiss.IndexFlatIP``
  on the L2-normalised features, ``i`` itself excluded), ``lam ~ U(0.5, 1)``. ``x~`` lies on the segment
  from ``x_i`` to ``x_j``, ``|x~ - x_i| = lam * |x_j - x_i|``; ``E[x~_i] = x_i + 0.75 * (nbr_i - x_i)``
  with ``nbr_i`` the mean of ``i``'s neighbours, so the per-sample mean is *not* kept, the domain mean is
  kept up to how unevenly samples are chosen as neighbours (hubs), and each dimension's spread shrinks
  (interpolation: on PACS to 0.87-0.91 of ``s_d``).
* ``none``: no generator; the clean features, both views identical (the behaviour before issue 18).

Sources: feature-space noise and interpolation between in-domain nearest neighbours are the
transformations of DeVries & Taylor, "Dataset Augmentation in Feature Space" (ICLR workshop 2017, §3:
Gaussian noise with the per-element standard deviation of the dataset's features scaled by a global
factor; interpolation towards one of the K nearest neighbours, there of the same class; we have no labels
and use the unlabeled in-domain neighbours instead); dropout as the only augmentation of a contrastive
positive pair is SimCSE's (Gao, Yao & Chen, EMNLP 2021), applied here to the input features; a nearest
neighbour as the positive is NNCLR's (Dwibedi et al., ICCV 2021), which ``mix`` approaches as ``lam -> 1``.

Calibration (ours): each strength is set so that the mean cosine similarity between a clean feature and
its view is about that of the cached MoCo v2 aug-plus views of PACS under EfficientNet-Lite0 (0.73 on
art_painting, 0.77 on photo): ``noise`` gamma = 1 gives 0.77 / 0.75, ``dropout`` p = 0.4 gives
0.78 / 0.77, ``mix`` k = 5, lam ~ U(0.5, 1) gives 0.76 / 0.83. The generators then differ in the kind of
perturbation, not in its size.

Named view sets a method asks for that the domain cannot give (``strong``, ``fourier``, ``phase``;
:data:`u2cdr_bench.methods.base.VIEW_SETS`) fall back to the domain's default view, i.e. this generator:
:meth:`UnlabeledDomain.view` falls back from ``strength="strong"`` to the default augmentation, DN2A in
features mode reads the strong views only from a stored ``"strong"`` set (``has_view_set``), and DGDIR
draws its Fourier and phase views with ``self.view`` when the sets are missing (its clean phase images are
then the clean features). :func:`views_seen` writes what each view set of a method resolved to into the
record (``method_info.views_seen``), and :func:`views_warning` the one-line warning of a missing or
fallen-back set (``method_info.views_warning``, printed once per ``run`` unless ``--quiet``).

Assumptions: the per-dimension spread and the neighbour table are computed once per run from the clean
features of the domain's protocol classes (not from the other domain, not per batch); ``mix`` finds a
batch's rows in that table by their exact bytes (the batch is a selection of the domain's own rows) and
searches the table for a row it does not hold; duplicate rows share one entry.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch

from ..registry import Registry

if TYPE_CHECKING:
    from .registry import DataOptions, DatasetSpec
    from .types import DomainSamples

__all__ = [
    "DEFAULT_FEATURE_VIEWS",
    "FEATURE_VIEWS",
    "FeatureDropout",
    "FeatureView",
    "GaussianNoise",
    "NeighbourMix",
    "attach_feature_views",
    "build_feature_views",
    "check_feature_views",
    "has_stored_views",
    "needs_views",
    "views_seen",
    "views_warning",
]

#: The generator used when ``--feature-views`` is not given (chosen by the PACS measurement, docs/data.md).
DEFAULT_FEATURE_VIEWS = "noise"


class FeatureView(ABC):
    """Base of a feature-space view generator built on one domain's clean features ``x [N, D]``.

    Subclasses set ``name`` and ``params`` and implement :meth:`__call__`
    ``(x [B, D], generator) -> [B, D]`` (the :class:`~u2cdr_bench.data.types.Augmenter` protocol).
    """

    name: ClassVar[str] = ""
    params: ClassVar[dict[str, Any]] = {}

    def __init__(self, x: torch.Tensor) -> None:
        if x.ndim != 2:
            raise ValueError(f"feature views need [N, D] features, got shape {tuple(x.shape)}")
        self.n, self.dim = int(x.shape[0]), int(x.shape[1])

    @abstractmethod
    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """One view of the batch ``x`` ``[B, D]``, drawn with ``generator``."""

    def describe(self) -> dict[str, Any]:
        """What the record says about this generator: ``{"generator": name, **params}``."""
        return {"generator": self.name, **self.params}

    @property
    def label(self) -> str:
        return f"feature-views {self.name}"


def _on(generator: torch.Generator, shape: tuple[int, ...], kind: str) -> torch.Tensor:
    """Standard normal (``kind="normal"``) or U[0, 1) (``"uniform"``) draws of ``shape``, from ``generator``
    on its own device."""
    draw = torch.randn if kind == "normal" else torch.rand
    return draw(shape, generator=generator, device=generator.device)


FEATURE_VIEWS: Registry[Callable[[torch.Tensor], FeatureView] | None] = Registry("feature-view generator")


@FEATURE_VIEWS.register("noise", summary="x + 1.0 * s_d * N(0, 1), s_d the domain's per-dimension std")
class GaussianNoise(FeatureView):
    """``x~ = x + gamma * s ⊙ eps``, ``eps ~ N(0, I_D)``; ``s [D]`` = per-dimension std of the domain
    (population std over its ``N`` samples), ``gamma = 1`` (module docstring: mean kept, spread
    ``gamma * s_d`` per dimension around each sample)."""

    name = "noise"
    params: ClassVar[dict[str, Any]] = {"gamma": 1.0}

    def __init__(self, x: torch.Tensor, gamma: float = 1.0) -> None:
        super().__init__(x)
        self.gamma = float(gamma)
        self.scale = (self.gamma * x.double().std(dim=0, unbiased=False)).to(x.dtype)  # [D]

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        eps = _on(generator, tuple(x.shape), "normal").to(device=x.device, dtype=x.dtype)
        return x + self.scale.to(x.device) * eps


@FEATURE_VIEWS.register("dropout", summary="zero each entry with p = 0.4, rescale the rest by 1/(1-p)")
class FeatureDropout(FeatureView):
    """``x~ = m ⊙ x / (1 - p)``, ``m_d ~ Bernoulli(1 - p)`` i.i.d. per entry, ``p = 0.4`` (module
    docstring: mean kept, ``Var[x~_d | x] = x_d^2 p / (1 - p)``)."""

    name = "dropout"
    params: ClassVar[dict[str, Any]] = {"p": 0.4, "rescale": True}

    def __init__(self, x: torch.Tensor, p: float = 0.4) -> None:
        super().__init__(x)
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        keep = _on(generator, tuple(x.shape), "uniform").to(x.device) >= self.p
        return x * keep.to(x.dtype) / (1.0 - self.p)


@FEATURE_VIEWS.register("mix", summary="(1-lam) x + lam x_nn, x_nn one of the 5 cosine nearest, lam~U(.5,1)")
class NeighbourMix(FeatureView):
    """``x~_i = (1 - lam) x_i + lam x_j``, ``j`` uniform among the ``k`` cosine nearest neighbours of ``i``
    in the domain (itself excluded), ``lam ~ U(lam_low, lam_high)``; ``k = 5``, ``lam ~ U(0.5, 1)``.

    Attributes:
        table: ``[N, k]`` int64 neighbour indices, nearest first (exact inner product search on the
            L2-normalised features, :func:`faiss.IndexFlatIP`); ``k`` is cut to ``N - 1`` on tiny domains.
    """

    name = "mix"
    params: ClassVar[dict[str, Any]] = {"k": 5, "lam_low": 0.5, "lam_high": 1.0}

    def __init__(self, x: torch.Tensor, k: int = 5, lam_low: float = 0.5, lam_high: float = 1.0) -> None:
        super().__init__(x)
        import faiss

        self.x = x.detach().to("cpu", torch.float32).contiguous()
        self.lam_low, self.lam_high = float(lam_low), float(lam_high)
        self.k = max(0, min(int(k), self.n - 1))
        unit = self.x.numpy().copy()
        unit /= np.maximum(np.linalg.norm(unit, axis=1, keepdims=True), 1e-12)
        self._index = faiss.IndexFlatIP(self.dim)
        self._index.add(unit)
        self._unit = unit
        self._rows: dict[bytes, int] = {}
        for i in range(self.n):
            self._rows.setdefault(self.x[i].numpy().tobytes(), i)
        if self.k == 0:
            self.table = np.zeros((self.n, 0), dtype=np.int64)
            return
        _, found = self._index.search(unit, self.k + 1)
        self.table = np.stack([_drop_self(row, i, self.k) for i, row in enumerate(found)]).astype(np.int64)

    def neighbours(self, x: torch.Tensor) -> np.ndarray:
        """``[B, k]`` neighbour indices of the rows of ``x``: the table's row for a row of the domain, a
        search of the domain for any other row."""
        xs = x.detach().to("cpu", torch.float32).contiguous().numpy()
        idx = np.array([self._rows.get(r.tobytes(), -1) for r in xs], dtype=np.int64)
        out = np.empty((len(xs), self.k), dtype=np.int64)
        known = idx >= 0
        out[known] = self.table[idx[known]]
        if (~known).any():
            unit = xs[~known] / np.maximum(np.linalg.norm(xs[~known], axis=1, keepdims=True), 1e-12)
            out[~known] = self._index.search(np.ascontiguousarray(unit, dtype=np.float32), self.k)[1]
        return out

    def __call__(self, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if self.k == 0:
            return x.clone()
        b = len(x)
        table = torch.from_numpy(self.neighbours(x))
        pick = torch.randint(self.k, (b,), generator=generator, device=generator.device).cpu()
        partner = self.x[table[torch.arange(b), pick]].to(device=x.device, dtype=x.dtype)
        lam = _on(generator, (b, 1), "uniform").to(device=x.device, dtype=x.dtype)
        lam = self.lam_low + (self.lam_high - self.lam_low) * lam
        return (1.0 - lam) * x + lam * partner


def _drop_self(row: np.ndarray, i: int, k: int) -> np.ndarray:
    """The ``k`` first entries of a ``k + 1`` search result other than ``i`` (the last one when ``i`` is
    missing, e.g. beaten by an exact duplicate)."""
    rest = row[row != i]
    return rest[:k]


FEATURE_VIEWS.add("none", None, "no generator: the clean features (identical positives, as before issue 18)")


def check_feature_views(name: str) -> str:
    """The registered name for ``name``; UserError (listing the valid names) when unknown."""
    return FEATURE_VIEWS.canonical(name)


def build_feature_views(name: str, x: torch.Tensor) -> FeatureView | None:
    """The generator ``name`` built on features ``x [N, D]`` (``None`` for ``none``)."""
    builder = FEATURE_VIEWS.get(name)
    return None if builder is None else builder(x)


# ------------------------------------------------------------------------------------- which views
#: View sets that are not augmentations (every method reads the clean inputs).
_NOT_VIEWS = frozenset({"clean"})


def needs_views(method_views: tuple[str, ...]) -> bool:
    """Whether a method whose ``views`` are ``method_views`` reads any augmented view."""
    return bool(set(method_views) - _NOT_VIEWS)


def has_stored_views(spec: DatasetSpec, domain: str, options: DataOptions) -> bool:
    """Whether ``domain`` of ``spec`` comes with augmented views under ``options``, known before loading.

    Image datasets augment on the fly; real images in finetune mode too, in features mode when
    ``n_views > 0``; ``npz:`` files when they hold ``views_<domain>`` (``spec.extra["stored_views"]``); any
    other features dataset is taken to have them.
    """
    if spec.kind == "image":
        return True
    if spec.kind == "real":
        return options.mode == "finetune" or options.n_views > 0
    return bool(spec.extra.get("stored_views", {}).get(domain, True))


def attach_feature_views(dom: DomainSamples, name: str) -> DomainSamples:
    """``dom`` with generator ``name`` as its augmenter when it is a features domain without stored views
    or augmenter (``info["feature_views"]`` describes it); ``dom`` unchanged otherwise or for ``none``."""
    if dom.kind != "features" or dom.views is not None or dom.augment is not None:
        return dom
    gen = build_feature_views(name, dom.x)
    info = {**dom.info, "feature_views": gen.describe() if gen is not None else {"generator": "none"}}
    return replace(dom, augment=gen, info=info)


def _default_source(dom: DomainSamples) -> str:
    if isinstance(dom.augment, FeatureView):
        return dom.augment.label
    if dom.augment is not None:
        return "augmentation on the fly"
    if dom.views is not None:
        return f"stored views ({int(dom.views.shape[0])})"
    return "none (the clean inputs)"


def _source(dom: DomainSamples, view_set: str) -> str:
    default = _default_source(dom)
    if view_set == "aug":
        return default
    if view_set in dom.extra_views:
        return f"stored views ({int(dom.extra_views[view_set].shape[0])})"
    if view_set == "strong" and dom.kind == "image" and dom.strong_augment is not None:
        return "strong augmentation on the fly"
    if view_set in ("fourier", "phase") and dom.kind == "image":
        return "made by the method from the images"
    return f"fallback to the default view: {default}"


def views_seen(method_views: tuple[str, ...], query: DomainSamples, gallery: DomainSamples) -> dict[str, str]:
    """What each augmented view set of a method resolved to: ``{view set: source}``.

    A source is ``stored views (V)``, ``augmentation on the fly``, ``feature-views NAME``,
    ``none (the clean inputs)`` or ``fallback to the default view: <source>``; when the two domains differ
    the value reads ``query: <source>; gallery: <source>``.
    """
    out: dict[str, str] = {}
    for view_set in method_views:
        if view_set in _NOT_VIEWS:
            continue
        q, g = _source(query, view_set), _source(gallery, view_set)
        out[view_set] = q if q == g else f"query: {q}; gallery: {g}"
    return out


def views_warning(method: str, dataset: str, seen: dict[str, str]) -> str | None:
    """One line when a view set of ``seen`` is missing, generated or fallen back; ``None`` when all are
    real augmentations (stored or on the fly)."""
    bad = {k: v for k, v in seen.items() if "feature-views" in v or "none" in v or "fallback" in v}
    if not bad:
        return None
    what = "; ".join(f"{k}: {v}" for k, v in bad.items())
    return (
        f"{method} on {dataset} has no stored augmented views ({what}); see --feature-views in docs/data.md."
    )

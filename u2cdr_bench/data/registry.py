"""Dataset registry: each dataset is a :class:`DatasetSpec` (domains, class names, pairs, loader).

Names with a prefix build a spec on the fly: ``folder:PATH`` and ``npz:PATH`` (custom data).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ..errors import UserError, unknown_name
from ..registry import Registry

if TYPE_CHECKING:
    from .types import DomainSamples, InputKind

Mode = Literal["features", "finetune"]


@dataclass(frozen=True)
class DataOptions:
    """Where data and caches live and how raw images become method inputs.

    Attributes:
        data_dir: data home (``--data-dir`` or ``$U2CDR_DATA``); one sub-folder per dataset.
        cache_dir: cache for built datasets and extracted features (``--cache-dir``).
        mode: ``features`` (frozen backbone, cached features) or ``finetune`` (images, trainable backbone).
        backbone: backbone registry name used for real images.
        n_views: augmented views per image cached in features mode.
        quiet: silence progress output.
        views: the view sets to extract in features mode (``clean``, ``aug``, ``strong``, ``fourier``,
            ``phase``; a method's ``views``); ``None`` = all of them. The runner sets it to what the run's
            method reads, so the first run extracts only those.
        feature_views: the feature-space view generator (``--feature-views``,
            :data:`u2cdr_bench.data.feature_views.FEATURE_VIEWS`) for features domains without stored views;
            ``None`` = :data:`~u2cdr_bench.data.feature_views.DEFAULT_FEATURE_VIEWS`.
    """

    data_dir: Path | None = None
    cache_dir: Path | None = None
    mode: Mode = "features"
    backbone: str = "effnet-lite0"
    n_views: int = 2
    quiet: bool = False
    views: tuple[str, ...] | None = None
    feature_views: str | None = None


@dataclass(frozen=True)
class DomainInfo:
    name: str
    abbrev: str
    aliases: tuple[str, ...] = ()


@dataclass(frozen=True)
class DatasetSpec:
    """A dataset: its domains, classes, default directed pairs and how to load one domain.

    Attributes:
        name: registry name (``digits``, ``pacs``, ``office31`` ...).
        domains: the domains with their paper abbreviations.
        class_names: class names in the dataset's fixed order (labels index this tuple).
        loader: ``loader(spec, domain_name, options) -> DomainSamples`` (all classes of the domain).
        kind: ``image`` when the loader gives images that methods train on directly (digits),
            ``features`` when they are frozen features (npz) and ``real`` for real images that go
            through a backbone (features or finetune mode).
        pairs: default directed (query, gallery) pairs; all ordered pairs when empty.
        profile: hyper-parameter profile name that methods may key defaults on
            (``digits``, ``paper``, ``features``).
        paper_key: the key of the paper's own tables for this dataset, if any.
        method_profile: which official per-dataset configuration of the baselines applies (one of
            ``u2cdr_bench.methods.base.METHOD_PROFILES``: ``office31``, ``officehome``, ``domainnet``), or
            ``None`` (every method's defaults); handed to methods as ``FitContext.method_profile``.
            The choice for datasets no official script covers (PACS, digits) is justified in
            docs/baselines.md.
        summary: one line for ``list datasets``.
        citation: the dataset's paper.
    """

    name: str
    domains: tuple[DomainInfo, ...]
    class_names: tuple[str, ...]
    loader: Callable[[DatasetSpec, str, DataOptions], DomainSamples]
    kind: Literal["image", "features", "real"] = "real"
    pairs: tuple[tuple[str, str], ...] = ()
    profile: str = "paper"
    paper_key: str | None = None
    method_profile: str | None = None
    summary: str = ""
    citation: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def domain_names(self) -> list[str]:
        return [d.name for d in self.domains]

    def domain(self, name: str) -> DomainInfo:
        """Resolve a full domain name or abbreviation (case-insensitive)."""
        low = name.lower()
        for d in self.domains:
            if low == d.name.lower() or low == d.abbrev.lower() or low in (a.lower() for a in d.aliases):
                return d
        valid = [f"{d.name} ({d.abbrev})" for d in self.domains]
        raise unknown_name(f"domain of dataset {self.name}", name, valid)

    def abbrev(self, name: str) -> str:
        return self.domain(name).abbrev

    def all_pairs(self) -> list[tuple[str, str]]:
        if self.pairs:
            return list(self.pairs)
        names = self.domain_names
        return [(q, g) for q in names for g in names if q != g]

    def parse_pairs(self, text: str | None) -> list[tuple[str, str]]:
        """Parse ``"A:B,C:D"`` (full names or abbreviations) into canonical directed pairs."""
        if not text:
            return self.all_pairs()
        pairs: list[tuple[str, str]] = []
        for item in text.split(","):
            item = item.strip()
            parts = item.replace("->", ":").split(":")
            if len(parts) != 2 or not all(parts):
                raise UserError(f"Bad pair '{item}'; write pairs as QUERY:GALLERY, e.g. '{self._example()}'.")
            q, g = (self.domain(p.strip()).name for p in parts)
            if q == g:
                raise UserError(f"Pair '{item}' uses domain '{q}' twice; query and gallery must differ.")
            pairs.append((q, g))
        return pairs

    def _example(self) -> str:
        a, b = self.domain_names[:2]
        return f"{a}:{b}"

    def load(self, domain: str, options: DataOptions) -> DomainSamples:
        return self.loader(self, self.domain(domain).name, options)

    @property
    def input_kind(self) -> InputKind:
        return "image" if self.kind == "image" else "features"


DATASETS: Registry[DatasetSpec] = Registry("dataset")

#: Builders of on-the-fly specs for prefixed names, e.g. ``{"npz": build_npz_spec}``.
DYNAMIC: dict[str, Callable[[str], DatasetSpec]] = {}


def register_dataset(spec: DatasetSpec) -> DatasetSpec:
    DATASETS.add(spec.name, spec, spec.summary)
    return spec


def get_dataset(name: str) -> DatasetSpec:
    """The spec for a registered name, or one built from ``prefix:PATH`` (custom data)."""
    _load_builtin()
    if ":" in name:
        prefix, _, rest = name.partition(":")
        if prefix in DYNAMIC:
            return DYNAMIC[prefix](rest)
        valid = [f"{p}:PATH" for p in DYNAMIC]
        raise unknown_name("dataset prefix", prefix, valid)
    if name not in DATASETS:
        raise unknown_name("dataset", name, DATASETS.names() + [f"{p}:PATH" for p in DYNAMIC])
    return DATASETS.get(name)


def dataset_names() -> list[str]:
    _load_builtin()
    return DATASETS.names()


_LOADED = False


def _load_builtin() -> None:
    """Import the dataset modules (they register themselves)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for mod in ("digits", "real", "custom"):
        try:
            importlib.import_module(f"u2cdr_bench.data.{mod}")
        except ModuleNotFoundError as err:  # a module not written yet
            if err.name != f"u2cdr_bench.data.{mod}":
                raise

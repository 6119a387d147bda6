"""Real image datasets: PACS, Office-31, Office-Home and DomainNet-7 (specs, file discovery, loaders).

Each dataset lives in ``<data home>/<name>/`` (data home: ``DataOptions.data_dir``, i.e. ``--data-dir``, or
the ``U2CDR_DATA`` environment variable), so ``--data-dir /work/shared/data`` finds
``/work/shared/data/pacs``.
A data home that *is* the dataset folder is accepted too. The accepted layouts per domain are listed in
:mod:`u2cdr_bench.data.manifests` (e.g. Office-Home's ``Real World``, ``Real_World`` or ``Real``).

Inside a domain folder each class has one sub-folder; class folders are matched to the manifest's class names
exactly, then ignoring case and ``' '``/``'-'`` vs ``'_'``. Files are ordered by (class index, path), so the
sample order, and with it every cached feature, is a pure function of the files on disk.

Two modes (``DataOptions.mode``):

* ``features``: ``DomainSamples(kind="features", x=[N, D], views=[V, N, D], extra_views={"strong": [V, N, D],
  "fourier": [V, N, D], "phase": [V, N, D]})`` from the frozen backbone ``DataOptions.backbone`` (cached,
  :mod:`u2cdr_bench.features`; ``V = DataOptions.n_views``);
* ``finetune``: ``DomainSamples(kind="image", x=[N, 3, 224, 224])`` with values in [0, 1] (the backbone's
  evaluation resize + center crop; normalisation happens inside the backbone module), ``augment`` = MoCo v2
  aug-plus and ``strong_augment`` = the strong view, both cropping to the backbone's input size (224) from
  the stored center crop. All images are held in memory (0.6 MB each): fine for
  small domains and smoke tests; finetuning on the full datasets needs a GPU machine.

Unreadable images are skipped in both modes, counted in ``info["skipped_files"]`` with a warning.
Only the view sets in ``DataOptions.views`` are extracted (the runner passes the run's method's ``views``:
``clean`` for ``pretrained``, ``clean`` + ``aug`` for most trained methods, ``strong`` for DN2A, ``fourier``
+ ``phase`` for DGDIR), each on its first use; ``None`` means all of them. The environment variable
``U2CDR_EXTRA_VIEWS`` (comma list, default ``strong,fourier,phase``; ``none`` for none) further limits the
extra view sets. A view's cache key does not depend on which other views are asked for, so a later method
reuses every view already cached.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import UserError
from .images import (
    MOCO_V2_AUG,
    STRONG_AUG,
    ImageAugment,
    open_rgb,
    resize_center_crop,
    scan_class_folders,
    warn_skipped,
)
from .manifests import MANIFESTS, DatasetManifest, DomainManifest, summary_line
from .registry import DataOptions, DatasetSpec, DomainInfo, register_dataset
from .types import DomainSamples

if TYPE_CHECKING:
    from ..features import ImageSet

__all__ = [
    "DATA_ENV",
    "dataset_root",
    "data_home",
    "discover_domain",
    "find_domain_dir",
    "check_domains",
    "load_domain_for_run",
    "load_image_domain",
    "normalise_class_name",
    "partner_pool",
    "spec_for_manifest",
    "verify_dataset",
    "VerifyReport",
]

DATA_ENV = "U2CDR_DATA"
EXTRA_VIEWS_ENV = "U2CDR_EXTRA_VIEWS"
EXTRA_KINDS = ("strong", "fourier", "phase")


def data_home(options: DataOptions) -> Path:
    """``options.data_dir`` or ``$U2CDR_DATA``; UserError when neither is set."""
    if options.data_dir is not None:
        return Path(options.data_dir).expanduser()
    env = os.environ.get(DATA_ENV)
    if env:
        return Path(env).expanduser()
    raise UserError(
        f"No data folder given: pass --data-dir or set {DATA_ENV} to the folder holding one sub-folder per "
        "dataset (pacs/, office31/, officehome/, domainnet/)."
    )


def normalise_class_name(name: str) -> str:
    """Lower case, with spaces and hyphens as underscores (``"Alarm Clock"`` -> ``"alarm_clock"``)."""
    return name.strip().lower().replace(" ", "_").replace("-", "_")


def _candidates(manifest: DatasetManifest, home: Path) -> list[Path]:
    """Folders that may be the dataset folder: ``home/<name>`` first, then ``home`` itself."""
    return [home / manifest.name, home]


def find_domain_dir(manifest: DatasetManifest, domain: DomainManifest, home: Path) -> Path | None:
    """The first existing folder of ``domain``: ``<dataset folder>[/<wrapper>]/<one of domain.folders>``."""
    for root in _candidates(manifest, home):
        for prefix in ("", *manifest.wrappers):
            for folder in domain.folders:
                cand = root / prefix / folder if prefix else root / folder
                if cand.is_dir():
                    return cand
    return None


def dataset_root(manifest: DatasetManifest, home: Path) -> Path:
    """The dataset folder that holds (or would hold) the domains: ``home/<name>`` unless ``home`` is it."""
    for root in _candidates(manifest, home):
        for d in manifest.domains:
            for prefix in ("", *manifest.wrappers):
                for folder in d.folders:
                    if ((root / prefix / folder) if prefix else (root / folder)).is_dir():
                        return root
    return home / manifest.name


def _missing_error(manifest: DatasetManifest, domain: DomainManifest, home: Path) -> UserError:
    tried = ", ".join(domain.folders)
    root = home / manifest.name
    if manifest.archives:
        how = f"fetch it with 'u2cdr-bench data download {manifest.name} --data-dir {home}'"
    else:
        how = f"place it by hand (see 'u2cdr-bench data info' and docs/data.md; {manifest.layouts[0]})"
    return UserError(
        f"Dataset {manifest.name}: domain '{domain.name}' not found; looked for folder(s) {tried} in {root} "
        f"(and in {home}); {how}."
    )


def discover_domain(
    manifest: DatasetManifest, domain: str, home: Path, warn: bool = True
) -> tuple[list[Path], list[str], np.ndarray, Path]:
    """The image files of one domain, in the fixed order.

    Returns:
        ``(paths, names, labels, root)``: absolute paths, paths relative to the dataset folder ``root``,
        ``[N]`` int64 labels indexing ``manifest.class_names``.

    Raises:
        UserError: the domain folder is missing or holds no image of the manifest's classes.
    """
    dom = manifest.domain(domain)
    ddir = find_domain_dir(manifest, dom, home)
    if ddir is None:
        raise _missing_error(manifest, dom, home)
    root = dataset_root(manifest, home)
    exact = {c: i for i, c in enumerate(manifest.class_names)}
    loose = {normalise_class_name(c): i for i, c in enumerate(manifest.class_names)}
    folders = scan_class_folders(ddir)
    by_class: dict[int, list[Path]] = {}
    unknown = []
    for folder, files in folders.items():
        idx = exact.get(folder, loose.get(normalise_class_name(folder)))
        if idx is None:
            unknown.append(folder)
            continue
        by_class.setdefault(idx, []).extend(files)
    if not by_class:
        raise UserError(
            f"Dataset {manifest.name}: {ddir} holds no image in class folders named like "
            f"{', '.join(manifest.class_names[:3])}...; check the layout ({manifest.layouts[0]})."
        )
    if warn:
        missing = [manifest.class_names[i] for i in range(len(manifest.class_names)) if i not in by_class]
        if missing:
            warnings.warn(
                f"{manifest.name}/{dom.name}: no images for class(es) {', '.join(missing)} in {ddir}",
                RuntimeWarning,
                stacklevel=2,
            )
        if unknown and not manifest.class_subset:
            warnings.warn(
                f"{manifest.name}/{dom.name}: ignoring folder(s) that are not classes of the dataset: "
                f"{', '.join(unknown[:5])}{' ...' if len(unknown) > 5 else ''}",
                RuntimeWarning,
                stacklevel=2,
            )
    paths: list[Path] = []
    labels: list[int] = []
    for idx in sorted(by_class):
        files = sorted(set(by_class[idx]))
        paths += files
        labels += [idx] * len(files)
    names = [_relative(p, root) for p in paths]
    return paths, names, np.asarray(labels, dtype=np.int64), root


def _relative(path: Path, root: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.as_posix()


def _extra_view_kinds() -> list[str]:
    raw = os.environ.get(EXTRA_VIEWS_ENV, "strong,fourier,phase").strip().lower()
    if raw in ("", "none", "0"):
        return []
    kinds = [k.strip() for k in raw.split(",") if k.strip()]
    bad = [k for k in kinds if k not in EXTRA_KINDS]
    if bad:
        raise UserError(
            f"{EXTRA_VIEWS_ENV}: unknown view set '{bad[0]}'; valid choices: {', '.join(EXTRA_KINDS)}, none."
        )
    return [k for k in EXTRA_KINDS if k in kinds]


def load_image_domain(
    dataset: str,
    domain: str,
    paths: Sequence[Path],
    names: Sequence[str],
    labels: np.ndarray,
    class_names: tuple[str, ...],
    options: DataOptions,
    partners: ImageSet | None = None,
) -> DomainSamples:
    """Turn one domain's image files into :class:`DomainSamples` in the mode of ``options``.

    Features mode: ``x [N, D]`` (clean view), ``views [n_views, N, D]`` (MoCo v2 aug-plus), ``extra_views``
    ``"strong"``, ``"fourier"`` and ``"phase"`` ``[max(1, n_views), N, D]`` each
    (:mod:`u2cdr_bench.features`; ``$U2CDR_EXTRA_VIEWS`` picks the sets), from the cache or extracted now;
    ``partners`` is the pool of the Fourier views' partner images
    (default: this domain's images).
    Finetune mode: ``x [N, 3, crop, crop]`` in [0, 1], ``augment`` / ``strong_augment`` torch augmenters.
    Unreadable files are dropped from every array; ``info["skipped_files"]`` counts them.
    """
    from ..backbones import parse_backbone

    spec, _ = parse_backbone(options.backbone)
    info: dict = {"n_files": len(paths), "backbone": options.backbone, "mode": options.mode}
    if options.mode == "finetune":
        pre = spec.preprocess
        tensors, keep, skipped = [], [], []
        from ..progress import reporter

        task = reporter(options.quiet).task(f"load {dataset}/{domain} images", total=len(paths), unit="img")
        for i, p in enumerate(paths):
            task.advance(1)
            img = open_rgb(p)
            if img is None:
                skipped.append(names[i])
                continue
            tensors.append(resize_center_crop(img, pre.resize, pre.crop, pre.interpolation))
            keep.append(i)
        task.close()
        warn_skipped(f"{dataset}/{domain}", skipped)
        info.update(skipped_files=len(skipped), skipped=skipped[:20])
        if not tensors:
            raise UserError(f"{dataset}/{domain}: none of the {len(paths)} image files could be read.")
        return DomainSamples(
            domain=domain,
            x=torch.stack(tensors),
            labels=labels[np.asarray(keep, dtype=np.int64)],
            class_names=class_names,
            kind="image",
            augment=ImageAugment(**{**MOCO_V2_AUG.params(), "size": pre.crop}),
            strong_augment=ImageAugment(**{**STRONG_AUG.params(), "size": pre.crop}),
            info=info,
            ids=tuple(names[i] for i in keep),
            files=tuple(str(paths[i]) for i in keep),
        )
    if options.mode != "features":
        raise UserError(f"Unknown mode '{options.mode}'; valid choices: features, finetune.")
    from ..features import ImageSet, View, cache_root, extract_views, fourier_available

    if options.n_views < 0:
        raise UserError(f"n_views must be >= 0, got {options.n_views}.")
    files = ImageSet(dataset, domain, tuple(paths), tuple(names), labels)
    kinds = _extra_view_kinds()
    if options.views is not None:
        kinds = [k for k in kinds if k in options.views]
    with_aug = options.views is None or "aug" in options.views
    fourier_ok = fourier_available()
    extract_kinds = [k for k in kinds if k == "strong" or fourier_ok]
    if "fourier" in kinds and not fourier_ok and "strong" not in extract_kinds:
        extract_kinds.append("strong")  # the strong views stand in for the Fourier ones
    views = [View("clean")] + ([View("aug", i) for i in range(options.n_views)] if with_aug else [])
    views += [View(k, i) for k in extract_kinds for i in range(max(1, options.n_views))]  # type: ignore[arg-type]
    root = cache_root(options)
    out = extract_views(files, options.backbone, views, root, quiet=options.quiet, partners=partners)
    ok = np.logical_and.reduce([v.ok for v in out.values()])
    keep = np.flatnonzero(ok)
    skipped = [names[i] for i in np.flatnonzero(~ok)]
    warn_skipped(f"{dataset}/{domain}", skipped)
    if keep.size == 0:
        raise UserError(f"{dataset}/{domain}: none of the {len(paths)} image files could be read.")
    idx = torch.from_numpy(keep)

    def stack(prefix: str, count: int) -> torch.Tensor:
        return torch.stack([torch.from_numpy(out[f"{prefix}{i}"].features)[idx] for i in range(count)])

    x = torch.from_numpy(out["clean"].features)[idx]
    views_t = stack("aug", options.n_views) if options.n_views > 0 and with_aug else None
    extra: dict[str, torch.Tensor] = {}
    n_extra = max(1, options.n_views)
    for kind in extract_kinds:
        if kind in kinds:
            extra[kind] = stack(kind, n_extra)
    if "fourier" in kinds:
        if fourier_ok:
            info["fourier_views"] = (
                "amplitude mixing with partners from all domains (u2cdr_bench.blocks.fourier)"
            )
        else:
            extra["fourier"] = stack("strong", n_extra)
            info["fourier_views"] = "strong views (fallback: no Fourier mixing block installed)"
    info.update(
        skipped_files=len(skipped),
        skipped=skipped[:20],
        feature_dim=int(x.shape[1]),
        n_views=options.n_views,
        extra_views=sorted(extra),
        feature_cache=str(out["clean"].folder.parent),
    )
    return DomainSamples(
        domain=domain,
        x=x,
        labels=labels[keep],
        class_names=class_names,
        kind="features",
        views=views_t,
        extra_views=extra,
        info=info,
        ids=tuple(names[i] for i in keep),
        files=tuple(str(paths[i]) for i in keep),
    )


def partner_pool(manifest: DatasetManifest, home: Path) -> ImageSet:
    """Every image of every domain present (the Fourier views' partner pool), in domain order."""
    from ..features import ImageSet

    paths: list[Path] = []
    names: list[str] = []
    labels: list[np.ndarray] = []
    for d in manifest.domains:
        if find_domain_dir(manifest, d, home) is None:
            continue
        p, n, lab, _ = discover_domain(manifest, d.name, home, warn=False)
        paths += p
        names += n
        labels.append(lab)
    lab_all = np.concatenate(labels) if labels else np.zeros(0, dtype=np.int64)
    return ImageSet(manifest.name, "_all", tuple(paths), tuple(names), lab_all)


def _load_real(spec: DatasetSpec, domain: str, options: DataOptions) -> DomainSamples:
    manifest: DatasetManifest = spec.extra["manifest"]
    home = data_home(options)
    paths, names, labels, _ = discover_domain(manifest, domain, home)
    wants_fourier = options.views is None or "fourier" in options.views
    fourier = options.mode == "features" and wants_fourier and "fourier" in _extra_view_kinds()
    pool = partner_pool(manifest, home) if fourier else None  # only the Fourier views' keys read it
    return load_image_domain(manifest.name, domain, paths, names, labels, manifest.class_names, options, pool)


def check_domains(spec: DatasetSpec, domains: Sequence[str], options: DataOptions) -> None:
    """UserError (before any work) when the data home is unset or a domain's images are not found."""
    manifest: DatasetManifest = spec.extra["manifest"]
    home = data_home(options)
    for d in domains:
        discover_domain(manifest, spec.domain(d).name, home, warn=False)


def load_domain_for_run(spec: DatasetSpec, domain: str, options: DataOptions) -> DomainSamples:
    """What the runner calls for one domain: ``spec.load(domain, options)`` (both modes)."""
    return spec.load(domain, options)


def spec_for_manifest(manifest: DatasetManifest) -> DatasetSpec:
    """The :class:`DatasetSpec` of a real dataset manifest (kind ``real``, profile ``features``)."""
    return DatasetSpec(
        name=manifest.name,
        domains=tuple(DomainInfo(d.name, d.abbrev, d.aliases) for d in manifest.domains),
        class_names=manifest.class_names,
        loader=_load_real,
        kind="real",
        pairs=manifest.pairs,
        profile="features",
        paper_key=manifest.paper_key,
        method_profile=manifest.method_profile,
        summary=summary_line(manifest),
        citation=manifest.citation,
        extra={"manifest": manifest},
    )


for _m in MANIFESTS.values():
    register_dataset(spec_for_manifest(_m))


# ------------------------------------------------------------------------------------------------ verify
@dataclass
class DomainCheck:
    """The state of one domain on disk (see :func:`verify_dataset`)."""

    name: str
    folder: Path | None
    count: int = 0
    expected: int | None = None
    class_counts: dict[str, int] = field(default_factory=dict)
    missing_classes: list[str] = field(default_factory=list)
    wrong_class_counts: list[str] = field(default_factory=list)
    unknown_folders: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def problems(self) -> list[str]:
        out = []
        if self.folder is None:
            return ["folder not found"]
        if self.expected is not None and self.count != self.expected:
            out.append(f"{self.count} images, expected {self.expected}")
        if self.missing_classes:
            out.append(f"no images for {', '.join(self.missing_classes)}")
        out += self.wrong_class_counts
        if self.unreadable:
            out.append(f"{len(self.unreadable)} unreadable file(s), e.g. {self.unreadable[0]}")
        return out


@dataclass
class VerifyReport:
    """Result of :func:`verify_dataset`; ``ok`` when no domain has a problem."""

    dataset: str
    root: Path
    domains: list[DomainCheck]
    checked_images: bool

    @property
    def ok(self) -> bool:
        return all(not d.problems for d in self.domains)

    def lines(self) -> list[str]:
        out = [f"{self.dataset}: {self.root}"]
        for d in self.domains:
            exp = "" if d.expected is None else f" / {d.expected} expected"
            where = d.folder if d.folder is not None else "MISSING"
            status = "ok" if not d.problems else "PROBLEM: " + "; ".join(d.problems)
            out.append(f"  {d.name:<13} {d.count:>7} images{exp}  [{where}]  {status}")
            out += [f"      note: {n}" for n in d.notes]
            if d.unknown_folders:
                out.append(f"      ignored folders: {', '.join(d.unknown_folders[:8])}")
        if not self.checked_images:
            out.append("  (images not decoded: --no-images)")
        out.append("  verdict: " + ("OK" if self.ok else "problems found"))
        return out


def verify_dataset(
    name: str,
    home: Path,
    *,
    check_images: bool = True,
    quiet: bool = True,
    manifest: DatasetManifest | None = None,
) -> VerifyReport:
    """Check a dataset on disk: folders, image counts (per domain and per class where known), classes
    without images, folders that are not classes, and (``check_images``) files that cannot be decoded."""
    from .images import find_unreadable
    from .manifests import get_manifest

    manifest = manifest or get_manifest(name)
    checks = []
    for dom in manifest.domains:
        ddir = find_domain_dir(manifest, dom, home)
        chk = DomainCheck(dom.name, ddir, expected=dom.expected_count)
        if ddir is None:
            checks.append(chk)
            continue
        folders = scan_class_folders(ddir)
        exact = {c: c for c in manifest.class_names}
        loose = {normalise_class_name(c): c for c in manifest.class_names}
        files: list[Path] = []
        for folder, fs in folders.items():
            cls = exact.get(folder, loose.get(normalise_class_name(folder)))
            if cls is None:
                chk.unknown_folders.append(folder)
                continue
            chk.class_counts[cls] = chk.class_counts.get(cls, 0) + len(fs)
            files += fs
        chk.count = len(files)
        chk.missing_classes = [c for c in manifest.class_names if c not in chk.class_counts]
        if dom.expected_class_counts is not None:
            for c, want in zip(manifest.class_names, dom.expected_class_counts, strict=True):
                got = chk.class_counts.get(c, 0)
                if got != want and c not in chk.missing_classes:
                    chk.wrong_class_counts.append(f"{c}: {got} images, expected {want}")
        if dom.expected_total_all_classes is not None:
            total = sum(len(fs) for fs in folders.values())
            rel = "matches" if total == dom.expected_total_all_classes else "differs from"
            chk.notes.append(
                f"{total} images over all {len(folders)} class folders ({rel} the published "
                f"{dom.expected_total_all_classes} of the full domain)"
            )
        if check_images:
            chk.unreadable = [_relative(p, ddir) for p in find_unreadable(files, quiet=quiet)]
        checks.append(chk)
    return VerifyReport(manifest.name, dataset_root(manifest, home), checks, check_images)

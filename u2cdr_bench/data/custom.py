"""Custom data: ``--dataset folder:PATH`` (an image tree) and ``--dataset npz:PATH`` (pre-computed features).

``folder:PATH`` -- ``PATH/<domain>/<class>/<image>``: every sub-folder of ``PATH`` holding class folders is a
domain (sorted by name); every directed pair of domains is a default pair. Images go through the same loader
as the real datasets (frozen-backbone features or finetune images,
:func:`u2cdr_bench.data.real.load_image_domain`).
**Classes are matched by exact folder name across domains.** The dataset's classes are the sorted *union* of
the names; a name missing from some domain gets a warning listing where it is present, and a pair of domains
that shares no name at all gets its own warning (its retrieval has no relevant gallery item for any query, so
it cannot be scored). Rename the folders to map classes (e.g. VLCS-style ``hund``/``husky``/``dog``).

``npz:PATH`` -- one ``.npz`` (``numpy.savez``) holding ``class_names`` (string array, ``[C]``) and, for every
domain ``D``, ``features_D`` (``[N_D, d]`` float) and ``labels_D`` (``[N_D]`` ints indexing ``class_names``),
optionally ``views_D`` (``[V, N_D, d]`` augmented views). The features are the frozen representation
(kind ``features``); domains are taken in the file's order, every directed pair is a default pair. A domain
without ``views_D`` gets feature-space views from ``--feature-views`` at run time
(:mod:`u2cdr_bench.data.feature_views`; ``spec.extra["stored_views"]`` says which domains have them).

Example::

    np.savez("toy.npz", class_names=np.array(["a", "b"]),
             features_X=fx, labels_X=lx, features_Y=fy, labels_Y=ly)
    spec = get_dataset("npz:toy.npz")        # domains X, Y; pairs X->Y, Y->X
"""

from __future__ import annotations

import hashlib
import warnings
import zipfile
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from .images import scan_class_folders
from .registry import DYNAMIC, DataOptions, DatasetSpec, DomainInfo
from .types import DomainSamples

__all__ = ["abbreviations", "build_folder_spec", "build_npz_spec"]


def abbreviations(names: list[str]) -> list[str]:
    """Shortest unique prefixes, capitalised.

    ``["art_painting", "photo", "painting"]`` -> ``["A", "Ph", "Pa"]``.

    A prefix is unique when no other name starts with it (case-insensitive); a name that is a prefix of
    another keeps its full spelling.
    """
    low = [n.lower() for n in names]
    out = []
    for i, name in enumerate(low):
        others = [o for j, o in enumerate(low) if j != i]
        abbrev = names[i]
        for k in range(1, len(name) + 1):
            if not any(o.startswith(name[:k]) for o in others):
                abbrev = names[i][:k]
                break
        out.append(abbrev[:1].upper() + abbrev[1:])
    return out


# ------------------------------------------------------------------------------------------------ folder:
def build_folder_spec(text: str) -> DatasetSpec:
    """The spec of ``folder:PATH`` (see the module docstring); UserError for a missing or empty tree."""
    root = Path(text).expanduser()
    layout = f"{text}/<domain>/<class>/<image>"
    if not root.is_dir():
        raise UserError(f"Custom dataset folder {root} does not exist; expected the layout {layout}.")
    trees: dict[str, dict[str, list[Path]]] = {}
    for sub in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        classes = scan_class_folders(sub)
        if classes:
            trees[sub.name] = classes
    if len(trees) < 2:
        raise UserError(
            f"Custom dataset folder {root} has {len(trees)} domain folder(s) with class sub-folders "
            "of images; "
            f"need at least 2 in the layout {layout}."
        )
    domains = list(trees)
    class_names = tuple(sorted({c for t in trees.values() for c in t}))
    _warn_class_mismatch(text, trees, class_names)
    abbrevs = abbreviations(domains)
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:8]
    cache_name = f"folder_{root.resolve().name}_{digest}"
    index = {c: i for i, c in enumerate(class_names)}
    files: dict[str, tuple[list[Path], list[str], np.ndarray]] = {}
    for d, tree in trees.items():
        paths = [p for c in class_names if c in tree for p in tree[c]]
        labels = np.asarray([index[c] for c in class_names if c in tree for _ in tree[c]], dtype=np.int64)
        files[d] = (paths, [p.relative_to(root).as_posix() for p in paths], labels)
    return DatasetSpec(
        name=f"folder:{text}",
        domains=tuple(DomainInfo(d, a) for d, a in zip(domains, abbrevs, strict=True)),
        class_names=class_names,
        loader=_load_folder,
        kind="real",
        pairs=(),
        profile="features",
        paper_key=None,
        summary=f"custom image folder {root}: {len(domains)} domains, {len(class_names)} classes",
        extra={"root": root, "files": files, "cache_name": cache_name},
    )


def _warn_class_mismatch(
    text: str, trees: dict[str, dict[str, list[Path]]], class_names: tuple[str, ...]
) -> None:
    partial = {c: [d for d in trees if c in trees[d]] for c in class_names}
    partial = {c: ds for c, ds in partial.items() if len(ds) < len(trees)}
    if partial:
        shared = len(class_names) - len(partial)
        listed = "; ".join(f"{c} ({', '.join(ds)})" for c, ds in sorted(partial.items()))
        warnings.warn(
            f"folder:{text}: class folders are matched by exact name; {len(partial)} of {len(class_names)} "
            f"name(s) are missing from some domain ({shared} shared by all): {listed}.",
            UserWarning,
            stacklevel=3,
        )
    doms = list(trees)
    for i, a in enumerate(doms):
        for b in doms[i + 1 :]:
            if not set(trees[a]) & set(trees[b]):
                warnings.warn(
                    f"folder:{text}: domains {a} and {b} share no class name, so retrieval between "
                    "them has no "
                    "relevant item; rename the class folders to match.",
                    UserWarning,
                    stacklevel=3,
                )


def _load_folder(spec: DatasetSpec, domain: str, options: DataOptions) -> DomainSamples:
    from ..features import ImageSet
    from .real import load_image_domain

    files = spec.extra["files"]
    paths, names, labels = files[domain]
    pool = None
    if options.mode == "features":
        all_p = [p for d in files for p in files[d][0]]
        all_n = [n for d in files for n in files[d][1]]
        all_l = np.concatenate([files[d][2] for d in files])
        pool = ImageSet(spec.extra["cache_name"], "_all", tuple(all_p), tuple(all_n), all_l)
    out = load_image_domain(
        spec.extra["cache_name"], domain, paths, names, labels, spec.class_names, options, pool
    )
    out.info["source"] = str(spec.extra["root"])
    return out


# --------------------------------------------------------------------------------------------------- npz:
def build_npz_spec(text: str) -> DatasetSpec:
    """The spec of ``npz:PATH`` (see the module docstring); UserError for a missing or malformed file."""
    path = Path(text).expanduser()
    if not path.is_file():
        raise UserError(f"Feature file {path} does not exist.")
    if not zipfile.is_zipfile(path):
        raise UserError(f"{path} is not a readable .npz file (numpy.savez writes a zip archive).")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except ValueError as err:
        raise UserError(
            f"{path}: cannot read it without pickle ({err}); store class_names as a string array, "
            "e.g. np.array(['cat', 'dog'])."
        ) from None
    except (OSError, zipfile.BadZipFile, EOFError) as err:
        raise UserError(f"{path} is not a readable .npz file ({err}).") from None
    if "class_names" not in arrays:
        raise UserError(f"{path} has no 'class_names' array (keys: {', '.join(sorted(arrays))}).")
    cn = arrays["class_names"]
    if cn.ndim != 1 or cn.dtype.kind not in "US" or len(cn) == 0:
        raise UserError(
            f"{path}: 'class_names' must be a non-empty 1-D string array, got {cn.dtype} {cn.shape}."
        )
    class_names = tuple(str(c.decode() if isinstance(c, bytes) else c) for c in cn)
    if len(set(class_names)) != len(class_names):
        raise UserError(f"{path}: 'class_names' has duplicates.")
    domains = [
        k[len("features_") :] for k in arrays if k.startswith("features_") and len(k) > len("features_")
    ]
    if len(domains) < 2:
        raise UserError(
            f"{path} needs features_<domain> arrays for at least 2 domains, found {len(domains)}."
        )
    data: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray | None]] = {}
    dim = None
    for d in domains:
        feats = arrays[f"features_{d}"]
        if f"labels_{d}" not in arrays:
            raise UserError(f"{path}: features_{d} has no matching labels_{d}.")
        labels = arrays[f"labels_{d}"]
        if feats.ndim != 2 or feats.dtype.kind not in "fiu" or feats.shape[0] == 0:
            raise UserError(
                f"{path}: features_{d} must be a non-empty [N, d] float array, got {feats.shape}."
            )
        if not np.isfinite(feats).all():
            raise UserError(f"{path}: features_{d} holds NaN or infinite values.")
        if labels.ndim != 1 or labels.dtype.kind not in "iu" or len(labels) != len(feats):
            raise UserError(
                f"{path}: labels_{d} must be {len(feats)} integers (one per row of features_{d}), "
                f"got {labels.dtype} {labels.shape}."
            )
        if labels.min() < 0 or labels.max() >= len(class_names):
            raise UserError(f"{path}: labels_{d} must index class_names (0..{len(class_names) - 1}).")
        if dim is not None and feats.shape[1] != dim:
            raise UserError(f"{path}: features_{d} has dimension {feats.shape[1]}, other domains {dim}.")
        dim = feats.shape[1]
        views = arrays.get(f"views_{d}")
        if views is not None and (views.ndim != 3 or views.shape[1:] != feats.shape):
            raise UserError(
                f"{path}: views_{d} must be [V, {feats.shape[0]}, {feats.shape[1]}], got {views.shape}."
            )
        data[d] = (
            feats.astype(np.float32),
            labels.astype(np.int64),
            None if views is None else views.astype(np.float32),
        )
    abbrevs = abbreviations(domains)
    return DatasetSpec(
        name=f"npz:{text}",
        domains=tuple(DomainInfo(d, a) for d, a in zip(domains, abbrevs, strict=True)),
        class_names=class_names,
        loader=_load_npz,
        kind="features",
        pairs=(),
        profile="features",
        paper_key=None,
        summary=f"feature file {path}: {len(domains)} domains, {len(class_names)} classes, d={dim}",
        extra={"path": path, "data": data, "stored_views": {d: v[2] is not None for d, v in data.items()}},
    )


def _load_npz(spec: DatasetSpec, domain: str, options: DataOptions) -> DomainSamples:
    feats, labels, views = spec.extra["data"][domain]
    return DomainSamples(
        domain=domain,
        x=torch.from_numpy(feats.copy()),
        labels=labels.copy(),
        class_names=spec.class_names,
        kind="features",
        views=None if views is None else torch.from_numpy(views.copy()),
        info={"source": str(spec.extra["path"]), "skipped_files": 0},
    )


DYNAMIC["folder"] = build_folder_spec
DYNAMIC["npz"] = build_npz_spec

"""Frozen-backbone feature extraction with a resumable on-disk cache (DESIGN.md "Two input modes").

For one domain (an :class:`ImageSet`: files, labels) and one backbone, each **view** is extracted once:

* ``clean``: the backbone's evaluation transform (resize the short side, center crop; :class:`Preprocess`);
* ``aug0, aug1, ...``: MoCo v2 aug-plus views (:data:`~u2cdr_bench.data.images.MOCO_V2_AUG`);
* ``strong0, ...``: strong views for DN2A (:data:`~u2cdr_bench.data.images.STRONG_AUG`);
* ``fourier0, ...``: DGDIR's domain augmentation (Hu, Zhang & Lee, ICCV 2023;
  :mod:`u2cdr_bench.blocks.fourier`): the aug-plus view ``aug<i>`` of the image (same random draws) with its
  Fourier amplitude interpolated towards, and its low-frequency phase partly mixed with, a **partner** image
  drawn at random from the pooled images of *all* domains of the dataset (clean transform); ``lam ~ U(0,
  1)``, ``mu ~ U(0, 0.4)``, square side 50/224. DGDIR pools the two training domains of a pair; a per-domain
  cache cannot know the pair, so the pool is the whole dataset (DGDIR's domain-generalisation setting).
* ``phase0, ...``: the phase-only image (constant amplitude, grey-level phase) of the same ``aug<i>`` view:
  DGDIR's domain-invariant proxy.

Every augmented view of image ``i`` is drawn from its own ``torch.Generator`` seeded by
``sha256(view name, VIEW_SEED, relative path)``, so a view does not depend on batch order, chunking, the other
files or how many views are asked for: asking for 4 views later reuses the 2 already cached.

Cache layout: ``<cache_dir>/features/<dataset>/<domain>/<backbone>/<view>-<key>/`` holding ``features.npy``
(``[N, D]`` float32), ``ok.npy`` (``[N]`` bool, ``False`` for an unreadable file, whose row is zero) and
``meta.json``, written last (its presence marks a complete entry). ``key`` is the first 16 hex digits of the
sha256 of the canonical JSON of (format version, backbone fingerprint = name + sha256 of the weights file +
preprocessing, sha256 of the file list (relative paths and sizes), view spec (kind, index, augmentation
parameters, seed)); anything that changes the numbers changes the key. While a view is being extracted its
chunks of ``chunk_size`` images are written as ``part-<c>.npz`` (atomically, via a temporary file); an
interrupted (even killed) extraction resumes at the first missing chunk. ``features.npy`` and ``ok.npy`` are
written atomically too, and only one process at a time extracts a view (a lock file in its folder).

Example::

    files = ImageSet("pacs", "photo", paths, names, labels)
    out = extract_views(files, "effnet-lite0", [View("clean"), View("aug", 0)], cache_root(options))
    out["clean"].features.shape     # (1670, 1280)
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from .backbones import BackboneSpec, Preprocess, backbone_fingerprint, load_backbone, parse_backbone
from .data.images import (
    MOCO_V2_AUG,
    STRONG_AUG,
    ImageAugment,
    limit_size,
    open_rgb,
    pil_to_tensor,
    resize_center_crop,
)
from .data.registry import DataOptions
from .errors import UserError
from .progress import reporter

__all__ = [
    "FORMAT_VERSION",
    "ImageSet",
    "View",
    "ViewFeatures",
    "cache_root",
    "default_views",
    "extract_views",
    "fourier_available",
    "view_cache_dir",
]

FORMAT_VERSION = 1
"""Bumped whenever the extraction code changes the numbers (part of every cache key)."""

THREADS_ENV = "U2CDR_THREADS"
"""Environment variable: torch CPU threads during extraction (1 is fastest on a shared, busy machine)."""

DECODE_WORKERS_ENV = "U2CDR_DECODE_WORKERS"
"""Environment variable: worker processes decoding images during extraction (:func:`decode_workers`)."""

VIEW_SEED = 20240
"""Base seed of every augmented view."""

MAX_SHORT_SIDE = 448
"""Decoded images are downscaled so their short side is at most this (bounds the cost of big photos)."""

FOURIER_PARAMS = {
    "alpha": 1.0,
    "phase_alpha": 0.4,
    "phase_fraction": 50.0 / 224.0,
    "phase_amplitude": 50000.0 / (255.0 * 224.0),
}
"""DGDIR's official settings (``--aug_alpha 1.0 --hpf_alpha 0.4 --hpf_range 50``, phase constant 50000)."""

ViewKind = Literal["clean", "aug", "strong", "fourier", "phase"]


@dataclass(frozen=True)
class View:
    """One view of every image: ``kind`` and, for augmented kinds, the view ``index``."""

    kind: ViewKind = "clean"
    index: int = 0

    @property
    def name(self) -> str:
        return "clean" if self.kind == "clean" else f"{self.kind}{self.index}"

    @property
    def augment(self) -> ImageAugment | None:
        """The base augmentation (fourier and phase views start from the aug-plus view of the same index)."""
        if self.kind == "clean":
            return None
        return STRONG_AUG if self.kind == "strong" else MOCO_V2_AUG

    @property
    def seed_name(self) -> str:
        """Whose seed draws the base augmentation: ``aug<i>`` for the fourier and phase views."""
        return f"aug{self.index}" if self.kind in ("fourier", "phase") else self.name

    def spec(self) -> dict:
        aug = self.augment
        out = {
            "kind": self.kind,
            "index": self.index if self.kind != "clean" else 0,
            "augment": None if aug is None else aug.params(),
            "seed": None if aug is None else VIEW_SEED,
            "max_short_side": MAX_SHORT_SIDE,
        }
        if self.kind in ("fourier", "phase"):
            out["fourier"] = dict(FOURIER_PARAMS)
        return out


@dataclass(frozen=True)
class ImageSet:
    """The image files of one domain.

    Attributes:
        dataset: dataset name (a folder of the cache).
        domain: domain name.
        paths: absolute file paths, in the domain's fixed order.
        names: the files' paths relative to the dataset folder (POSIX), same order; they key the views' seeds.
        labels: ``[N]`` int64 class indices.
    """

    dataset: str
    domain: str
    paths: tuple[Path, ...]
    names: tuple[str, ...]
    labels: np.ndarray

    def __len__(self) -> int:
        return len(self.paths)

    def digest(self) -> str:
        """sha256 over ``"<relative path>\\t<size in bytes>\\n"`` of every file, in order."""
        h = hashlib.sha256()
        for p, n in zip(self.paths, self.names, strict=True):
            try:
                size = p.stat().st_size
            except OSError:
                size = -1
            h.update(f"{n}\t{size}\n".encode())
        return h.hexdigest()


@dataclass(frozen=True)
class ViewFeatures:
    """Extracted features of one view: ``features [N, D]`` float32, ``ok [N]`` bool, and the cache folder."""

    features: np.ndarray
    ok: np.ndarray
    folder: Path


def cache_root(options: DataOptions) -> Path:
    """``<cache_dir>/features``; ``cache_dir`` defaults to ``platformdirs.user_cache_dir("u2cdr-bench")``."""
    if options.cache_dir is not None:
        return Path(options.cache_dir) / "features"
    import platformdirs

    return Path(platformdirs.user_cache_dir("u2cdr-bench")) / "features"


def fourier_available() -> bool:
    """Whether the Fourier mixing block ``u2cdr_bench.blocks.fourier`` (with ``fourier_augment`` and
    ``phase_only_image``) is installed; without it the ``fourier``/``phase`` views cannot be made."""
    try:
        if importlib.util.find_spec("u2cdr_bench.blocks.fourier") is None:
            return False
        mod = importlib.import_module("u2cdr_bench.blocks.fourier")
    except (ImportError, ValueError):
        return False
    return hasattr(mod, "fourier_augment") and hasattr(mod, "phase_only_image")


def default_views(n_views: int, extra: Sequence[str] = ("strong", "fourier", "phase")) -> list[View]:
    """``clean``, ``aug0..aug{n-1}`` and ``max(1, n)`` views of each extra kind in ``extra``."""
    views = [View("clean")] + [View("aug", i) for i in range(n_views)]
    for kind in extra:
        views += [View(kind, i) for i in range(max(1, n_views))]  # type: ignore[arg-type]
    return views


def _slug(text: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("_")
    if len(s) > 60 or s != text:
        s = f"{s[:40]}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"
    return s or "x"


def view_key(
    files: ImageSet,
    backbone: str,
    view: View,
    fingerprint: dict | None = None,
    partners: ImageSet | None = None,
) -> str:
    """sha256 (hex) of (format version, backbone fingerprint, file-list digest, view spec, partner pool)."""
    payload = {
        "version": FORMAT_VERSION,
        "backbone": fingerprint or backbone_fingerprint(backbone),
        "files": files.digest(),
        "n": len(files),
        "view": view.spec(),
    }
    if view.kind == "fourier":
        payload["partners"] = (partners or files).digest()
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()


def view_cache_dir(
    root: Path,
    files: ImageSet,
    backbone: str,
    view: View,
    fingerprint: dict | None = None,
    partners: ImageSet | None = None,
) -> Path:
    """The cache folder of one (domain, backbone, view)."""
    fp = fingerprint or backbone_fingerprint(backbone)
    key = view_key(files, backbone, view, fp, partners)
    return (
        root / _slug(files.dataset) / _slug(files.domain) / _slug(fp["backbone"]) / f"{view.name}-{key[:16]}"
    )


def _image_seed(tag: str, name: str) -> int:
    digest = hashlib.sha256(f"{tag}|{VIEW_SEED}|{name}".encode()).digest()
    return int.from_bytes(digest[:7], "little")


def _inference_model(backbone: str) -> torch.nn.Module:
    """The backbone in eval mode, BatchNorm folded where supported, channels-last memory layout."""
    model = load_backbone(backbone)
    if hasattr(model.net, "fold_batchnorm"):
        model.net.fold_batchnorm()
    return model.eval().to(memory_format=torch.channels_last)


def _save_chunk(folder: Path, c: int, feats: np.ndarray, ok: np.ndarray) -> None:
    """Write ``part-<c>.npz`` atomically (temporary file + rename)."""
    tmp = folder / f".part-{c:05d}.tmp.npz"
    np.savez(tmp, features=feats, ok=ok)
    os.replace(tmp, folder / f"part-{c:05d}.npz")


def _load_complete(folder: Path, n: int, report: bool = True) -> ViewFeatures | None:
    """The finished entry in ``folder``, or ``None``: not finished yet (no ``meta.json``), or unreadable or
    inconsistent, which is reported as a note when ``report`` (the view is then extracted again)."""
    if not (folder / "meta.json").exists():
        return None
    try:
        meta = json.loads((folder / "meta.json").read_text())
        feats = np.load(folder / "features.npy", mmap_mode=None)
        ok = np.load(folder / "ok.npy")
        good = meta.get("n") == n and feats.shape[0] == n and ok.shape == (n,)
    except (OSError, ValueError, AttributeError):
        good = False
    if not good:
        if report:
            reporter().note(f"feature cache {folder} is corrupt or incomplete; extracting that view again")
        return None
    return ViewFeatures(feats.astype(np.float32, copy=False), ok.astype(bool), folder)


def _finalise(folder: Path, n_chunks: int, n: int, meta: dict) -> ViewFeatures:
    parts = [np.load(folder / f"part-{c:05d}.npz") for c in range(n_chunks)]
    feats = np.concatenate([p["features"] for p in parts]).astype(np.float32)
    ok = np.concatenate([p["ok"] for p in parts]).astype(bool)
    assert feats.shape[0] == n, (feats.shape, n)
    for name, arr in (("features.npy", feats), ("ok.npy", ok)):  # atomic: readers never see half a file
        tmp = folder / f".{name}.tmp.npy"
        np.save(tmp, arr)
        os.replace(tmp, folder / name)
    tmp = folder / "meta.json.tmp"
    tmp.write_text(json.dumps({**meta, "n": n, "dim": int(feats.shape[1]), "n_ok": int(ok.sum())}, indent=1))
    os.replace(tmp, folder / "meta.json")
    for c in range(n_chunks):
        (folder / f"part-{c:05d}.npz").unlink(missing_ok=True)
    return ViewFeatures(feats, ok, folder)


def _view_inputs(
    view: View, images: list, names: Sequence[str], pre: Preprocess, partners: ImageSet | None = None
) -> torch.Tensor:
    """``[n, 3, crop, crop]`` inputs of one view for decoded images (``None`` entries -> zeros)."""
    crop = pre.crop
    out = torch.zeros(len(images), 3, crop, crop)
    aug = view.augment
    if aug is not None and aug.size != crop:
        aug = ImageAugment(**{**aug.params(), "size": crop})
    for i, (img, name) in enumerate(zip(images, names, strict=True)):
        if img is None:
            continue
        if aug is None:
            out[i] = resize_center_crop(img, pre.resize, pre.crop, pre.interpolation)
            continue
        g = torch.Generator().manual_seed(_image_seed(view.seed_name, name))
        v = aug.one(pil_to_tensor(img), g)
        if view.kind == "phase":
            from .blocks.fourier import phase_only_image

            v = phase_only_image(v[None], amplitude=FOURIER_PARAMS["phase_amplitude"])[0]
        elif view.kind == "fourier":
            from .blocks.fourier import fourier_augment

            pool = partners if partners is not None and len(partners) else None
            gm = torch.Generator().manual_seed(_image_seed(view.name, name))
            partner_img = None
            if pool is not None:
                j = int(torch.randint(len(pool), (), generator=gm))
                partner_img = open_rgb(pool.paths[j])
            partner = (
                resize_center_crop(
                    limit_size(partner_img, MAX_SHORT_SIDE), pre.resize, crop, pre.interpolation
                )
                if partner_img is not None
                else resize_center_crop(img, pre.resize, crop, pre.interpolation)
            )
            v, _ = fourier_augment(
                v[None],
                partner[None],
                gm,
                alpha=FOURIER_PARAMS["alpha"],
                phase_alpha=FOURIER_PARAMS["phase_alpha"],
                phase_fraction=FOURIER_PARAMS["phase_fraction"],
                phase_amplitude=FOURIER_PARAMS["phase_amplitude"],
            )
            v = v[0]
        out[i] = v
    return out


def extract_views(
    files: ImageSet,
    backbone: str,
    views: Sequence[View],
    root: Path,
    *,
    batch_size: int = 64,
    chunk_size: int = 256,
    quiet: bool = False,
    partners: ImageSet | None = None,
) -> dict[str, ViewFeatures]:
    """Features of every view of ``files`` under ``backbone``, from the cache or extracted (and cached).

    Images are decoded once per chunk for all views still missing that chunk; the network runs in eval mode
    under ``torch.inference_mode`` on batches of ``batch_size``. Each view being extracted is locked
    (``<view folder>/.lock``, an OS lock the kernel releases when a process dies), so two processes never
    extract or finalise the same view at once: the second waits (and says so), then reuses the result.

    Args:
        files: the domain's image files.
        backbone: backbone name (``NAME`` or ``NAME:PATH``).
        views: the views wanted.
        root: the feature cache root (:func:`cache_root`).
        batch_size: images per forward pass.
        chunk_size: images per resumable chunk.
        quiet: no progress bar.
        partners: the pool of partner images of the ``fourier`` views (default: ``files`` itself).

    Returns:
        ``{view name: ViewFeatures}``; rows of unreadable files are zero with ``ok`` False.
    """
    n = len(files)
    fp = backbone_fingerprint(backbone)
    result: dict[str, ViewFeatures] = {}
    pending: list[tuple[View, Path]] = []
    for view in views:
        if view.kind in ("fourier", "phase") and not fourier_available():
            raise UserError(
                f"View '{view.name}' needs the Fourier block u2cdr_bench.blocks.fourier, which is "
                "not installed."
            )
        folder = view_cache_dir(root, files, backbone, view, fp, partners)
        done = _load_complete(folder, n)
        if done is not None:
            result[view.name] = done
        else:
            folder.mkdir(parents=True, exist_ok=True)
            pending.append((view, folder))
    if not pending:
        return result
    with contextlib.ExitStack() as locks:
        # one extraction per view folder at a time, across processes; sorted so two processes that want
        # overlapping sets of views cannot deadlock
        for view, folder in sorted(pending, key=lambda vf: str(vf[1])):
            locks.enter_context(_view_lock(folder, f"{files.dataset}/{files.domain} {view.name}"))
        still: list[tuple[View, Path]] = []
        for view, folder in pending:  # another process may have finished some while we waited
            done = _load_complete(folder, n, report=False)
            if done is not None:
                result[view.name] = done
            else:
                still.append((view, folder))
        if still:
            result.update(
                _extract_pending(files, backbone, still, n, batch_size, chunk_size, quiet, partners, fp)
            )
    return result


@contextlib.contextmanager
def _view_lock(folder: Path, what: str) -> Iterator[None]:
    """Hold ``<view folder>/.lock`` (an OS file lock, released even when the process is killed)."""
    from filelock import FileLock, Timeout

    path = folder / ".lock"
    lock = FileLock(str(path), timeout=0, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        reporter().note(f"another process is extracting {what}; waiting for it")
        lock.acquire(timeout=-1)
    try:
        yield
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            path.unlink()


def _extract_pending(
    files: ImageSet,
    backbone: str,
    pending: list[tuple[View, Path]],
    n: int,
    batch_size: int,
    chunk_size: int,
    quiet: bool,
    partners: ImageSet | None,
    fp: dict,
) -> dict[str, ViewFeatures]:
    """Extract the chunks still missing of each pending view (their locks held), then finalise them.

    The runtime switches of :func:`u2cdr_bench.reproducibility.apply_runtime` are applied first, so a view
    gets the same numbers whoever extracts it (a run, a benchmark, a resumed extraction in a new process).
    """
    from .reproducibility import ReproError, apply_runtime

    try:
        apply_runtime()
    except ReproError as err:
        raise UserError(str(err)) from None
    spec, _ = parse_backbone(backbone)
    pre = spec.preprocess
    result: dict[str, ViewFeatures] = {}
    n_chunks = max(1, -(-n // chunk_size))
    todo = [
        (c, [(v, f) for v, f in pending if not (f / f"part-{c:05d}.npz").exists()]) for c in range(n_chunks)
    ]
    todo = [(c, vs) for c, vs in todo if vs]
    model = _inference_model(backbone) if todo else None
    threads = _threads_from_env()
    old_threads = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        _run_chunks(files, todo, n, chunk_size, batch_size, spec, pre, model, partners, quiet)
    finally:
        torch.set_num_threads(old_threads)
    for view, folder in pending:
        meta = {
            "format_version": FORMAT_VERSION,
            "dataset": files.dataset,
            "domain": files.domain,
            "backbone": fp,
            "view": view.spec(),
            "files_sha256": files.digest(),
            "partners_sha256": (partners or files).digest() if view.kind == "fourier" else None,
            "created": time.strftime("%Y-%m-%dT%H:%M:%S"),
        }
        result[view.name] = _finalise(folder, n_chunks, n, meta)
    return result


def _threads_from_env() -> int:
    """``$U2CDR_THREADS`` (torch CPU threads during extraction; unset or 0 = torch's default)."""
    raw = os.environ.get(THREADS_ENV, "").strip()
    if not raw:
        return 0
    if not raw.isdigit():
        raise UserError(f"{THREADS_ENV} must be a whole number of threads, got '{raw}'.")
    return int(raw)


class _BatchInputs(torch.utils.data.Dataset):
    """Item ``i``: the inputs of every pending view of one forward batch of one chunk (decoded once).

    Returns ``(i, ok [n] bool, {view name: [n, 3, crop, crop] float32})``. Each image's inputs depend only on
    the image and its view (per-image generators), so decoding in worker processes, in any order, gives the
    inputs the sequential loop gives.
    """

    def __init__(
        self,
        files: ImageSet,
        items: list[tuple[int, int, int, list[View]]],
        pre: Preprocess,
        partners: ImageSet | None,
    ) -> None:
        self.files = files
        self.items = items
        self.pre = pre
        self.partners = partners

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> tuple[int, np.ndarray, dict[str, torch.Tensor]]:
        _, b0, b1, views = self.items[i]
        images = [open_rgb(p) for p in self.files.paths[b0:b1]]
        images = [None if im is None else limit_size(im, MAX_SHORT_SIDE) for im in images]
        ok = np.array([im is not None for im in images], dtype=bool)
        names = self.files.names[b0:b1]
        return i, ok, {v.name: _view_inputs(v, images, names, self.pre, self.partners) for v in views}


def decode_workers(threads: int | None = None) -> int:
    """Worker processes decoding and transforming images during extraction (``$U2CDR_DECODE_WORKERS``).

    Unset: one worker when the machine has a core beside the forward pass's ``threads`` torch threads
    (default: torch's current number), else none (the decoding then runs in the main process, between
    forward passes). ``0`` forces the sequential loop.
    """
    raw = os.environ.get(DECODE_WORKERS_ENV, "").strip()
    if raw:
        if not raw.isdigit():
            raise UserError(f"{DECODE_WORKERS_ENV} must be a whole number of worker processes, got '{raw}'.")
        return int(raw)
    return 1 if (os.cpu_count() or 1) > (threads or torch.get_num_threads()) else 0


def _run_chunks(
    files: ImageSet,
    todo: list[tuple[int, list[tuple[View, Path]]]],
    n: int,
    chunk_size: int,
    batch_size: int,
    spec: BackboneSpec,
    pre: Preprocess,
    model: torch.nn.Module | None,
    partners: ImageSet | None,
    quiet: bool,
) -> None:
    """Extract every view still missing each pending chunk and write its part (see :func:`extract_views`).

    The images of each forward batch (``batch_size`` images of one chunk, the batches starting at the chunk's
    start) are decoded once for all its pending views, by :func:`decode_workers` worker processes while the
    main process runs the backbone (``torch.utils.data.DataLoader``), or in the main process when there are
    none; the forward batches, and so the features, are the same either way.

    Progress: one task of the active reporter (:mod:`u2cdr_bench.progress`) counting image-views.
    """
    total = sum(min(chunk_size, n - c * chunk_size) * len(vs) for c, vs in todo)
    names = sorted({v.name for _, vs in todo for v, _ in vs})
    done = n * len(names) - total
    desc = f"extract {files.dataset}/{files.domain} {spec.name} [{', '.join(names)}]"
    if done > 0:
        desc += f" (resumed, {done} done before)"
    bar = reporter(quiet).task(desc, total=total, unit="img")
    items: list[tuple[int, int, int, list[View]]] = []
    for c, chunk_views in todo:
        lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
        items += [
            (c, b, min(hi, b + batch_size), [v for v, _ in chunk_views]) for b in range(lo, hi, batch_size)
        ]
    folders = {c: dict((v.name, f) for v, f in chunk_views) for c, chunk_views in todo}
    workers = min(decode_workers(), len(items))
    loader = torch.utils.data.DataLoader(
        _BatchInputs(files, items, pre, partners),
        batch_size=None,
        shuffle=False,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
    )
    parts: dict[int, tuple[dict[str, np.ndarray], np.ndarray]] = {}
    with contextlib.ExitStack() as stack, torch.inference_mode():
        stack.callback(bar.close)
        for i, ok_b, inputs in loader:
            c, b0, b1, views = items[int(i)]
            lo, hi = c * chunk_size, min(n, (c + 1) * chunk_size)
            if c not in parts:
                feats = {v.name: np.zeros((hi - lo, spec.out_dim), dtype=np.float32) for v in views}
                parts[c] = (feats, np.zeros(hi - lo, dtype=bool))
            feats, ok = parts[c]
            ok[b0 - lo : b1 - lo] = np.asarray(ok_b, dtype=bool)
            for v in views:
                xb = inputs[v.name].contiguous(memory_format=torch.channels_last)
                feats[v.name][b0 - lo : b1 - lo] = model(xb).float().numpy()  # type: ignore[misc]
                bar.advance(len(xb))
            if b1 == hi:  # the chunk's last batch: write its part of every view
                for name, f in feats.items():
                    f[~ok] = 0.0
                    _save_chunk(folders[c][name], c, f, ok)
                del parts[c]


def clear_cache(root: Path, dataset: str | None = None) -> None:
    """Delete the feature cache (of one dataset, or all of it)."""
    target = root / _slug(dataset) if dataset else root
    if target.exists():
        shutil.rmtree(target)

"""``u2cdr-bench retrieve``: search a folder of images with a model saved by ``run --save-model``.

    u2cdr-bench retrieve --model runs/<hash>.model.pt --gallery photos/ --query q1.jpg q2.jpg [--top 10]
        [--plot [-o retrieve.png]] [--json]

1. The model file says how an image file becomes its input (``pipeline``, :mod:`u2cdr_bench.artifacts`):
   ``pixels`` (the embedded digits: grayscale, resized to 16×16 with PIL's antialiased bilinear filter,
   values in [0, 1], bright ink on a dark background as in the training data -- no inversion), ``features``
   (the frozen backbone's clean view, the same code and cache as ``run``,
   :func:`u2cdr_bench.features.extract_views`) or ``finetune`` (the backbone's evaluation resize and crop).
2. Every image under ``--gallery`` (recursively, sorted by relative path) is embedded once and cached in
   ``<cache-dir>/retrieve/<model sha256[:16]>/<gallery digest[:16]>.npz`` (the digest covers the relative
   paths and sizes, so adding or replacing a file re-embeds). Unreadable files are skipped with a warning.
3. A faiss flat index ranks the gallery by Euclidean distance (:func:`u2cdr_bench.retrieval.knn`, exact, ties
   to the lower index), the benchmark's retrieval distance.
4. When the model carries an open-set detector (saved from an open-set run,
   :mod:`u2cdr_bench.carried_detector`), each query is flagged private or shared against this gallery.

The class of a gallery image is its parent folder's name when the gallery has class sub-folders
(``gallery/<class>/<image>``); a query's class is its parent folder's name when that is one of the gallery's
classes. ``--plot`` frames an item green when its class is the query's, red when not, and grey when either
is unknown.
"""

from __future__ import annotations

import hashlib
import json
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import numpy as np
import typer

from .errors import UserError

if TYPE_CHECKING:  # torch is imported when a command runs, not when the CLI starts
    import torch


def scan_images(folder: Path) -> list[Path]:
    """Image files under ``folder`` (recursively, hidden ones skipped), sorted by relative path."""
    from .data.images import is_image_file

    files = [
        p
        for p in folder.rglob("*")
        if p.is_file()
        and is_image_file(p)
        and not any(s.startswith(".") for s in p.relative_to(folder).parts)
    ]
    return sorted(files, key=lambda p: p.relative_to(folder).as_posix())


def _pixels(model: dict[str, Any], paths: list[Path]) -> tuple[torch.Tensor, np.ndarray]:
    """``[N, C, H, W]`` inputs in [0, 1] for the ``pixels`` pipeline and the ``[N]`` readable mask."""
    import torch
    from PIL import Image

    c, h, w = (int(s) for s in model["input_shape"])
    out = torch.zeros(len(paths), c, h, w)
    ok = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        try:
            with Image.open(p) as img:
                img = img.convert("L" if c == 1 else "RGB")
                if img.size != (w, h):
                    img = img.resize((w, h), Image.Resampling.BILINEAR)
                arr = np.asarray(img, dtype=np.float32) / 255.0
        except (OSError, ValueError, SyntaxError):
            continue
        out[i] = torch.from_numpy(arr[None] if c == 1 else np.moveaxis(arr, -1, 0).copy())
        ok[i] = True
    return out, ok


def _finetune(model: dict[str, Any], paths: list[Path]) -> tuple[torch.Tensor, np.ndarray]:
    import torch

    from .backbones import parse_backbone
    from .data.images import open_rgb, resize_center_crop

    pre = parse_backbone(model["backbone"])[0].preprocess
    out = torch.zeros(len(paths), 3, pre.crop, pre.crop)
    ok = np.zeros(len(paths), dtype=bool)
    for i, p in enumerate(paths):
        img = open_rgb(p)
        if img is not None:
            out[i] = resize_center_crop(img, pre.resize, pre.crop, pre.interpolation)
            ok[i] = True
    return out, ok


def _features(
    model: dict[str, Any], paths: list[Path], root: Path, cache: Path | None, quiet: bool
) -> tuple[torch.Tensor, np.ndarray]:
    import torch

    from .data.registry import DataOptions
    from .features import ImageSet, View, cache_root, extract_views

    names = tuple(_relative(p, root) for p in paths)
    files = ImageSet(
        "retrieve",
        hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:16],
        tuple(paths),
        names,
        np.zeros(len(paths), dtype=np.int64),
    )
    out = extract_views(
        files, model["backbone"], [View("clean")], cache or cache_root(DataOptions()), quiet=quiet
    )["clean"]
    return torch.from_numpy(out.features), out.ok


def _relative(p: Path, root: Path) -> str:
    try:
        return p.relative_to(root).as_posix()
    except ValueError:
        return p.name


def embed_files(
    model: dict[str, Any],
    module: torch.nn.Module | None,
    paths: list[Path],
    root: Path,
    feature_cache: Path | None,
    quiet: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """``([N, D] float32 embeddings, [N] readable mask)`` of image files (a bad file's row is 0)."""
    from .artifacts import embed_inputs

    pipeline = model["pipeline"]
    if pipeline == "pixels":
        x, ok = _pixels(model, paths)
    elif pipeline == "finetune":
        x, ok = _finetune(model, paths)
    elif pipeline == "features":
        x, ok = _features(model, paths, root, feature_cache, quiet)
    else:
        raise UserError(
            f"The model was trained on precomputed features ({model['config']['dataset']}); "
            "retrieve needs a model trained on images."
        )
    emb = embed_inputs(model, module, x)
    emb[~ok] = 0.0
    return emb, ok


def gallery_embeddings(
    model: dict[str, Any],
    model_path: Path,
    module: torch.nn.Module | None,
    folder: Path,
    paths: list[Path],
    cache_dir: Path | None,
    quiet: bool,
) -> tuple[np.ndarray, np.ndarray, Path, bool]:
    """Embeddings of the gallery files, from the cache when present; ``(emb, ok, cache file, cached?)``."""
    import platformdirs

    from .artifacts import _atomic_write, sha256_file
    from .features import ImageSet

    digest = ImageSet(
        "retrieve",
        "gallery",
        tuple(paths),
        tuple(_relative(p, folder) for p in paths),
        np.zeros(len(paths), dtype=np.int64),
    ).digest()
    base = Path(cache_dir) if cache_dir is not None else Path(platformdirs.user_cache_dir("u2cdr-bench"))
    cache = base / "retrieve" / sha256_file(model_path)[:16] / f"{digest[:16]}.npz"
    if cache.is_file():
        try:
            with np.load(cache, allow_pickle=False) as z:
                if z["embeddings"].shape[0] == len(paths):
                    return z["embeddings"], z["ok"], cache, True
        except (OSError, ValueError, KeyError):
            pass
    feature_cache = None if cache_dir is None else Path(cache_dir) / "features"
    emb, ok = embed_files(model, module, paths, folder, feature_cache, quiet)
    _atomic_write(cache, lambda fh: np.savez(fh, embeddings=emb, ok=ok))
    return emb, ok, cache, False


def _class_of(path: Path, root: Path) -> str | None:
    """The class folder of a gallery image: its parent folder's name, ``None`` directly in ``root``."""
    parent = path.parent
    if parent.resolve() == root.resolve():
        return None
    return parent.name or None


def retrieve(
    model_path: Path,
    gallery: Path,
    queries: list[Path],
    top: int = 10,
    cache_dir: Path | None = None,
    quiet: bool = False,
) -> dict[str, Any]:
    """Rank ``gallery``'s images for each query image; the result dict printed by the command."""
    from .artifacts import load_model, model_file, rebuild_encoder
    from .carried_detector import DetectorState
    from .retrieval import knn

    if top < 1:
        raise UserError(f"--top must be at least 1, got {top}.")
    if not queries:
        raise UserError("Give at least one query image with --query IMAGE.")
    for q in queries:
        if not q.is_file():
            raise UserError(f"Query image {q} does not exist.")
    if not gallery.is_dir():
        raise UserError(f"Gallery folder {gallery} does not exist.")
    model_path = model_file(model_path)
    model = load_model(model_path)
    if model["pipeline"] == "precomputed":
        raise UserError(
            f"The model {model_path} was trained on precomputed features ({model['config']['dataset']}); "
            "retrieve needs a model trained on images."
        )
    module = rebuild_encoder(model)
    with tempfile.TemporaryDirectory() as tmp:
        q_emb, q_ok = embed_files(model, module, list(queries), Path(tmp), Path(tmp), quiet=True)
    bad = [str(q) for q, good in zip(queries, q_ok, strict=True) if not good]
    if bad:
        raise UserError(f"Query image {bad[0]} cannot be read as an image.")
    paths = scan_images(gallery)
    if not paths:
        raise UserError(f"Gallery folder {gallery} holds no image files.")
    g_emb, g_ok, cache, cached = gallery_embeddings(
        model, Path(model_path), module, gallery, paths, cache_dir, quiet
    )
    if not quiet:
        state = "read from" if cached else "written to"
        print(f"gallery embeddings of {int(g_ok.sum())} image(s) {state} {cache}", file=sys.stderr)
    skipped = [_relative(p, gallery) for p, good in zip(paths, g_ok, strict=True) if not good]
    if skipped and not quiet:
        print(
            f"warning: skipped {len(skipped)} unreadable gallery file(s), e.g. {skipped[0]}", file=sys.stderr
        )
    keep = np.flatnonzero(g_ok)
    k = min(int(top), len(keep))
    dist, idx = knn(q_emb, g_emb[keep], k)
    flags = None
    if model.get("detector"):
        flags = DetectorState.from_dict(model["detector"]).flags(q_emb, g_emb[keep])
    out: dict[str, Any] = {
        "model": str(model_path),
        "method": model["config"]["method"],
        "trained_on": f"{model['config']['dataset']} {model['config']['setting']} "
        f"{model['config']['query']}->{model['config']['gallery']} seed {model['config']['seed']}",
        "gallery": str(gallery),
        "gallery_size": int(len(keep)),
        "gallery_cache": str(cache),
        "detector": None if flags is None else model["detector"]["kind"],
        "queries": [],
    }
    classes = {c for p in paths if (c := _class_of(p, gallery)) is not None}
    for i, q in enumerate(queries):
        out["queries"].append(
            {
                "query": str(q),
                "query_class": q.parent.name if q.parent.name in classes else None,
                "private": None if flags is None else bool(flags[i]),
                "results": [
                    {
                        "rank": r + 1,
                        "path": _relative(paths[keep[j]], gallery),
                        "class": _class_of(paths[keep[j]], gallery),
                        "distance": round(float(dist[i, r]), 6),
                    }
                    for r, j in enumerate(idx[i])
                ],
            }
        )
    return out


def plot_retrieve(result: dict[str, Any]):
    """The ``--plot`` figure: one row per query image with its top items."""
    from .plots.common import CORRECT, NEUTRAL, QUERY, WRONG, load_thumbnail, shorten
    from .plots.retrievals import GridRow, Tile, draw_grid

    gallery = Path(result["gallery"])
    rows = []
    for q in result["queries"]:
        qc = q["query_class"]
        status = "" if q["private"] is None else ("\nflagged private" if q["private"] else "\nshared")
        caption = shorten(qc or Path(q["query"]).name) + status
        tiles = []
        for r in q["results"]:
            frame = NEUTRAL if qc is None or r["class"] is None else (CORRECT if r["class"] == qc else WRONG)
            label = r["class"] or Path(r["path"]).name
            tiles.append(Tile(load_thumbnail(gallery / r["path"]), label, shorten(label), frame))
        rows.append(GridRow(Tile(load_thumbnail(Path(q["query"])), qc or "", caption, QUERY), tiles))
    title = f"retrieve · {result['method']} trained on {result['trained_on']}"
    note = f"gallery {gallery} ({result['gallery_size']} images) · green: same class folder · red: another"
    return draw_grid(rows, title, note)


def _print(result: dict[str, Any]) -> None:
    for q in result["queries"]:
        flag = ""
        if q["private"] is not None:
            flag = "  [flagged private: no match in this gallery]" if q["private"] else "  [shared]"
        print(f"{q['query']}{flag}")
        for r in q["results"]:
            cls = f"  ({r['class']})" if r["class"] else ""
            print(f"  {r['rank']:>3}. {r['distance']:.4f}  {r['path']}{cls}")


def retrieve_command(
    model: Annotated[
        Path,
        typer.Option("--model", metavar="FILE", help="Model file (<hash>.model.pt) or its record (.json)."),
    ],
    gallery: Annotated[
        Path,
        typer.Option("--gallery", metavar="DIR", help="Folder of gallery images (searched recursively)."),
    ],
    query: Annotated[
        list[Path],
        typer.Option("--query", metavar="IMAGE", help="Query image; repeat, or list more after it."),
    ],
    more: Annotated[
        list[Path] | None, typer.Argument(metavar="IMAGE", help="More query images.", show_default=False)
    ] = None,
    top: Annotated[int, typer.Option(metavar="N", help="Gallery items per query.")] = 10,
    plot: Annotated[bool, typer.Option("--plot", help="Also draw the retrievals (see -o).")] = False,
    output: Annotated[
        Path | None,
        typer.Option("--output", "-o", metavar="FILE", help="Image file of --plot (.png, .pdf, .svg)."),
    ] = None,
    cache_dir: Annotated[
        Path | None, typer.Option(metavar="DIR", help="Cache for gallery embeddings and features.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress output.")] = False,
) -> None:
    """Search a gallery folder with a model saved by `run --save-model` (faiss, cached gallery embedding)."""
    from .plots.common import output_path, save_figure

    out_path = output_path(output, "retrieve.png") if plot else None
    result = retrieve(
        model, gallery, list(query) + list(more or []), top=top, cache_dir=cache_dir, quiet=quiet
    )
    if as_json:
        print(json.dumps(result, indent=2, ensure_ascii=False))
    else:
        _print(result)
    if out_path is not None:
        save_figure(plot_retrieve(result), out_path)
        if not quiet:
            print(f"wrote {out_path}", file=sys.stderr)


__all__ = ["embed_files", "gallery_embeddings", "retrieve", "retrieve_command", "scan_images"]

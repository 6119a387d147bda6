"""Saved outputs of a run (opt-in): embeddings (``run --save-embeddings``) and model (``run --save-model``).

Both are written beside the record, before it, atomically (temporary file, fsync, rename), and referenced from
the record's ``artifacts`` block with their sha256::

    "artifacts": {"embeddings": {"file": "<hash>.npz", "sha256": "...", "bytes": 123},
                  "model": {"file": "<hash>.model.pt", "sha256": "...", "bytes": 456, "encoder": "encoder",
                            "detector": "generic"}}

They change neither the config (so not the record's hash) nor any number: they are written after the
metrics, from the arrays the metrics were computed on. A finished run that lacks an asked-for output is run
again (same numbers, same seed) to produce it.

**Embeddings** ``<hash>.npz`` (``numpy.load(..., allow_pickle=False)``):

=====================================  =====================================================================
``query_embeddings``                   ``[N_q, D]`` float32, the ``embed`` output the metrics were computed on
``gallery_embeddings``                 ``[N_g, D]`` float32
``query_ids``, ``gallery_ids``         ``[N]`` str: the path relative to the dataset folder (real images) or
                                       ``"<domain>/<row>"``, the row in the loaded domain (digits, npz)
``query_files``, ``gallery_files``     ``[N]`` str absolute image paths (real images only)
``query_labels``, ``gallery_labels``   ``[N]`` int64 indices into ``class_names`` (evaluation side only)
``class_names``                        ``[C]`` str, the dataset's classes
``query_private``                      ``[N_q]`` bool, the truth: the query's class is not in the gallery
``private_pred``                       ``[N_q]`` bool, the detector's flags (open-set runs only)
``meta``                               JSON text: config, config hash, dataset kind, input kind, pair
=====================================  =====================================================================

**Model** ``<hash>.model.pt`` (``torch.load(..., weights_only=True)``): a dict with ``format``
(:data:`MODEL_FORMAT`), ``config``, ``config_hash``, ``pipeline`` (how an image file becomes the encoder's
input: ``pixels`` -- grayscale/RGB resized to ``input_shape`` in [0, 1], the embedded digits; ``features`` --
the frozen ``backbone``'s clean features; ``finetune`` -- the backbone's evaluation crop), ``input_kind``,
``input_shape``, ``backbone``, ``encoder`` (``type`` ``encoder`` = the method's trainable encoder rebuilt by
:func:`u2cdr_bench.nets.make_encoder_factory`, or ``identity`` = the input itself, e.g. ``pretrained``;
``normalize``; ``state_dict``), ``detector`` (a :class:`~u2cdr_bench.carried_detector.DetectorState` dict,
open-set runs, or ``None``) and ``query_classes`` / ``gallery_classes``.
Before it is written the rebuilt model is checked against the run: its output on the first 64 query inputs
must equal the run's embeddings (atol 1e-4); a method whose ``embed`` is something else gets no model file
(a warning, and ``"model": null`` with the reason in the record).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

MODEL_FORMAT = "u2cdr-bench-model/1"
EMBEDDINGS_SUFFIX = ".npz"
MODEL_SUFFIX = ".model.pt"
_CHECK_ROWS = 64
_CHECK_ATOL = 1e-4


@dataclass(frozen=True)
class SaveOptions:
    """Which outputs a run writes besides its record."""

    embeddings: bool = False
    model: bool = False

    @property
    def any(self) -> bool:
        return self.embeddings or self.model


# ------------------------------------------------------------------------------------------------ files
def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _atomic_write(final: Path, write: Callable[[Any], None]) -> dict[str, Any]:
    """Write ``final`` through ``write(fileobj)`` atomically; return ``{"file", "sha256", "bytes"}``."""
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=final.parent, prefix=f".{final.name}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return {"file": final.name, "sha256": sha256_file(final), "bytes": final.stat().st_size}


def _str_array(items: Any) -> np.ndarray:
    return np.asarray([str(s) for s in items], dtype=str)


# ------------------------------------------------------------------------------------------------ saving
def save_outputs(
    save: SaveOptions,
    out_dir: Path,
    record: dict[str, Any],
    *,
    method: Any,
    ctx: Any,
    spec: Any,
    query: Any,
    gallery: Any,
    qf: np.ndarray,
    gf: np.ndarray,
    private_pred: np.ndarray | None,
) -> dict[str, Any]:
    """Write the asked-for outputs of one finished run; returns the record's ``artifacts`` block."""
    out: dict[str, Any] = {}
    stem = record["config_hash"]
    if save.embeddings:
        out["embeddings"] = save_embeddings(
            Path(out_dir) / f"{stem}{EMBEDDINGS_SUFFIX}", record, spec, query, gallery, qf, gf, private_pred
        )
    if save.model:
        out["model"] = save_model(
            Path(out_dir) / f"{stem}{MODEL_SUFFIX}", record, method, ctx, spec, query, qf, gf
        )
        if out["model"] is None:
            out["model_note"] = (
                f"method {record['config']['method']}'s embeddings are not its encoder's output, so no "
                "model was saved"
            )
            print(f"warning: --save-model: {out['model_note']}.", file=sys.stderr)
    return out


def save_embeddings(
    path: Path,
    record: dict[str, Any],
    spec: Any,
    query: Any,
    gallery: Any,
    qf: np.ndarray,
    gf: np.ndarray,
    private_pred: np.ndarray | None,
) -> dict[str, Any]:
    """Write ``<hash>.npz`` (the layout of the module docstring); returns its reference."""
    gallery_labels = set(np.unique(gallery.labels).tolist())
    arrays: dict[str, np.ndarray] = {
        "query_embeddings": np.ascontiguousarray(qf, dtype=np.float32),
        "gallery_embeddings": np.ascontiguousarray(gf, dtype=np.float32),
        "query_ids": _str_array(query.sample_ids()),
        "gallery_ids": _str_array(gallery.sample_ids()),
        "query_labels": np.asarray(query.labels, dtype=np.int64),
        "gallery_labels": np.asarray(gallery.labels, dtype=np.int64),
        "class_names": _str_array(query.class_names),
        "query_private": np.asarray([int(y) not in gallery_labels for y in query.labels], dtype=bool),
    }
    if query.files is not None and gallery.files is not None:
        arrays["query_files"] = _str_array(query.files)
        arrays["gallery_files"] = _str_array(gallery.files)
    if private_pred is not None:
        arrays["private_pred"] = np.asarray(private_pred, dtype=bool)
    meta = {
        "config_hash": record["config_hash"],
        "config": record["config"],
        "task": record["task"],
        "dataset_kind": spec.kind,
        "input_kind": query.kind,
        "query_domain": query.domain,
        "gallery_domain": gallery.domain,
    }
    arrays["meta"] = np.asarray(json.dumps(meta, ensure_ascii=False))
    return _atomic_write(path, lambda fh: np.savez(fh, **arrays))


def _pipeline(spec: Any, cfg: dict[str, Any]) -> str:
    if spec.kind == "image":
        return "pixels"
    if spec.kind == "features":
        return "precomputed"
    return "finetune" if cfg.get("mode") == "finetune" else "features"


def _encoder_candidate(method: Any, ctx: Any) -> tuple[str, nn.Module | None]:
    enc = getattr(method, "encoder", None)
    if isinstance(enc, nn.Module):
        rebuilt = ctx.encoder_factory()
        try:
            rebuilt.load_state_dict(enc.state_dict())
        except (RuntimeError, KeyError):
            return "mismatch", None
        return "encoder", rebuilt.eval()
    return "identity", None


def embed_inputs(model: dict[str, Any], module: nn.Module | None, x: torch.Tensor) -> np.ndarray:
    """``[N, D]`` float32 embeddings of encoder inputs ``x`` by a saved model (``module`` rebuilt from it)."""
    enc = model["encoder"]
    with torch.inference_mode():
        if enc["type"] == "identity" or module is None:
            f = x.reshape(len(x), -1).float()
        else:
            f = torch.cat([module(x[s : s + 256]) for s in range(0, len(x), 256)]) if len(x) else x
        if enc.get("normalize", True):
            f = F.normalize(f, dim=1)
    return f.numpy().astype(np.float32, copy=True)


def save_model(
    path: Path,
    record: dict[str, Any],
    method: Any,
    ctx: Any,
    spec: Any,
    query: Any,
    qf: np.ndarray,
    gf: np.ndarray,
) -> dict[str, Any] | None:
    """Write ``<hash>.model.pt`` when the rebuilt model reproduces the run's embeddings; else ``None``."""
    cfg = record["config"]
    kind, module = _encoder_candidate(method, ctx)
    if kind == "mismatch":
        return None
    model: dict[str, Any] = {
        "format": MODEL_FORMAT,
        "config": cfg,
        "config_hash": record["config_hash"],
        "pipeline": _pipeline(spec, cfg),
        "input_kind": query.kind,
        "input_shape": [int(s) for s in query.x.shape[1:]],
        "backbone": cfg.get("backbone"),
        "encoder": {"type": kind, "normalize": True, "state_dict": {}},
        "detector": None,
        "query_classes": list(record["protocol"]["query_classes"]),
        "gallery_classes": list(record["protocol"]["gallery_classes"]),
    }
    rows = query.x[:_CHECK_ROWS]
    ok = False
    for normalize in (True, False) if kind == "encoder" else (False, True):
        model["encoder"]["normalize"] = normalize
        got = embed_inputs(model, module, rows)
        if got.shape == qf[: len(rows)].shape and np.allclose(got, qf[: len(rows)], atol=_CHECK_ATOL):
            ok = True
            break
    if not ok:
        return None
    if module is not None:
        model["encoder"]["state_dict"] = {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
    if cfg["setting"] == "open-set":
        from .carried_detector import fit_state

        state = fit_state(method, qf, gf)
        model["detector"] = None if state is None else state.to_dict()
    ref = _atomic_write(path, lambda fh: torch.save(model, fh))
    ref["encoder"] = kind
    ref["detector"] = None if model["detector"] is None else model["detector"]["kind"]
    return ref


# ------------------------------------------------------------------------------------------------ loading
def has_outputs(record: dict[str, Any], out_dir: Path, save: SaveOptions) -> bool:
    """Whether the asked-for outputs of ``record`` exist in ``out_dir`` with their recorded checksums."""
    arts = record.get("artifacts") or {}
    wanted = [k for k, on in (("embeddings", save.embeddings), ("model", save.model)) if on]
    for key in wanted:
        ref = arts.get(key)
        if key == "model" and ref is None and "model_note" in arts:
            continue  # the method cannot export a model: re-running would not change that
        if not isinstance(ref, dict):
            return False
        path = Path(out_dir) / str(ref.get("file", ""))
        if not path.is_file() or sha256_file(path) != ref.get("sha256"):
            return False
    return True


def artifact_path(record: dict[str, Any], record_file: Path, key: str) -> Path:
    """The verified path of output ``key`` (``embeddings`` or ``model``) of the record in ``record_file``."""
    arts = record.get("artifacts") or {}
    ref = arts.get(key)
    flag = "--save-embeddings" if key == "embeddings" else "--save-model"
    c = record["config"]
    if not isinstance(ref, dict):
        why = f" ({arts['model_note']})" if key == "model" and "model_note" in arts else ""
        extra = "".join(f" --hp {k}={v}" for k, v in sorted((c.get("hparams") or {}).items()))
        if c.get("split_seed", 0):
            extra += f" --split-seed {c['split_seed']}"
        if c.get("epochs_scale", 1.0) != 1.0:
            extra += f" --epochs-scale {c['epochs_scale']}"
        raise UserError(
            f"Record {record_file} has no saved {key}{why}; re-run it with `u2cdr-bench run --method "
            f"{c['method']} --dataset {c['dataset']} --protocol {c['setting']} --pairs "
            f"{c['query']}:{c['gallery']} --seeds {c['seed']}{extra} --out {Path(record_file).parent} "
            f"--force {flag}` (and the --data-dir, --backbone or --feature-views it was run with)."
        )
    path = Path(record_file).parent / str(ref["file"])
    if not path.is_file():
        raise UserError(f"The {key} file {path} of record {record_file} is missing; re-run with {flag}.")
    if sha256_file(path) != ref.get("sha256"):
        raise UserError(
            f"The {key} file {path} does not match the checksum in record {record_file}; re-run with {flag}."
        )
    return path


@dataclass(frozen=True)
class SavedEmbeddings:
    """The contents of a ``<hash>.npz`` (see the module docstring) and the record it belongs to."""

    record: dict[str, Any]
    path: Path
    query: np.ndarray
    gallery: np.ndarray
    query_ids: np.ndarray
    gallery_ids: np.ndarray
    query_labels: np.ndarray
    gallery_labels: np.ndarray
    class_names: tuple[str, ...]
    query_private: np.ndarray
    private_pred: np.ndarray | None
    query_files: np.ndarray | None
    gallery_files: np.ndarray | None
    meta: dict[str, Any]


def load_embeddings(record_file: Path) -> SavedEmbeddings:
    """Read a record and its saved embeddings; UserError when either is missing or does not match."""
    from .records import read_record

    record_file = Path(record_file)
    if not record_file.is_file():
        raise UserError(
            f"Record {record_file} does not exist; give the path of a run record (runs/<hash>.json)."
        )
    record = read_record(record_file)
    path = artifact_path(record, record_file, "embeddings")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (OSError, ValueError) as err:
        raise UserError(f"The embeddings file {path} cannot be read ({err}).") from None
    return SavedEmbeddings(
        record=record,
        path=path,
        query=data["query_embeddings"],
        gallery=data["gallery_embeddings"],
        query_ids=data["query_ids"],
        gallery_ids=data["gallery_ids"],
        query_labels=data["query_labels"],
        gallery_labels=data["gallery_labels"],
        class_names=tuple(str(c) for c in data["class_names"]),
        query_private=data["query_private"],
        private_pred=data.get("private_pred"),
        query_files=data.get("query_files"),
        gallery_files=data.get("gallery_files"),
        meta=json.loads(str(data["meta"])),
    )


def model_file(path: Path) -> Path:
    """``path`` itself, or for a record ``.json`` the verified path of its saved model."""
    path = Path(path)
    if path.suffix != ".json":
        return path
    from .records import read_record

    if not path.is_file():
        raise UserError(f"Record {path} does not exist.")
    return artifact_path(read_record(path), path, "model")


def load_model(path: Path) -> dict[str, Any]:
    """Read a ``.model.pt`` file (or the model of a record ``.json``); UserError for anything else."""
    path = model_file(path)
    if not path.is_file():
        raise UserError(f"Model file {path} does not exist; write one with `u2cdr-bench run --save-model`.")
    try:
        model = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise UserError(f"{path} is not a u2cdr-bench model file ({type(err).__name__}).") from None
    if not isinstance(model, dict) or model.get("format") != MODEL_FORMAT:
        raise UserError(f"{path} is not a u2cdr-bench model file (format {MODEL_FORMAT} expected).")
    return model


def rebuild_encoder(model: dict[str, Any]) -> nn.Module | None:
    """The saved encoder in eval mode (``None`` for an identity model)."""
    if model["encoder"]["type"] != "encoder":
        return None
    from .nets import make_encoder_factory

    backbone_factory = None
    if model["pipeline"] == "finetune":
        from .backbones import backbone_factory as make_backbone

        backbone_factory = make_backbone(model["backbone"])
    module = make_encoder_factory(
        model["input_kind"], tuple(model["input_shape"]), backbone_factory=backbone_factory
    )()
    module.load_state_dict(model["encoder"]["state_dict"])
    return module.eval()


__all__ = [
    "MODEL_FORMAT",
    "SaveOptions",
    "SavedEmbeddings",
    "artifact_path",
    "embed_inputs",
    "has_outputs",
    "load_embeddings",
    "load_model",
    "model_file",
    "rebuild_encoder",
    "save_outputs",
    "sha256_file",
]

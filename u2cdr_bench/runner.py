"""Run one task end to end and write its record (DESIGN.md "The path of one run").

    RunConfig -> protocol class lists -> two DomainSamples -> Method.fit on the label-free views
              -> embed -> (open-set) detect_private -> metrics -> record JSON (atomic, named by config hash)

Labels are used only here, after training, to score the retrieval. Model selection: none — the model after
the fixed schedule's last epoch is evaluated (DESIGN.md invariant).
"""

from __future__ import annotations

import math
import os
import platform
import subprocess
import sys
import time
import warnings
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import torch

from . import __version__
from .artifacts import SaveOptions, has_outputs, save_outputs
from .data.registry import DataOptions, DatasetSpec, get_dataset
from .data.types import DomainSamples
from .errors import UserError
from .fingerprint import code_info, run_roots
from .methods import get_method
from .methods.base import FitContext, ProgressFn
from .metrics import evaluate
from .nets import make_encoder_factory
from .outdir import config_lock, write_or_rescue
from .protocols import get_protocol
from .records import config_hash, is_done, read_record, record_path
from .reproducibility import ReproError, apply_runtime, machine_info


@dataclass(frozen=True)
class RunConfig:
    """Everything that determines a run's numbers (its hash names the record)."""

    method: str
    dataset: str
    setting: str
    query: str
    gallery: str
    seed: int
    split_seed: int = 0
    epochs_scale: float = 1.0
    mode: str = "image"
    backbone: str = "small-cnn"
    hparams: dict[str, Any] = field(default_factory=dict)
    feature_views: str | None = None

    def as_dict(self) -> dict[str, Any]:
        """The config as a dict; ``feature_views`` only when set (features data without stored views), so
        the hashes of every other run are those of the records made before the key existed."""
        out = asdict(self)
        if out["feature_views"] is None:
            del out["feature_views"]
        return out


def input_mode(spec: DatasetSpec, options: DataOptions) -> tuple[str, str, str]:
    """``(mode, backbone, profile)`` recorded for a dataset under the given options."""
    if spec.kind == "image":
        return "image", "small-cnn", spec.profile
    if spec.kind == "features":
        return "features", "precomputed", "features"
    if options.mode == "finetune":
        return "finetune", options.backbone, "paper"
    return "features", options.backbone, "features"


def _parse_pairs(spec: DatasetSpec, pairs: str | None) -> list[tuple[str, str]]:
    """``spec.parse_pairs`` plus two checks it leaves to the caller: an empty ``--pairs`` (not "all
    pairs") and a pair given twice (by name or abbreviation) are user errors."""
    if pairs is not None and not pairs.strip():
        a, b = spec.domain_names[:2]
        raise UserError(
            f"--pairs is empty; give QUERY:GALLERY pairs, e.g. '{a}:{b}', or leave it out for all."
        )
    out = spec.parse_pairs(pairs)
    for i, pair in enumerate(out):
        if pair in out[:i]:
            raise UserError(f"Pair {pair[0]}:{pair[1]} is given twice in --pairs.")
    return out


def _check_backbone_options(spec: DatasetSpec, options: DataOptions) -> None:
    """The backbone name is checked for every dataset (unknown: UserError listing the valid ones); where the
    dataset does not use it (its own network, or features already computed) a non-default ``--backbone`` or
    ``--mode`` gets one warning that it is ignored."""
    from .backbones import parse_backbone
    from .data.registry import DataOptions as _Defaults

    parse_backbone(options.backbone)
    if spec.kind not in ("image", "features"):
        return
    uses = "its own small CNN" if spec.kind == "image" else "features computed beforehand"
    defaults = _Defaults()
    for flag, value, default in (
        ("--backbone", options.backbone, defaults.backbone),
        ("--mode", options.mode, defaults.mode),
    ):
        if value != default:
            warnings.warn(f"{flag} {value} is ignored by dataset {spec.name} ({uses}).", stacklevel=2)
    if spec.kind == "image" and options.feature_views is not None:
        warnings.warn(
            f"--feature-views {options.feature_views} is ignored by dataset {spec.name} (images, augmented "
            "on the fly; feature-space views are for features without stored views).",
            stacklevel=2,
        )


def plan(
    method: str,
    dataset: str,
    setting: str,
    pairs: str | None,
    seeds: list[int],
    options: DataOptions,
    split_seed: int = 0,
    epochs_scale: float = 1.0,
    hparams: dict[str, Any] | None = None,
) -> list[RunConfig]:
    """Validate everything and expand (pairs × seeds) into run configs, before any work starts.

    Checked: the names (dataset, method, setting, pairs), the seeds (whole numbers in [0, 2^32), no
    repeats), the split seed (same range), ``epochs_scale`` (finite, > 0) and every hyper-parameter
    override against the method's declared space (:meth:`Method.resolve_hparams`), and the feature-view
    generator (``options.feature_views``), which a config carries when its method reads augmented views and
    a domain of its pair has none stored (:mod:`u2cdr_bench.data.feature_views`). Raises UserError.
    """
    check_seeds(seeds)
    check_seed(split_seed, "--split-seed")
    if isinstance(epochs_scale, bool) or not math.isfinite(epochs_scale) or epochs_scale <= 0:
        raise UserError(f"--epochs-scale must be positive and finite, got {epochs_scale}.")
    spec = get_dataset(dataset)
    method_cls = get_method(method)
    get_protocol(spec, setting, split_seed)
    mode, backbone, profile = input_mode(spec, options)
    from .data import feature_views as fv

    chosen = options.feature_views
    generator = fv.check_feature_views(fv.DEFAULT_FEATURE_VIEWS if chosen is None else chosen)
    _check_backbone_options(spec, options)
    method_cls.hparams_for(profile, spec.method_profile, hparams or {})
    from .protocols import settings

    setting = settings().canonical(setting)

    def views_for(q: str, g: str) -> str | None:
        if not fv.needs_views(tuple(method_cls.views)):
            return None
        stored = all(fv.has_stored_views(spec, d, options) for d in (q, g))
        return None if stored else generator

    pair_list = _parse_pairs(spec, pairs)
    return [
        RunConfig(
            method=method_cls.name,
            dataset=spec.name if ":" not in dataset else dataset,
            setting=setting,
            query=q,
            gallery=g,
            seed=int(s),
            split_seed=split_seed,
            epochs_scale=float(epochs_scale),
            mode=mode,
            backbone=backbone,
            hparams=dict(hparams or {}),
            feature_views=views_for(q, g),
        )
        for (q, g) in pair_list
        for s in seeds
    ]


#: Seeds are whole numbers in ``[0, SEED_LIMIT)``: numpy's generators take no negative seed and the legacy
#: global numpy seed is 32-bit (``training.seed_everything``).
SEED_LIMIT = 2**32


def check_seed(value: int, option: str = "--seeds") -> None:
    """UserError unless ``value`` is an integer in ``[0, SEED_LIMIT)``."""
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < SEED_LIMIT:
        raise UserError(f"{option} takes whole numbers from 0 to {SEED_LIMIT - 1}, got {value}.")


def check_seeds(seeds: list[int]) -> None:
    """Every seed valid (:func:`check_seed`), at least one, none repeated."""
    if not seeds:
        raise UserError("--seeds is empty; give e.g. --seeds 2024,2025,2026.")
    for s in seeds:
        check_seed(s)
    repeated = sorted({s for s in seeds if seeds.count(s) > 1})
    if repeated:
        raise UserError(f"--seeds lists {', '.join(map(str, repeated))} more than once; give each seed once.")


def compute_threads() -> int:
    """Threads for torch and faiss (``$U2CDR_THREADS``, default 1).

    One thread by default: results then do not depend on the machine's core count (reductions are
    ordered the same way everywhere), and parallel grids scale by running several runs at once.
    """
    try:
        return max(1, int(os.environ.get("U2CDR_THREADS", "1")))
    except ValueError:
        raise UserError(
            f"U2CDR_THREADS must be a positive integer, got '{os.environ['U2CDR_THREADS']}'."
        ) from None


def set_threads(n: int) -> None:
    import faiss

    torch.set_num_threads(n)
    faiss.omp_set_num_threads(n)


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None if out.returncode == 0 else None
    except (OSError, subprocess.SubprocessError):
        return None


def environment() -> dict[str, Any]:
    """A record's ``env`` block: versions, platform, git commit and :func:`machine_info` (``machine``)."""
    import faiss

    return {
        "u2cdr_bench": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "numpy": np.__version__,
        "faiss": getattr(faiss, "__version__", None),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
        "machine": machine_info(),
    }


class Runner:
    """Runs configs, caching loaded domains across runs of one invocation.

    A config is *done* when ``out_dir`` holds a valid record of it made by the same code (its
    ``code.fingerprint``, :mod:`u2cdr_bench.fingerprint`) and, when outputs are asked for (``save``), those
    outputs too; a record of other code is *stale* and re-run unless ``reuse_stale``; ``force`` re-runs
    everything.
    """

    def __init__(
        self,
        options: DataOptions,
        out_dir: Path,
        force: bool = False,
        reuse_stale: bool = False,
        save: SaveOptions | None = None,
    ) -> None:
        self.options = options
        self.out_dir = Path(out_dir)
        self.force = force
        self.reuse_stale = reuse_stale
        self.written: list[Path] = []
        self.save = save or SaveOptions()  # --save-embeddings / --save-model (u2cdr_bench.artifacts)
        #: Shows the first views warning of this runner (issue 18; ``u2cdr-bench run`` prints it on stderr).
        self.on_views_warning: Callable[[str], None] | None = None
        self._views_warned = False
        self._domains: dict[tuple[str, str, tuple[str, ...] | None], DomainSamples] = {}

    def code(self, cfg: RunConfig) -> dict[str, Any]:
        """The code fingerprint of ``cfg``'s run: ``{"fingerprint", "modules"}``."""
        spec = get_dataset(cfg.dataset)
        roots = run_roots(get_method(cfg.method), spec.loader.__module__, spec.kind == "real")
        if cfg.feature_views is not None:
            roots += ("u2cdr_bench.data.feature_views",)
        return code_info(roots)

    def status(self, cfg: RunConfig) -> tuple[str, str]:
        """``(state, reason)``: ``missing``, ``done`` or ``stale`` (a record of other code), and why."""
        if self.force:
            return "missing", "--force"
        if not is_done(self.out_dir, cfg.as_dict()):
            return "missing", ""
        rec = self.existing(cfg)
        have = (rec.get("code") or {}).get("fingerprint")
        want = self.code(cfg)["fingerprint"]
        if have == want:
            return "done", ""
        reason = (
            "its record predates code fingerprints"
            if have is None
            else f"its record was made by other code (fingerprint {have}, this code {want})"
        )
        return ("done" if self.reuse_stale else "stale"), reason

    def is_done(self, cfg: RunConfig) -> bool:
        """A valid record of this code exists (and, when outputs are asked for, they exist too)."""
        if self.status(cfg)[0] != "done":
            return False
        return not self.save.any or has_outputs(self.existing(cfg), self.out_dir, self.save)

    def existing(self, cfg: RunConfig) -> dict:
        return read_record(record_path(self.out_dir, cfg.as_dict()))

    def lock(self, cfg: RunConfig, wait: bool) -> AbstractContextManager[bool]:
        """The per-config lock in ``out_dir`` (:func:`outdir.config_lock`); yields whether it is held."""
        return config_lock(self.out_dir, config_hash(cfg.as_dict()), wait)

    def preflight(self, configs: list[RunConfig]) -> None:
        """Check before any work that every domain the configs use can be found (real datasets)."""
        for dataset in dict.fromkeys(c.dataset for c in configs):
            spec = get_dataset(dataset)
            if spec.kind != "real" or "manifest" not in spec.extra:
                continue
            from .data.real import check_domains

            domains = [d for c in configs if c.dataset == dataset for d in (c.query, c.gallery)]
            check_domains(spec, list(dict.fromkeys(domains)), self.options)

    def views_warning_once(self, text: str | None) -> None:
        """Hand ``text`` to :attr:`on_views_warning` if it is the first views warning of this runner."""
        if text and not self._views_warned and self.on_views_warning is not None:
            self._views_warned = True
            self.on_views_warning(text)

    def _domain(self, spec: DatasetSpec, name: str, views: tuple[str, ...] | None) -> DomainSamples:
        key = (spec.name, name, views)
        if key not in self._domains:
            self._domains[key] = spec.load(name, replace(self.options, views=views))
        return self._domains[key]

    def run(self, cfg: RunConfig, progress: ProgressFn | None = None) -> dict:
        """Run one config and write its record; returns the record."""
        t0 = time.perf_counter()
        try:
            apply_runtime()
        except ReproError as err:
            raise UserError(str(err)) from None
        threads = compute_threads()
        set_threads(threads)
        spec = get_dataset(cfg.dataset)
        protocol = get_protocol(spec, cfg.setting, cfg.split_seed)
        method_cls = get_method(cfg.method)
        mode, backbone, profile = input_mode(spec, self.options)
        views = tuple(method_cls.views)
        query = self._domain(spec, cfg.query, views).select_classes(protocol.query_classes)
        gallery = self._domain(spec, cfg.gallery, views).select_classes(protocol.gallery_classes)
        if len(query) == 0 or len(gallery) == 0:
            raise UserError(
                f"{cfg.dataset} {cfg.query}->{cfg.gallery} has no images for the classes of {cfg.setting}."
            )
        from .data import feature_views as fv

        if cfg.feature_views is not None:  # features without stored views (issue 18)
            query = fv.attach_feature_views(query, cfg.feature_views)
            gallery = fv.attach_feature_views(gallery, cfg.feature_views)
        seen = fv.views_seen(views, query, gallery)
        views_note = {"views_seen": seen} if seen else {}
        warning = fv.views_warning(method_cls.name, cfg.dataset, seen)
        if warning:
            views_note["views_warning"] = warning
            self.views_warning_once(warning)
        t_load = time.perf_counter() - t0

        input_shape = tuple(query.x.shape[1:])
        if mode == "finetune":  # backbone + head; the checkpoint's own projection head when it has one
            from .backbones import finetune_encoder_factory

            encoder_factory: Callable = finetune_encoder_factory(backbone)
        else:
            encoder_factory = make_encoder_factory(query.kind, input_shape)
        num_classes = None
        if method_cls.needs_num_classes:
            num_classes = (len(protocol.query_classes), len(protocol.gallery_classes))
        ctx = FitContext(
            seed=cfg.seed,
            encoder_factory=encoder_factory,
            input_kind=query.kind,
            input_shape=input_shape,
            epochs_scale=cfg.epochs_scale,
            profile=profile,
            method_profile=spec.method_profile,
            num_classes=num_classes,
            progress=progress or (lambda *a: None),
        )
        torch.manual_seed(cfg.seed)
        method = method_cls(ctx, cfg.hparams)
        ua, ub = query.unlabeled(), gallery.unlabeled()
        t1 = time.perf_counter()
        method.fit(ua, ub)
        t2 = time.perf_counter()
        qf, gf = method.embed(ua), method.embed(ub)
        t3 = time.perf_counter()
        private_pred = method.detect_private(qf, gf) if cfg.setting == "open-set" else None
        metrics = evaluate(qf, query.labels, gf, gallery.labels, private_pred=private_pred)
        t4 = time.perf_counter()
        n_private = int((~np.isin(query.labels, np.unique(gallery.labels))).sum())
        record = {
            "schema": 1,
            "config_hash": config_hash(cfg.as_dict()),
            "config": cfg.as_dict(),
            "task": {
                "query_abbrev": spec.abbrev(cfg.query),
                "gallery_abbrev": spec.abbrev(cfg.gallery),
                "pair": f"{spec.abbrev(cfg.query)}→{spec.abbrev(cfg.gallery)}",
                "profile": profile,
            },
            "protocol": {
                "hash": protocol.hash,
                "query_classes": list(protocol.query_classes),
                "gallery_classes": list(protocol.gallery_classes),
                "shared_classes": list(protocol.shared_classes),
            },
            "metrics": {
                k: (None if v is None or not np.isfinite(v) else round(float(v), 4))
                for k, v in metrics.items()
            },
            "counts": {
                "n_query": len(query),
                "n_gallery": len(gallery),
                "n_query_private": n_private,
                "feature_dim": int(qf.shape[1]),
            },
            "method_info": {
                "num_classes_given": list(num_classes) if num_classes else None,
                **_jsonable(method.info),
                **views_note,
            },
            "data_info": {"query": _jsonable(query.info), "gallery": _jsonable(gallery.info)},
            "timings": {
                "load_s": round(t_load, 3),
                "fit_s": round(t2 - t1, 3),
                "embed_s": round(t3 - t2, 3),
                "eval_s": round(t4 - t3, 3),
                "total_s": round(t4 - t0, 3),
                "threads": threads,
            },
            "env": environment(),
            "code": self.code(cfg),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        }
        if self.save.any:  # written before the record, after the metrics: no number changes
            record["artifacts"] = save_outputs(
                self.save,
                self.out_dir,
                record,
                method=method,
                ctx=ctx,
                spec=spec,
                query=query,
                gallery=gallery,
                qf=qf,
                gf=gf,
                private_pred=private_pred,
            )
        self.written.append(write_or_rescue(record, self.out_dir))
        return record


def _jsonable(obj: Any) -> Any:
    """Convert numpy scalars/arrays and tuples inside ``obj`` into JSON types."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and not np.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return repr(obj)


def _stderr(msg: str) -> None:
    print(msg, file=sys.stderr)

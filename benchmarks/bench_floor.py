"""Each trained method's run time against its floor, with the share of time per kind of work (issue 13).

The **floor** of a run is a bare loop over the same number of paired batches as the method trained on,
doing only the forward and the backward pass of the same encoder on the clean inputs of the batch (features
mode: the head on the cached features; digits: the small CNN and its head): no augmentation, no loss beyond
``mean(f^2)``, no optimiser step, no evaluation. It is measured in the same process right after each run.
Times are **CPU seconds of this process** (``time.process_time``; one thread), which other processes on a
shared machine disturb much less than wall time; ``ratio = run / floor`` in CPU time, ``wall_ratio`` the
same in wall time.

The **own-work floor** (``own_floor_s``, ``own_ratio``) answers the question the floor leaves open for methods
whose steps encode more than one clean batch (DGDIR's four view sets and key pass, UCDIR's key pass): every
encoder pass of the run's training steps is logged (the module called, train/eval mode, with or without
gradient, the input's shape) and replayed bare in the same process on random inputs of the same shapes,
forward + ``backward`` of ``mean(f^2)`` for the passes that had a gradient, forward alone for the others
(key encoders). ``own_ratio = run / own floor`` is then the cost of everything *around* the encoder work the
method's own algorithm asks for: losses, views, clustering, memories, evaluation and Python.

The run's time is split by wrapping (timers, innermost category wins; encoder passes made inside another
category count to that category):

* ``clustering``: k-means, Elbow / K estimators, prototype building and merging (``blocks/kmeans.py``,
  ``blocks/cluster_count.py``, ``blocks/merging.py``, ``blocks/prototypes.py``, UEM's structure);
* ``memory``: memory-bank initialisation and updates (``MemoryBank``, ``init_memory``);
* ``nn_search``: exact k-NN searches (``retrieval.knn``);
* ``evaluation``: ``embed``, ``detect_private`` and the metrics after ``fit``;
* ``views``: augmented views (``UnlabeledDomain.view`` / ``view_set``, DGDIR's Fourier views);
* ``encoder``: forward passes of the encoder and ``backward`` (the floor's kind of work) in training steps;
* ``head_init``: the data-dependent head initialisation (``prepare_encoder``: the StructureHead's PCA);
* ``optimizer``: ``SGD.step``;
* ``rest``: everything else (losses, Python glue, data loading).

``--profile`` adds a cProfile run per method; its ``python %`` column is the share of the profiled time
spent in Python functions' own code (``tottime`` of non-builtin functions; cProfile inflates it), and
``--profile-top N`` prints the N functions with the largest own time.

    U2CDR_THREADS=1 .venv/bin/python benchmarks/bench_floor.py --dataset digits --pair mnist:optdigits \\
        --epochs-scale 0.125
    U2CDR_THREADS=1 .venv/bin/python benchmarks/bench_floor.py --dataset pacs --data-dir ../shared/data \\
        --pair photo:sketch --methods cds,pcs --json /tmp/floor.json
"""

from __future__ import annotations

import argparse
import cProfile
import functools
import inspect
import io
import json
import pstats
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Any

# isort: off
import u2cdr_bench  # noqa: F401 - pins the numerical kernels before torch / numpy load

# isort: on
import torch

from u2cdr_bench import runner as runner_mod
from u2cdr_bench import training
from u2cdr_bench.data.registry import DataOptions, get_dataset
from u2cdr_bench.methods import get_method, method_names
from u2cdr_bench.methods.common import EncoderMethod, build_encoder
from u2cdr_bench.nets import make_encoder_factory
from u2cdr_bench.protocols import get_protocol
from u2cdr_bench.runner import Runner, input_mode, plan

CATEGORIES = ("clustering", "memory", "nn_search", "evaluation", "views", "encoder", "head_init", "optimizer")

#: (module, attribute path, category) of the functions timed; missing ones are skipped.
TARGETS: list[tuple[str, str, str]] = [
    ("u2cdr_bench.blocks.kmeans", "kmeans", "clustering"),
    ("u2cdr_bench.blocks.kmeans", "elbow_k", "clustering"),
    ("u2cdr_bench.blocks.cluster_count", "estimate_k", "clustering"),
    ("u2cdr_bench.blocks.cluster_count", "elbow", "clustering"),
    ("u2cdr_bench.blocks.merging", "merge_prototypes", "clustering"),
    ("u2cdr_bench.blocks.prototypes", "build_prototypes", "clustering"),
    ("u2cdr_bench.blocks.prototypes", "cluster_multi", "clustering"),
    ("u2cdr_bench.methods.uem.prototypes", "build_structure", "clustering"),
    ("u2cdr_bench.methods.uem.prototypes", "estimate_k", "clustering"),
    ("u2cdr_bench.blocks.memory", "MemoryBank.update", "memory"),
    ("u2cdr_bench.blocks.memory", "MemoryBank.__init__", "memory"),
    ("u2cdr_bench.methods.common", "EncoderMethod.init_memory", "memory"),
    ("u2cdr_bench.retrieval", "knn", "nn_search"),
    ("u2cdr_bench.runner", "evaluate", "evaluation"),
    ("u2cdr_bench.data.types", "UnlabeledDomain.view", "views"),
    ("u2cdr_bench.data.types", "UnlabeledDomain.view_set", "views"),
    ("u2cdr_bench.baselines.dgdir", "DGDIR._fourier_views", "views"),
    ("u2cdr_bench.nets", "Encoder.forward", "encoder"),
    ("u2cdr_bench.nets", "SmallCNN.forward", "encoder"),
    ("u2cdr_bench.nets", "MLPHead.forward", "encoder"),
    ("u2cdr_bench.nets", "StructureHead.forward", "encoder"),
    ("u2cdr_bench.methods.common", "EncoderMethod.prepare_encoder", "head_init"),
    ("torch.optim.sgd", "SGD.step", "optimizer"),
]


class Timers:
    """Exclusive time per category: a nested timed call's time is taken out of its caller's category.

    ``passes`` logs the outermost encoder passes made outside every other category (the training steps'):
    ``(class name, training, grad enabled, input shape)``.
    """

    def __init__(self) -> None:
        self.acc: dict[str, float] = defaultdict(float)
        self.stack: list[list[Any]] = []
        self.passes: list[tuple[str, bool, bool, tuple[int, ...]]] = []

    def wrap(self, fn: Callable, category: str) -> Callable:
        @functools.wraps(fn)
        def timed(*args: Any, **kwargs: Any) -> Any:
            if category == "encoder" and self.stack:
                return fn(*args, **kwargs)  # an encoder pass inside clustering / evaluation counts there
            if (
                category == "encoder"
                and len(args) == 2
                and isinstance(args[0], torch.nn.Module)
                and isinstance(args[1], torch.Tensor)
            ):
                module, x = args
                self.passes.append(
                    (type(module).__name__, module.training, torch.is_grad_enabled(), tuple(x.shape))
                )
            t0 = time.process_time()
            self.stack.append([category, 0.0])
            try:
                return fn(*args, **kwargs)
            finally:
                _, child = self.stack.pop()
                elapsed = time.process_time() - t0
                self.acc[category] += elapsed - child
                if self.stack:
                    self.stack[-1][1] += elapsed

        timed._timed_original = fn  # type: ignore[attr-defined]
        return timed


def _patch(timers: Timers, method_cls: type) -> list[tuple[Any, str, Any]]:
    """Wrap every target (in every module that imported it by name); returns what to restore."""
    undo: list[tuple[Any, str, Any]] = []
    modules = [m for n, m in list(sys.modules.items()) if n.startswith("u2cdr_bench") and m is not None]
    import torch.optim.sgd  # noqa: F401 - a target

    for mod_name, path, category in TARGETS:
        mod = sys.modules.get(mod_name)
        if mod is None:
            continue
        owner: Any = mod
        *parents, attr = path.split(".")
        for p in parents:
            owner = getattr(owner, p, None)
        if owner is None or not hasattr(owner, attr):
            continue
        original = inspect.getattr_static(owner, attr)
        wrapped = timers.wrap(original, category)
        if parents:
            undo.append((owner, attr, original))
            setattr(owner, attr, wrapped)
            continue
        for m in modules:
            for name, value in list(vars(m).items()):
                if value is original:
                    undo.append((m, name, value))
                    setattr(m, name, wrapped)
    for attr in ("embed", "detect_private"):  # the evaluation side of the run
        undo.append((method_cls, attr, method_cls.__dict__.get(attr, _MISSING)))
        setattr(method_cls, attr, timers.wrap(getattr(method_cls, attr), "evaluation"))
    undo.append((torch.Tensor, "backward", torch.Tensor.backward))
    torch.Tensor.backward = timers.wrap(torch.Tensor.backward, "encoder")  # type: ignore[method-assign]
    return undo


_MISSING = object()


def _unpatch(undo: list[tuple[Any, str, Any]]) -> None:
    for owner, attr, value in reversed(undo):
        if value is _MISSING:
            delattr(owner, attr)
        else:
            setattr(owner, attr, value)


class StepCounter:
    """Counts the paired batches a method draws (``PairedSampler.epoch``) and remembers their sizes."""

    def __init__(self) -> None:
        self.steps = 0
        self.batch_sizes: set[tuple[int, int]] = set()
        self._orig = training.PairedSampler.epoch

    def __enter__(self) -> StepCounter:
        counter = self
        orig = self._orig

        def epoch(sampler: training.PairedSampler):
            for pair in orig(sampler):
                counter.steps += 1
                counter.batch_sizes.add((len(pair[0]), len(pair[1])))
                yield pair

        training.PairedSampler.epoch = epoch  # type: ignore[method-assign]
        return self

    def __exit__(self, *exc: object) -> None:
        training.PairedSampler.epoch = self._orig  # type: ignore[method-assign]


def floor_time(runner: Runner, cfg: runner_mod.RunConfig, steps: int, batch_size: int) -> tuple[float, float]:
    """Wall and CPU seconds of ``steps`` bare forward + backward passes of the run's encoder on paired clean
    batches."""
    spec = get_dataset(cfg.dataset)
    protocol = get_protocol(spec, cfg.setting, cfg.split_seed)
    views = tuple(get_method(cfg.method).views)
    qa = runner._domain(spec, cfg.query, views).select_classes(protocol.query_classes)
    qb = runner._domain(spec, cfg.gallery, views).select_classes(protocol.gallery_classes)
    mode, _, profile = input_mode(spec, runner.options)
    factory = make_encoder_factory(qa.kind, tuple(qa.x.shape[1:]))
    hp = get_method(cfg.method).hparams_for(profile, spec.method_profile, cfg.hparams)
    torch.manual_seed(cfg.seed)
    enc = build_encoder(factory, hp.get("head"))
    enc.train()
    g = torch.Generator().manual_seed(cfg.seed)
    sampler = training.PairedSampler(len(qa), len(qb), batch_size, g)
    t0, c0 = time.perf_counter(), time.process_time()
    done = 0
    while done < steps:
        for ia, ib in sampler.epoch():
            x = torch.cat([qa.x[ia], qb.x[ib]])
            loss = enc(x).square().mean()
            loss.backward()
            done += 1
            if done == steps:
                break
    return time.perf_counter() - t0, time.process_time() - c0


def own_floor_time(runner: Runner, cfg: runner_mod.RunConfig, passes: list) -> tuple[float, float]:
    """Wall and CPU seconds of replaying the run's logged training-step encoder passes bare (module
    docstring, own-work floor) on a fresh encoder of the run's shape."""
    spec = get_dataset(cfg.dataset)
    views = tuple(get_method(cfg.method).views)
    qa = runner._domain(spec, cfg.query, views)
    mode, _, profile = input_mode(spec, runner.options)
    factory = make_encoder_factory(qa.kind, tuple(qa.x.shape[1:]))
    hp = get_method(cfg.method).hparams_for(profile, spec.method_profile, cfg.hparams)
    torch.manual_seed(cfg.seed)
    enc = build_encoder(factory, hp.get("head"))
    parts = {
        type(enc).__name__: enc,
        type(enc.backbone).__name__: enc.backbone,
        type(enc.head).__name__: enc.head,
    }
    inputs = {shape: torch.randn(shape) for *_, shape in passes}
    t0, c0 = time.perf_counter(), time.process_time()
    for name, train, grad, shape in passes:
        module = parts.get(name, enc)
        module.train(train)
        with torch.set_grad_enabled(grad):
            out = module(inputs[shape])
            if grad and out.requires_grad:
                out.square().mean().backward()
    return time.perf_counter() - t0, time.process_time() - c0


def python_share(method: str, runner: Runner, cfg: runner_mod.RunConfig, top: int) -> tuple[float, str]:
    """cProfile one run: share of own time in Python functions, and the top lines by own time."""
    prof = cProfile.Profile()
    prof.enable()
    runner.run(cfg)
    prof.disable()
    stats = pstats.Stats(prof)
    total = sum(v[2] for v in stats.stats.values())  # type: ignore[attr-defined]
    py = sum(v[2] for k, v in stats.stats.items() if k[0] != "~")  # type: ignore[attr-defined]
    out = io.StringIO()
    if top:
        pstats.Stats(prof, stream=out).sort_stats("tottime").print_stats(top)
    return (100.0 * py / total if total else 0.0), out.getvalue()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", default="digits")
    ap.add_argument("--pair", default="mnist:optdigits")
    ap.add_argument("--setting", default="open-set")
    ap.add_argument("--epochs-scale", type=float, default=1.0)
    ap.add_argument("--seed", type=int, default=2024)
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: every trained method)")
    ap.add_argument("--data-dir", type=Path, default=None)
    ap.add_argument("--backbone", default="effnet-lite0")
    ap.add_argument("--profile", action="store_true", help="also a cProfile run per method (python %%)")
    ap.add_argument("--profile-top", type=int, default=0, help="print the top N own-time lines")
    ap.add_argument("--json", type=Path, default=None, help="write the rows here")
    args = ap.parse_args()
    if args.methods:
        methods = args.methods.split(",")
    else:
        methods = [m for m in method_names() if issubclass(get_method(m), EncoderMethod)]
    options = DataOptions(data_dir=args.data_dir, backbone=args.backbone, quiet=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(options, Path(tmp), force=True)
        # warm-up: imports and loaded domains are not charged to the first method
        (warm,) = plan("pretrained", args.dataset, args.setting, args.pair, [args.seed], options)
        runner.run(warm)
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)  # its first use imports torch._dynamo
        for m in methods:
            (cfg,) = plan(
                m, args.dataset, args.setting, args.pair, [args.seed], options, epochs_scale=args.epochs_scale
            )
            timers = Timers()
            undo = _patch(timers, get_method(m))
            try:
                with StepCounter() as counter:
                    t0, c0 = time.perf_counter(), time.process_time()
                    rec = runner.run(cfg)
                    t_run, c_run = time.perf_counter() - t0, time.process_time() - c0
            finally:
                _unpatch(undo)
            batch = max(max(b) for b in counter.batch_sizes) if counter.batch_sizes else 64
            t_floor, c_floor = floor_time(runner, cfg, counter.steps, batch)
            _, c_own = own_floor_time(runner, cfg, timers.passes)
            shares = {c: 100.0 * timers.acc.get(c, 0.0) / c_run for c in CATEGORIES}
            shares["rest"] = 100.0 - sum(shares.values())
            row: dict[str, Any] = {
                "method": m,
                "steps": counter.steps,
                "run_s": round(c_run, 2),
                "floor_s": round(c_floor, 2),
                "ratio": round(c_run / c_floor, 2) if c_floor > 0 else None,
                "wall_ratio": round(t_run / t_floor, 2) if t_floor > 0 else None,
                "passes": len(timers.passes),
                "own_floor_s": round(c_own, 2),
                "own_ratio": round(c_run / c_own, 2) if c_own > 0 else None,
                "map_all": rec["metrics"]["map_all"],
                "fit_wall_s": rec["timings"]["fit_s"],
                "eval_wall_s": round(rec["timings"]["embed_s"] + rec["timings"]["eval_s"], 3),
                "dataset": args.dataset,
                "pair": args.pair,
                "setting": args.setting,
                "epochs_scale": args.epochs_scale,
                **{f"{k}_%": round(v, 1) for k, v in shares.items()},
            }
            if args.profile:
                py, top = python_share(m, runner, cfg, args.profile_top)
                row["python_%"] = round(py, 1)
                if top:
                    print(f"--- {m}: cProfile, top {args.profile_top} by own time\n{top}", flush=True)
            rows.append(row)
            print(json.dumps(row), flush=True)
    print(
        f"\n{args.dataset} {args.pair} {args.setting}, epochs-scale {args.epochs_scale}; "
        "ratio = run / floor (bare forward + backward over the same paired batches); shares of the run in %"
    )
    keys = [
        "method",
        "steps",
        "run_s",
        "floor_s",
        "ratio",
        "wall_ratio",
        "passes",
        "own_floor_s",
        "own_ratio",
    ]
    keys += [f"{c}_%" for c in (*CATEGORIES, "rest")]
    if args.profile:
        keys.append("python_%")
    print(" ".join(f"{k:>12s}" for k in keys))
    for row in rows:
        print(" ".join(f"{row[k]!s:>12s}" for k in keys))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()

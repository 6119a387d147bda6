"""Metric regression that passes on any x86 machine and still catches a real regression (issue 17).

``results/reference/`` holds the records of a small fixed grid on ``digits`` (every registered method × the
three settings × two pairs, seed 2024, the short schedule of ``benchmarks/make_reference.py``).
``results/reference_tolerance.json`` holds, per method and metric, the **average over the method's grid
cells** measured at several run seeds and under imitated CPUs, and the tolerance derived from that spread.

A single record is not compared with its reference: on another CPU one changed rounding flips a discrete
decision (an Elbow K, a k-means assignment) and the run goes its own way, which is what a new seed does too
(measured in ``docs/reliability.md``). What is compared is each method's cell average, which moves far less:

    fail  iff  |mean_cells(fresh) - center| > tolerance          (two-sided, see :func:`compare`),

    center    = mean over the measured seeds of the cell average,
    tolerance = max(floor, z * sd_seeds * sqrt(1 + 1/n_seeds), margin * max |imitated - center|),

with ``z``, ``floor`` and ``margin`` stored in the tolerance file (``make_reference.py`` writes it). A run
that crashes is a failure too. After an intended change of numbers, refresh the references.

**The training objective, per cell.** At the short reference schedule a trained method barely moves from its
initialisation, so its retrieval metrics cannot tell a correct objective from a sign-flipped one
(``docs/reliability.md``). What does tell them apart is the objective itself: every trained method's record
carries ``method_info.objective`` (the per-epoch mean of the loss the optimiser saw, per stage, written by
:meth:`~u2cdr_bench.methods.common.EncoderMethod.train_stage`), and its mean over the run
(:func:`objective_of`) is compared **per cell** with the same rule and its own measured spread (seeds and
imitated CPUs), with a relative floor ``OBJECTIVE_RULE.rel_floor * |center|``. A loss is an average over every
step of a run, so it moves little between seeds and CPUs, while a wrong sign or a dropped term moves it far.

**The gradient norm, per cell and stage.** Near its initialisation an InfoNCE value is about ``log N`` at any
temperature, so the objective cannot see a 10x ``tau``; the gradient can, since a contrastive logit is
``s / tau`` and its gradient scales with ``1 / tau``. Every trained record also carries
``method_info.grad_norm``: per stage and epoch, the mean over steps of the L2 norm of the encoder's gradient
(:meth:`~u2cdr_bench.methods.common.EncoderMethod.train_stage`). Its mean over each stage's epochs
(:func:`grad_norms_of`) is compared per cell and stage under ``GRAD_NORM_RULE`` (5 % relative floor). A sign
flip leaves the norm unchanged (the objective catches it); a 10x ``tau`` leaves the objective unchanged (the
norm catches it where the temperature's term dominates the encoder's gradient, ``docs/reliability.md``).

**The loss terms, per cell and stage.** Where the temperature's term is one of several (UEM's instance loss
beside its prototype and adversarial terms, PCS's instance term beside its prototype terms, DANN's contrastive
term beside the adversarial one), neither the sum nor the gradient norm need move. Every trained record also
carries ``method_info.terms``: per stage, term and epoch the mean over steps of each entry of the step's
``info``; their means over the epochs (:func:`terms_of`) are compared per cell under ``TERM_RULE`` (5 %
relative floor), where the tolerance file has them (``terms``).

**The first step, exactly.** Before a run's first discrete decision, two machines differ by rounding only; the
loss, gradient norm and loss terms of a run's first optimisation step are compared with the reference run of
the same seed at a rounding-sized tolerance, for the quantities measured to be rounding-level
(:mod:`u2cdr_bench.first_step`, ``first_step`` in the tolerance file).
"""

from __future__ import annotations

import json
import math
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from .data.registry import DataOptions
from .errors import UserError
from .first_step import first_step_lines
from .records import load_records
from .reproducibility import apply_runtime, describe, machine_info, same_kernels
from .runner import RunConfig, Runner

#: Metrics compared by the regression (all are "higher is better").
REGRESSED = ("map_all", "p@1", "map_at_r", "openset_accuracy")
TOLERANCE_FILE = "reference_tolerance.json"
#: The committed reference grid, relative to the repository root.
REFERENCE_DIR = Path("results") / "reference"


def default_tolerance_path(reference_dir: Path) -> Path:
    """``results/reference_tolerance.json`` beside ``results/reference/``."""
    return Path(reference_dir).parent / TOLERANCE_FILE


def cell_averages(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{method: {metric: mean over the method's records of that metric}}`` (null values skipped)."""
    sums: dict[str, dict[str, list[float]]] = {}
    for rec in records:
        per = sums.setdefault(rec["config"]["method"], {})
        for key in REGRESSED:
            value = rec["metrics"].get(key)
            if value is not None:
                per.setdefault(key, []).append(float(value))
    return {m: {k: sum(v) / len(v) for k, v in per.items()} for m, per in sums.items()}


@dataclass(frozen=True)
class Rule:
    """How a tolerance is derived from the measured spread (stored in the tolerance file)."""

    z: float = 4.0
    floor: float = 0.5
    margin: float = 1.25
    rel_floor: float = 0.0

    def tolerance(self, seeds: list[float], imitated: list[float]) -> tuple[float, float]:
        """``(center, tolerance)`` from the seed averages and the imitated-CPU averages of one metric.

        ``tolerance = max(floor, rel_floor * |center|, z * sd * sqrt(1 + 1/n),
        margin * max|imitated - center|)``.
        """
        n = len(seeds)
        center = sum(seeds) / n
        sd = math.sqrt(sum((s - center) ** 2 for s in seeds) / (n - 1)) if n > 1 else 0.0
        dev = max((abs(v - center) for v in imitated), default=0.0)
        floor = max(self.floor, self.rel_floor * abs(center))
        tol = max(floor, self.z * sd * math.sqrt(1.0 + 1.0 / n), self.margin * dev)
        return center, tol


#: The rule of the per-cell objective check: a loss has no natural unit, so the floor is relative (2 %).
OBJECTIVE_RULE = Rule(z=4.0, floor=1e-3, margin=1.25, rel_floor=0.02)


def cell_of(rec: dict[str, Any]) -> str:
    """A record's grid cell, ``"<setting> <query>-><gallery>"``."""
    c = rec["config"]
    return f"{c['setting']} {c['query']}->{c['gallery']}"


def objective_of(rec: dict[str, Any]) -> float | None:
    """Mean over stages and epochs of ``method_info.objective`` (``None`` for a training-free method)."""
    trace = rec.get("method_info", {}).get("objective") or {}
    values = [float(v) for per_stage in trace.values() for v in per_stage]
    return sum(values) / len(values) if values else None


def cell_objectives(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{method: {cell: objective}}`` over the records of trained methods."""
    out: dict[str, dict[str, float]] = {}
    for rec in records:
        value = objective_of(rec)
        if value is not None:
            out.setdefault(rec["config"]["method"], {})[cell_of(rec)] = value
    return out


#: The rule of the per-stage gradient-norm check: a norm has no natural unit either (5 % relative floor).
GRAD_NORM_RULE = Rule(z=4.0, floor=1e-3, margin=1.25, rel_floor=0.05)


def grad_norms_of(rec: dict[str, Any]) -> dict[str, float]:
    """``{stage: mean over its epochs of method_info.grad_norm}`` (empty for a training-free method)."""
    trace = rec.get("method_info", {}).get("grad_norm") or {}
    return {stage: sum(map(float, v)) / len(v) for stage, v in trace.items() if v}


def _per_cell(
    records: Iterable[dict[str, Any]], of: Callable[[dict[str, Any]], dict[str, float]]
) -> dict[str, dict[str, float]]:
    """``{method: {"<cell> | <key>": value}}`` for every ``key: value`` of ``of(record)``."""
    out: dict[str, dict[str, float]] = {}
    for rec in records:
        for key, value in of(rec).items():
            out.setdefault(rec["config"]["method"], {})[f"{cell_of(rec)} | {key}"] = value
    return out


def cell_grad_norms(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{method: {"<cell> | <stage>": mean gradient norm}}`` over the records of trained methods."""
    return _per_cell(records, grad_norms_of)


#: The rule of the per-term check (one loss term of a stage, e.g. UEM's ``idse/ince_a``): 5 % relative floor.
TERM_RULE = Rule(z=4.0, floor=1e-3, margin=1.25, rel_floor=0.05)


def terms_of(rec: dict[str, Any]) -> dict[str, float]:
    """``{"<stage>/<term>": mean over its epochs of method_info.terms[stage][term]}`` (empty if untrained)."""
    trace = rec.get("method_info", {}).get("terms") or {}
    return {
        f"{stage}/{term}": sum(map(float, v)) / len(v)
        for stage, per_term in trace.items()
        for term, v in per_term.items()
        if v
    }


def cell_terms(records: Iterable[dict[str, Any]]) -> dict[str, dict[str, float]]:
    """``{method: {"<cell> | <stage>/<term>": mean term value}}`` over the records of trained methods."""
    return _per_cell(records, terms_of)


def build_objective_tolerances(
    per_seed: dict[int, dict[str, dict[str, float]]],
    per_imitation: dict[str, dict[str, dict[str, float]]],
    rule: Rule = OBJECTIVE_RULE,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and cell: the seed and imitation objectives, ``center`` and ``tolerance`` (like
    :func:`build_tolerances`, with cells in place of metrics)."""
    return build_tolerances(per_seed, per_imitation, rule, keys=None)


def build_tolerances(
    per_seed: dict[int, dict[str, dict[str, float]]],
    per_imitation: dict[str, dict[str, dict[str, float]]],
    rule: Rule,
    keys: Iterable[str] | None = REGRESSED,
) -> dict[str, dict[str, dict[str, Any]]]:
    """Per method and key (metric, or every key measured when ``keys`` is ``None``): the seed and imitation
    values, ``center`` and ``tolerance``."""
    methods = sorted({m for avg in per_seed.values() for m in avg})
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for m in methods:
        out[m] = {}
        measured = {k for avg in per_seed.values() for k in avg.get(m, {})}
        wanted = keys if keys is not None else sorted(measured)
        for key in wanted:
            seeds = {s: avg[m][key] for s, avg in per_seed.items() if key in avg.get(m, {})}
            if not seeds:
                continue
            imit = {i: avg[m][key] for i, avg in per_imitation.items() if key in avg.get(m, {})}
            center, tol = rule.tolerance(list(seeds.values()), list(imit.values()))
            out[m][key] = {
                "seeds": {str(s): round(v, 4) for s, v in sorted(seeds.items())},
                "imitated": {i: round(v, 4) for i, v in sorted(imit.items())},
                "center": round(center, 4),
                "tolerance": round(tol, 4),
            }
    return out


def load_tolerances(path: Path) -> dict[str, Any]:
    """Read the tolerance file; a missing or malformed one is a :class:`UserError`."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise UserError(
            f"No tolerance file {path}; write it with `python benchmarks/make_reference.py`."
        ) from None
    except (OSError, json.JSONDecodeError) as err:
        raise UserError(f"Cannot read tolerance file {path}: {err}.") from None
    if not isinstance(data, dict) or not isinstance(data.get("methods"), dict):
        raise UserError(f"Malformed tolerance file {path}: no 'methods' object.")
    return data


def compare(
    fresh: dict[str, dict[str, float]], tolerances: dict[str, Any], methods: Iterable[str] | None = None
) -> list[str]:
    """Lines for every (method, metric) whose fresh cell average leaves ``center ± tolerance``.

    The test is two-sided: on the short reference schedule a broken loss can *raise* a metric (a method that
    stops learning stays at its initialisation, which on digits can score above early training), so a move
    beyond the measured spread in either direction is reported; after an intended change, refresh the
    references (``benchmarks/make_reference.py --methods ...``).
    """
    bad = []
    table = tolerances["methods"]
    for m in sorted(methods if methods is not None else table):
        if m not in table:
            bad.append(f"{m}: no tolerance measured (run benchmarks/make_reference.py --methods {m})")
            continue
        for key, tol in table[m].items():
            new = fresh.get(m, {}).get(key)
            lo, hi = tol["center"] - tol["tolerance"], tol["center"] + tol["tolerance"]
            if new is not None and lo <= new <= hi:
                continue
            shown = "missing" if new is None else f"{new:.2f}"
            verdict = "regressed" if new is None or new < lo else "moved above its spread"
            bad.append(
                f"{m}: {key} {verdict}: average over its reference cells {shown}, measured "
                f"{tol['center']:.2f} ± {tol['tolerance']:.2f}"
            )
    return bad


def _band_line(what: str, new: float | None, tol: dict[str, Any]) -> str | None:
    """``None`` when ``new`` is inside ``tol``'s band, else the failure line (``missing`` for ``None``)."""
    lo, hi = tol["center"] - tol["tolerance"], tol["center"] + tol["tolerance"]
    if new is not None and lo <= new <= hi:
        return None
    shown = "missing" if new is None else f"{new:.4f}"
    return f"{what} moved: {shown}, measured {tol['center']:.4f} ± {tol['tolerance']:.4f}"


def compare_training(
    fresh: Iterable[dict[str, Any]], tolerances: dict[str, Any], methods: Iterable[str] | None = None
) -> list[str]:
    """Lines for every fresh record of a trained method whose objective leaves its cell's measured band, or
    whose mean gradient norm of a stage, or mean value of one loss term of a stage (``terms``), leaves that
    band, or that has none where the references had one (two-sided, like :func:`compare`); and for every
    checked quantity of its first step that moved beyond rounding (``first_step``, :mod:`.first_step`)."""
    objectives = tolerances.get("objectives", {})
    norms = tolerances.get("grad_norms", {})
    term_bands = tolerances.get("terms", {})
    first_steps = tolerances.get("first_step", {})
    keep = None if methods is None else set(methods)
    bad = []
    for rec in fresh:
        m, cell = rec["config"]["method"], cell_of(rec)
        if keep is not None and m not in keep:
            continue
        checks = []
        if cell in objectives.get(m, {}):
            checks.append((f"training objective of {cell}", objective_of(rec), objectives[m][cell]))
        per_key = (
            (norms, grad_norms_of, "gradient norm of {cell}, stage {key},"),
            (term_bands, terms_of, "loss term {key} of {cell}"),
        )
        for bands, of, what in per_key:
            if not bands.get(m):
                continue
            measured = of(rec)
            for band_key, tol in bands[m].items():
                band_cell, _, key = band_key.partition(" | ")
                if band_cell == cell:
                    checks.append((what.format(cell=cell, key=key), measured.get(key), tol))
        for what, new, tol in checks:
            line = _band_line(what, new, tol)
            if line is not None:
                bad.append(f"{m}: {line}")
        if cell in first_steps.get(m, {}):
            bad += [f"{m}: {line}" for line in first_step_lines(rec, cell, first_steps[m][cell])]
    return bad


def run_grid(
    reference_dir: Path,
    out_dir: Path,
    methods: list[str] | None = None,
    console: Console | None = None,
    cells: Iterable[str] | None = None,
    hparams: dict[str, Any] | None = None,
) -> tuple[list[dict[str, Any]], list[str]]:
    """Re-run every reference config (optionally only ``methods``, only ``cells``) into ``out_dir``.

    ``hparams`` is merged into each config's overrides for the keys its method declares (how a test injects a
    10x temperature). Returns ``(fresh records, failure lines)``: a run that raises anything but a
    :class:`UserError` (e.g. a non-finite loss) is a failure line and is skipped.
    """
    from .methods import get_method

    refs = load_records(reference_dir)
    if methods is not None:
        unknown = sorted(set(methods) - {r["config"]["method"] for r in refs})
        if unknown:
            raise UserError(f"No reference records of {', '.join(unknown)} in {reference_dir}.")
        refs = [r for r in refs if r["config"]["method"] in methods]
    if cells is not None:
        refs = [r for r in refs if cell_of(r) in set(cells)]
    if not refs:
        raise UserError(f"No reference records in {reference_dir}.")
    runner = Runner(DataOptions(quiet=True), Path(out_dir), force=True)
    fresh: list[dict[str, Any]] = []
    failures: list[str] = []
    for i, ref in enumerate(refs, 1):
        cfg = RunConfig(**ref["config"])
        if hparams:
            declared = get_method(cfg.method).defaults
            extra = {k: v for k, v in hparams.items() if k in declared}
            cfg = RunConfig(**{**ref["config"], "hparams": {**cfg.hparams, **extra}})
        try:
            rec = runner.run(cfg)
        except UserError:
            raise
        except Exception as err:  # a crash is a regression to report, not a traceback
            failures.append(f"{cfg.method}: {cfg.setting} {cfg.query}->{cfg.gallery} failed: {err}")
            continue
        fresh.append(rec)
        if console is not None:
            console.print(
                f"[{i}/{len(refs)}] {cfg.method} {cfg.setting} {cfg.query}->{cfg.gallery} seed {cfg.seed}: "
                f"map_all {rec['metrics']['map_all']:.2f} (ref {ref['metrics']['map_all']:.2f})",
                markup=False,
            )
    return fresh, failures


def resolve_reference_dir(given: Path | None, cwd: Path | None = None) -> Path:
    """The reference folder: ``given``, else ``results/reference`` under ``cwd``, else under the repository of
    this package (an editable install run from another folder). A missing folder is a :class:`UserError` that
    names where it was looked for."""
    if given is not None:
        if not Path(given).is_dir():
            raise UserError(
                f"Reference folder {given} does not exist; pass --reference DIR (results/reference)."
            )
        return Path(given)
    here = (cwd or Path.cwd()) / REFERENCE_DIR
    repo = Path(__file__).resolve().parents[1] / REFERENCE_DIR
    for candidate in (here, repo):
        if candidate.is_dir():
            return candidate
    raise UserError(
        f"No reference folder: looked in {here} and {repo}; run from the repository or pass --reference DIR."
    )


def machine_lines(reference_dir: Path) -> list[str]:
    """Where the references were made and where this re-run runs, when they differ (else one line).

    The runtime switches (``onednn-off``) are applied first, so that "this re-run" describes the kernels the
    re-run will use, not the state before the runner switches them.
    """
    apply_runtime()
    refs = load_records(reference_dir)
    made = [r.get("env", {}).get("machine") for r in refs[:1]]
    here = machine_info()
    ref_info = made[0] if made else None
    if same_kernels(ref_info, here):
        return [f"machine: {describe(here)} (same kernels as the references)"]
    return [f"references made on: {describe(ref_info)}", f"this re-run on:     {describe(here)}"]


def run_regression(
    reference_dir: Path,
    tolerance_path: Path | None = None,
    console: Console | None = None,
    quiet: bool = False,
    methods: list[str] | None = None,
    cells: Iterable[str] | None = None,
    hparams: dict[str, Any] | None = None,
) -> list[str]:
    """Re-run the reference grid (optionally only ``methods``); return the failure lines.

    Compares each method's cell averages of the metrics (:func:`compare`) and each trained cell's objective
    and per-stage gradient norms (:func:`compare_training`). With ``cells`` only those cells are re-run and
    only their training traces are compared (a cell average over a subset of cells has no measured spread);
    ``hparams``: see :func:`run_grid`.
    """
    tolerances = load_tolerances(tolerance_path or default_tolerance_path(reference_dir))
    shown = None if quiet else console
    with tempfile.TemporaryDirectory() as tmp:
        fresh, failures = run_grid(reference_dir, Path(tmp), methods, shown, cells, hparams)
    wanted = methods or sorted({r["config"]["method"] for r in load_records(reference_dir)})
    crashed = {line.split(":", 1)[0] for line in failures}
    kept = [m for m in wanted if m not in crashed]
    metric_lines = [] if cells is not None else compare(cell_averages(fresh), tolerances, kept)
    return failures + metric_lines + compare_training(fresh, tolerances, kept)

"""Write the CI metric-regression references: the grid's records and the tolerances measured from its spread.

Grid (``GRID``): every registered method × the three settings × two digits pairs (optdigits:printed,
printed:optdigits), seed 2024, ``--epochs-scale`` ``EPOCHS_SCALE``. Steps, each resumable:

1. the reference records, seed 2024, this machine's default kernel preset -> ``results/reference/``;
2. the same grid at the spread seeds (``--spread-seeds``, default 2025-2027) -> ``<work>/seed-<s>/``;
3. the same grid at seed 2024 under each imitated CPU (``--imitations``, default avx; ``avx2,avx`` adds the
   AVX2 path, bit-identical to this machine under the pins, docs/reliability.md), each in a subprocess with
   ``U2CDR_IMITATE_CPU`` set before the libraries load -> ``<work>/imitate-<name>/``;
4. ``results/reference_tolerance.json``: per method and metric the cell averages of steps 1-3, their
   center and the tolerance of :class:`u2cdr_bench.regress.Rule`; and per trained method and cell
   (``objectives``) the mean training objective of steps 1-3 with the tolerance of ``OBJECTIVE_RULE``, and per
   trained method, cell and stage (``grad_norms``) the mean gradient norm with that of ``GRAD_NORM_RULE``,
   and per trained method, cell, stage and loss term (``terms``) the term's mean with that of ``TERM_RULE``.

``--objective-cell CELL`` measures only one cell's training bands (seeds and imitations as above) and its
**first-step entries** (``first_step``, :mod:`u2cdr_bench.first_step`): step 0 of the seed-2024 run against
the same run under each imitation and each rounding perturbation of ``PERTURBATIONS`` (unpinned kernels, two
threads), about 12 min on 2 cores for the 18 trained methods. A full refresh keeps the first-step entries as
they are: re-measure them with ``--objective-cell 'partial optdigits->printed'`` after it.

    .venv/bin/python benchmarks/make_reference.py                   # all four steps (about 1 h on 2 cores)
    .venv/bin/python benchmarks/make_reference.py --methods uem,pcs  # refresh some methods only
    .venv/bin/python benchmarks/make_reference.py --jobs 2           # two grid passes at a time

``--methods`` re-runs those methods' passes and rewrites their tolerance entries, keeping the others.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAIRS = "optdigits:printed,printed:optdigits"
SEED = 2024
EPOCHS_SCALE = 0.1
SPREAD_SEEDS = (2025, 2026, 2027)
#: The cell of the training bands and the first-step entries (the injection cell of tests/test_regression.py).
OBJECTIVE_CELL = "partial optdigits->printed"
IMITATIONS = ("avx",)
#: The user's environment before anything imports u2cdr_bench (whose import writes the kernel pins into
#: os.environ): every pass starts from it, so an imitation or an unpinned pass chooses its own kernels.
CLEAN_ENV = dict(os.environ)


def one_pass(out: Path, seed: int, methods: list[str] | None, force: bool, cell: str | None = None) -> None:
    """Run the grid (or its ``cell`` only) at ``seed`` into ``out`` in this process (skips finished records
    unless ``force``)."""
    from u2cdr_bench.data.registry import DataOptions
    from u2cdr_bench.methods import method_names
    from u2cdr_bench.protocols import setting_names
    from u2cdr_bench.regress import cell_of
    from u2cdr_bench.runner import Runner, plan

    options = DataOptions(quiet=True)
    runner = Runner(options, out, force=force)
    for method in methods or method_names():
        for setting in setting_names():
            for cfg in plan(method, "digits", setting, PAIRS, [seed], options, epochs_scale=EPOCHS_SCALE):
                if cell is not None and cell_of({"config": cfg.as_dict()}) != cell:
                    continue
                if runner.is_done(cfg):
                    continue
                t = time.perf_counter()
                rec = runner.run(cfg)
                m = rec["metrics"]
                print(
                    f"{out.name:14s} {method:16s} {setting:9s} {rec['task']['pair']}: "
                    f"map_all {m['map_all']:.2f} "
                    f"p@1 {m['p@1']:.2f} acc {m.get('openset_accuracy')} ({time.perf_counter() - t:.1f} s)",
                    flush=True,
                )


def _pass_cmd(
    out: Path, seed: int, methods: list[str] | None, force: bool, cell: str | None = None
) -> list[str]:
    cmd = [sys.executable, __file__, "--one-pass", str(out), "--seed", str(seed)]
    if cell:
        cmd += ["--objective-cell", cell]
    if methods:
        cmd += ["--methods", ",".join(methods)]
    if force:
        cmd.append("--force")
    return cmd


def run_passes(passes: list[tuple[list[str], dict[str, str]]], jobs: int) -> None:
    """Run ``(command, extra environment)`` passes as subprocesses, ``jobs`` at a time; stop on a failure."""
    running: list[subprocess.Popen] = []
    todo = list(passes)
    while todo or running:
        while todo and len(running) < jobs:
            cmd, extra = todo.pop(0)
            env = {**CLEAN_ENV, "U2CDR_THREADS": "1", **extra}
            running.append(subprocess.Popen(cmd, env=env, cwd=ROOT))
        time.sleep(1.0)
        for p in list(running):
            if p.poll() is not None:
                running.remove(p)
                if p.returncode != 0:
                    raise SystemExit(f"grid pass failed ({p.returncode}): {' '.join(p.args)}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, default=ROOT / "results" / "reference")
    ap.add_argument("--work", type=Path, default=ROOT / ".cache" / "reference-spread")
    ap.add_argument("--methods", default=None, help="comma-separated subset (default: all registered)")
    ap.add_argument("--spread-seeds", default=",".join(map(str, SPREAD_SEEDS)))
    ap.add_argument("--imitations", default=",".join(IMITATIONS))
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument(
        "--objective-cell",
        default=None,
        help="measure only the training-objective bands of this cell, e.g. 'partial optdigits->printed' "
        "(seed 2024 and the spread seeds and imitations into <work>/objective-*; the metric tolerances and "
        "the reference records are left as they are)",
    )
    ap.add_argument("--one-pass", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--seed", type=int, default=SEED, help=argparse.SUPPRESS)
    ap.add_argument("--force", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    methods = args.methods.split(",") if args.methods else None
    if args.one_pass is not None:
        one_pass(args.one_pass, args.seed, methods, args.force, args.objective_cell)
        return

    seeds = [int(s) for s in args.spread_seeds.split(",") if s]
    imitations = [s for s in args.imitations.split(",") if s]
    if args.objective_cell:
        from u2cdr_bench.first_step import PERTURBATIONS

        cell, work = args.objective_cell, args.work
        passes = [
            (_pass_cmd(work / f"objective-seed-{s}", s, methods, False, cell), {}) for s in [SEED, *seeds]
        ]
        passes += [
            (_pass_cmd(work / f"objective-imitate-{i}", SEED, methods, False, cell), {"U2CDR_IMITATE_CPU": i})
            for i in imitations
        ]
        passes += [
            (_pass_cmd(work / f"objective-perturb-{name}", SEED, methods, False, cell), env)
            for name, env in PERTURBATIONS.items()
        ]
        run_passes(passes, args.jobs)
        write_objectives(args.out, work, [SEED, *seeds], imitations, methods)
        return
    refresh = methods is not None
    passes = [(_pass_cmd(args.out, SEED, methods, force=True), {})]
    passes += [(_pass_cmd(args.work / f"seed-{s}", s, methods, refresh), {}) for s in seeds]
    passes += [
        (_pass_cmd(args.work / f"imitate-{i}", SEED, methods, refresh), {"U2CDR_IMITATE_CPU": i})
        for i in imitations
    ]
    run_passes(passes, args.jobs)
    write_tolerances(args.out, args.work, seeds, imitations, methods)


def _records(folder: Path, methods: list[str] | None) -> list[dict]:
    """The records in ``folder`` (of ``methods`` only, when given)."""
    from u2cdr_bench.records import load_records

    return [r for r in load_records(folder) if methods is None or r["config"]["method"] in methods]


def objective_rule(what: str = "objective") -> dict:
    """The tolerance file's description of ``OBJECTIVE_RULE`` (``what="grad_norm"``: ``GRAD_NORM_RULE``;
    ``what="term"``: ``TERM_RULE``)."""
    from u2cdr_bench.regress import GRAD_NORM_RULE, OBJECTIVE_RULE, TERM_RULE

    rule, per = {
        "grad_norm": (GRAD_NORM_RULE, "per cell and stage"),
        "term": (TERM_RULE, "per cell, stage and loss term"),
    }.get(what, (OBJECTIVE_RULE, "per cell"))
    return {
        "z": rule.z,
        "floor": rule.floor,
        "rel_floor": rule.rel_floor,
        "margin": rule.margin,
        "text": f"{per}: fail iff |{what} - center| > "
        "max(floor, rel_floor*|center|, z*sd*sqrt(1+1/n), margin*max|imitated-center|)",
    }


def training_bands(
    seed_records: dict[int, list[dict]], imitated_records: dict[str, list[dict]]
) -> dict[str, dict]:
    """``{"objectives": ..., "grad_norms": ..., "terms": ...}``: the bands of the training traces, all from
    the same passes."""
    from u2cdr_bench.regress import (
        GRAD_NORM_RULE,
        OBJECTIVE_RULE,
        TERM_RULE,
        build_objective_tolerances,
        cell_grad_norms,
        cell_objectives,
        cell_terms,
    )

    def bands(of, rule):
        seeds = {s: of(r) for s, r in seed_records.items()}
        return build_objective_tolerances(seeds, {i: of(r) for i, r in imitated_records.items()}, rule)

    return {
        "objectives": bands(cell_objectives, OBJECTIVE_RULE),
        "grad_norms": bands(cell_grad_norms, GRAD_NORM_RULE),
        "terms": bands(cell_terms, TERM_RULE),
    }


def write_tolerances(
    ref_dir: Path, work: Path, seeds: list[int], imitations: list[str], methods: list[str] | None
) -> Path:
    from u2cdr_bench.regress import Rule, build_tolerances, cell_averages, default_tolerance_path
    from u2cdr_bench.reproducibility import describe, machine_info

    def records(folder: Path) -> list[dict]:
        return _records(folder, methods)

    folders = {SEED: ref_dir} | {s: work / f"seed-{s}" for s in seeds}
    imitated = {i: work / f"imitate-{i}" for i in imitations}
    rule = Rule()
    table = build_tolerances(
        {s: cell_averages(records(f)) for s, f in folders.items()},
        {i: cell_averages(records(f)) for i, f in imitated.items()},
        rule,
    )
    traces = training_bands(
        {s: records(f) for s, f in folders.items()}, {i: records(f) for i, f in imitated.items()}
    )
    path = default_tolerance_path(ref_dir)
    existing = json.loads(path.read_text()) if path.exists() else {}
    old = existing if methods is not None else {"methods": {}}
    # the first-step entries come from --objective-cell's passes only: kept as they are
    kept = {k: existing[k] for k in ("first_step", "first_step_rule") if k in existing}
    data = {
        "grid": {"pairs": PAIRS, "seed": SEED, "epochs_scale": EPOCHS_SCALE, "settings": "all"},
        "rule": {
            "z": rule.z,
            "floor": rule.floor,
            "margin": rule.margin,
            "text": "fail iff |mean over cells - center| > "
            "max(floor, z*sd*sqrt(1+1/n), margin*max|imitated-center|)",
        },
        "objective_rule": objective_rule(),
        "grad_norm_rule": objective_rule("grad_norm"),
        "term_rule": objective_rule("term"),
        "spread_seeds": [SEED, *seeds],
        "imitations": imitations,
        "made_on": describe(machine_info()),
        "made": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "methods": {**old["methods"], **table},
        **{key: {**old.get(key, {}), **table} for key, table in traces.items()},
        **kept,
    }
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    print(f"wrote {path}; refresh the first-step entries with --objective-cell '{OBJECTIVE_CELL}'")
    return path


def first_steps(reference: list[dict], perturbed: dict[str, list[dict]]) -> dict[str, dict]:
    """``{method: {cell: entry}}`` of :func:`u2cdr_bench.first_step.build_first_step`: step 0 of each
    reference record's opening against the same config's record under each perturbation."""
    from u2cdr_bench.first_step import build_first_step, first_step_of
    from u2cdr_bench.regress import cell_of

    def keyed(records: list[dict]) -> dict[tuple[str, str], dict[str, float]]:
        return {(r["config"]["method"], cell_of(r)): first_step_of(r) for r in records}

    moved = {name: keyed(records) for name, records in perturbed.items()}
    out: dict[str, dict] = {}
    for (m, cell), values in keyed(reference).items():
        if values:
            others = {name: v[(m, cell)] for name, v in moved.items() if (m, cell) in v}
            out.setdefault(m, {})[cell] = build_first_step(values, SEED, others)
    return out


def write_objectives(
    ref_dir: Path, work: Path, seeds: list[int], imitations: list[str], methods: list[str] | None
) -> Path:
    """Merge the objective, gradient-norm and loss-term bands of ``--objective-cell`` into the tolerance file,
    and its first-step entries (the reference seed against the imitations and :data:`PERTURBATIONS`)."""
    from u2cdr_bench.first_step import FIRST_STEP_RULE, PERTURBATIONS
    from u2cdr_bench.regress import default_tolerance_path as tolerance_path
    from u2cdr_bench.reproducibility import describe, machine_info

    seed_records = {s: _records(work / f"objective-seed-{s}", methods) for s in seeds}
    imitated = {i: _records(work / f"objective-imitate-{i}", methods) for i in imitations}
    traces = training_bands(seed_records, imitated)
    perturbed = {f"imitate-{i}": records for i, records in imitated.items()}
    perturbed |= {name: _records(work / f"objective-perturb-{name}", methods) for name in PERTURBATIONS}
    traces["first_step"] = first_steps(seed_records[SEED], perturbed)
    path = tolerance_path(ref_dir)
    data = json.loads(path.read_text())
    for key, bands in traces.items():
        table = data.setdefault(key, {})
        for m, cells in bands.items():
            table.setdefault(m, {}).update(cells)
    now = datetime.now(timezone.utc).isoformat(timespec="seconds")
    made = {"made_on": describe(machine_info()), "made": now}
    data["first_step_rule"] = {**FIRST_STEP_RULE.as_dict(), "perturbations": sorted(perturbed), **made}
    data["objective_rule"] = {**objective_rule(), **made}
    data["grad_norm_rule"] = {**objective_rule("grad_norm"), **made}
    data["term_rule"] = {**objective_rule("term"), **made}
    path.write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")
    n = len(traces["objectives"])
    print(f"wrote the objective, gradient-norm, loss-term and first-step bands of {n} methods to {path}")
    return path


if __name__ == "__main__":
    main()

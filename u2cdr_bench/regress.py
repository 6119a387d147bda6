"""Metric regression: re-run the committed reference grid and compare (issue: "Metric regression in CI").

``results/reference/`` holds records of a small fixed grid on ``digits`` (every registered method × the three
settings × two pairs, seed 2024, a short schedule). Each reference record's config is re-run from scratch
into a temporary folder; a metric that falls more than ``tolerance`` points below its reference is a failure.
Higher values pass (they are improvements; refresh the references with ``benchmarks/make_reference.py``).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from rich.console import Console

from .data.registry import DataOptions
from .errors import UserError
from .records import load_records
from .runner import RunConfig, Runner

#: Metrics compared by the regression (all are "higher is better").
REGRESSED = ("map_all", "p@1", "map_at_r", "openset_accuracy")


def compare(reference: dict, fresh: dict, tolerance: float) -> list[str]:
    """Lines describing every metric of ``fresh`` more than ``tolerance`` below ``reference``."""
    bad = []
    for key in REGRESSED:
        ref, new = reference["metrics"].get(key), fresh["metrics"].get(key)
        if ref is None:
            continue
        if new is None or new < ref - tolerance:
            c = reference["config"]
            bad.append(
                f"{c['method']} {c['dataset']} {c['setting']} {c['query']}->{c['gallery']} seed {c['seed']}: "
                f"{key} {new if new is None else round(new, 2)} < reference {ref:.2f} - {tolerance}"
            )
    return bad


def run_regression(
    reference_dir: Path,
    tolerance: float,
    console: Console | None = None,
    quiet: bool = False,
    methods: list[str] | None = None,
) -> list[str]:
    """Re-run every reference config (optionally only ``methods``); return the failure lines."""
    refs = load_records(reference_dir)
    if methods is not None:
        refs = [r for r in refs if r["config"]["method"] in methods]
    if not refs:
        raise UserError(f"No reference records in {reference_dir}.")
    failures: list[str] = []
    with tempfile.TemporaryDirectory() as tmp:
        runner = Runner(DataOptions(quiet=True), Path(tmp), force=True)
        for i, ref in enumerate(refs, 1):
            cfg = RunConfig(**ref["config"])
            fresh = runner.run(cfg)
            bad = compare(ref, fresh, tolerance)
            failures += bad
            if console is not None and not quiet:
                m, r = fresh["metrics"], ref["metrics"]
                status = "FAIL" if bad else "ok"
                console.print(
                    f"[{i}/{len(refs)}] {cfg.method} {cfg.setting} {cfg.query}->{cfg.gallery}: "
                    f"map_all {m['map_all']:.2f} (ref {r['map_all']:.2f}) {status}",
                    markup=False,
                )
    return failures

"""CI metric regression: re-run the committed reference grid (results/reference/) and compare.

A metric more than ``TOLERANCE`` points below its reference fails. References are refreshed with
``benchmarks/make_reference.py`` after an intended change.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from u2cdr_bench.records import load_records
from u2cdr_bench.regress import compare, run_regression

REFERENCE = Path(__file__).resolve().parents[1] / "results" / "reference"
TOLERANCE = 2.0
_refs = load_records(REFERENCE) if REFERENCE.exists() else []
METHODS = sorted({r["config"]["method"] for r in _refs})


def test_reference_grid_covers_every_registered_method_and_setting():
    from u2cdr_bench.methods import method_names

    assert set(METHODS) == set(method_names())
    for m in METHODS:
        settings = {r["config"]["setting"] for r in _refs if r["config"]["method"] == m}
        pairs = {(r["config"]["query"], r["config"]["gallery"]) for r in _refs if r["config"]["method"] == m}
        assert settings == {"close-set", "partial", "open-set"}, m
        assert len(pairs) >= 2, m


def test_compare_flags_only_drops_beyond_tolerance():
    ref = {
        "config": {"method": "m", "dataset": "d", "setting": "s", "query": "a", "gallery": "b", "seed": 1},
        "metrics": {"map_all": 50.0, "p@1": 60.0, "map_at_r": None},
    }
    assert compare(ref, {"metrics": {"map_all": 48.5, "p@1": 90.0}}, 2.0) == []
    bad = compare(ref, {"metrics": {"map_all": 47.9, "p@1": 60.0}}, 2.0)
    assert len(bad) == 1 and "map_all 47.9 < reference 50.00" in bad[0]
    assert len(compare(ref, {"metrics": {"map_all": None, "p@1": 60.0}}, 2.0)) == 1


@pytest.mark.slow
@pytest.mark.parametrize("method", METHODS)
def test_no_metric_regression(method):
    failures = run_regression(REFERENCE, TOLERANCE, methods=[method])
    assert failures == []

"""benchmarks/split_sensitivity.py: the split's effect beside the seed's, by hand computation (issue 15)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location(
        "split_sensitivity", ROOT / "benchmarks" / "split_sensitivity.py"
    )
    mod = importlib.util.module_from_spec(spec)
    sys.modules["split_sensitivity"] = mod
    spec.loader.exec_module(mod)
    return mod


def _cells(by_seed: dict[int, list[float]]) -> dict[tuple[str, int], float]:
    return {(p, s): v for s, vals in by_seed.items() for p, v in zip(["A:B", "B:A"], vals, strict=True)}


def test_sensitivity_rows_by_hand() -> None:
    ss = _module()
    base = {
        ("uem", "partial"): _cells({2024: [40, 20], 2025: [50, 30], 2026: [30, 10]}),
        ("pretrained", "partial"): _cells({2024: [10, 30], 2025: [10, 30]}),
        ("coda", "partial"): _cells({2024: [50, 50]}),  # missing in the other folder: left out
    }
    other = {
        ("uem", "partial"): _cells({2024: [30, 20]}),
        ("pretrained", "partial"): _cells({2024: [30, 10]}),
    }
    rows = {r[0]: r for r in ss.sensitivity_rows(base, other, "partial", 2024)}
    assert set(rows) == {"uem", "pretrained"}
    uem = rows["uem"]
    assert uem[1:5] == pytest.approx([30.0, 25.0, -5.0, 5.0])  # |Δ| per pair: 10 and 0
    # per-seed averages 30, 40, 20: population std sqrt(200/3), range 20
    assert uem[5] == pytest.approx(math.sqrt(200 / 3)) and uem[6] == pytest.approx(20.0)
    assert uem[7] == pytest.approx(10.0)  # every pair moves by 10 under either other seed
    assert uem[8] == pytest.approx(0.0) and uem[9] == pytest.approx(0.0)
    pre = rows["pretrained"]
    assert pre[1:5] == pytest.approx([20.0, 20.0, 0.0, 20.0])  # the average holds, each pair moves by 20
    assert pre[5] == pytest.approx(0.0) and pre[7] == pytest.approx(0.0)
    assert pre[8] == pytest.approx(-10.0) and pre[9] == pytest.approx(-5.0)


def test_sensitivity_rows_without_cells() -> None:
    assert _module().sensitivity_rows({}, {}, "open-set", 2024) == []

"""benchmarks/versus_current.py: the reference's rank and paired tests on current-code cells (issue 15)."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _module():
    spec = importlib.util.spec_from_file_location("versus_current", ROOT / "benchmarks" / "versus_current.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules["versus_current"] = mod
    spec.loader.exec_module(mod)
    return mod


def _cells(values: list[float]) -> dict[tuple[str, int], float]:
    pairs = ["A:B", "B:A", "A:C", "C:A", "B:C", "C:B"]
    return {(p, 2024): v for p, v in zip(pairs, values, strict=False)}


def test_setting_report_ranks_and_paired_tests() -> None:
    vc = _module()
    values = {
        ("uem", "close-set"): _cells([50, 40, 30, 20, 10, 60]),
        ("pretrained", "close-set"): _cells([40, 30, 20, 10, 0, 50]),  # 10 lower everywhere
        ("darl", "close-set"): _cells([51, 42, 33, 24, 15, 66]),  # higher everywhere, +1..+6
        ("kmeans-match", "close-set"): _cells([55, 35]),  # two common cells only: not complete
        ("uem-no-pm", "close-set"): _cells([50, 41, 30, 19, 10, 60]),  # +1, -1, four ties
    }
    lines, rows = vc.setting_report(values, "close-set", "uem")
    assert lines[0] == "close-set: uem has 6 current cells (pairs × seeds)"
    # complete: pretrained, darl, uem-no-pm; uem's average 35 is below darl's 38.5 and equal to uem-no-pm's
    assert "rank 2 of 4 by the average" in lines[1]
    # per-cell ranks of uem: 2.5 on four tied cells, 3 and 2 on the others -> 2.5; darl 1, no-pm 2.5
    assert "rank 2 of 4 by the average per-cell rank (2.50)" in lines[1]
    by = {r[1]: r for r in rows}
    assert [r[1] for r in rows] == ["darl", "kmeans-match", "pretrained", "uem-no-pm"]
    darl = by["darl"]
    assert darl[2] == 6 and darl[3] == "yes" and darl[4] == pytest.approx(3.5) and darl[5] == "6/6"
    assert darl[6] == pytest.approx(2 / 64)  # exact two-sided test, all six differences positive
    assert darl[8] == pytest.approx(1.0)
    km = by["kmeans-match"]
    assert km[2] == 2 and km[3] == "no" and km[4] == pytest.approx(0.0) and km[5] == "1/2"
    assert by["pretrained"][4] == pytest.approx(-10.0) and by["pretrained"][8] == pytest.approx(-1.0)
    assert math.isfinite(by["uem-no-pm"][6]) and by["uem-no-pm"][0] == "ablation"
    # Holm over the four tests: the smallest p (darl's, 1/32 tied with pretrained's) times 4
    assert darl[7] == pytest.approx(min(1.0, 4 * 2 / 64))


def test_setting_report_without_reference() -> None:
    vc = _module()
    lines, rows = vc.setting_report({("darl", "partial"): _cells([1.0])}, "partial", "uem")
    assert lines == ["partial: no current uem record"] and rows == []

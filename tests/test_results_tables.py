"""The committed result tables (results/*.md, the README block) match what `u2cdr-bench table` renders now."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _make_tables():
    spec = importlib.util.spec_from_file_location("make_tables", ROOT / "benchmarks" / "make_tables.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


def test_committed_tables_are_current() -> None:
    expected = _make_tables().expected_files()
    assert ROOT / "results" / "digits.md" in expected, "results/digits/ holds no records"
    assert ROOT / "README.md" in expected
    for path, text in expected.items():
        assert path.read_text() == text, f"{path.relative_to(ROOT)} is stale: run benchmarks/make_tables.py"


def test_readme_block_has_every_uem_row() -> None:
    readme = (ROOT / "README.md").read_text()
    block = readme.split("<!-- results:digits-uem start -->")[1].split("<!-- results:digits-uem end -->")[0]
    for method in ("pretrained", "uem", "uem-no-pm", "uem-no-sel", "uem-no-spda", "uem-no-sn2m"):
        assert f"| {method} " in block
    for setting in ("close-set", "partial", "open-set"):
        assert setting in block


def test_replace_block_rejects_missing_markers() -> None:
    with pytest.raises(SystemExit):
        _make_tables().replace_block("no markers here", "digits-uem", "x")

"""Code fingerprints (u2cdr_bench/fingerprint.py) and the table mark for rows that mix them."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from u2cdr_bench.fingerprint import code_info, module_imports, normalise_source, run_roots, source_path
from u2cdr_bench.methods import get_method
from u2cdr_bench.records import read_record
from u2cdr_bench.tables import render_tables

FIXTURES = Path(__file__).parent / "fixtures" / "records"

SRC = '''"""Module docstring."""
X = 1
"""Attribute docstring."""


def f(a, b):
    """Function docstring."""
    # a comment
    return a + b
'''


def test_docstrings_comments_and_layout_do_not_count_but_statements_do():
    base = normalise_source(SRC)
    reworded = SRC.replace("Function docstring.", "Other words.").replace("# a comment", "# changed")
    relaid = SRC.replace("return a + b", "return (a +\n            b)")
    assert normalise_source(reworded) == base and normalise_source(relaid) == base
    assert "docstring" not in base and "comment" not in base
    assert normalise_source(SRC.replace("a + b", "a - b")) != base
    assert normalise_source(SRC.replace("X = 1", "X = 2")) != base
    only_doc = '"""Only a docstring."""\n'
    assert normalise_source(only_doc) == "pass"  # an emptied body stays valid


def test_modules_are_found_without_importing_them():
    code = (
        "import sys\n"
        "from u2cdr_bench.fingerprint import code_info, run_roots, source_path\n"
        "p = source_path('u2cdr_bench.baselines.dgdir')\n"
        "assert p.name == 'dgdir.py' and p.parent.name == 'baselines', p\n"
        "assert 'u2cdr_bench.baselines' not in sys.modules and 'torch' not in sys.modules\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert source_path("u2cdr_bench.nosuch") is None and source_path("numpy") is None
    assert "u2cdr_bench.baselines.ucdir" in module_imports(
        "u2cdr_bench.baselines.dgdir"
    )  # from .ucdir import
    assert "u2cdr_bench.blocks.detector" in module_imports("u2cdr_bench.methods.base")  # a lazy import


def test_the_closure_holds_what_the_run_executes_and_nothing_else():
    uem = code_info(run_roots(get_method("uem-no-pm"), "u2cdr_bench.data.digits", False))
    mods = set(uem["modules"])
    assert {
        "u2cdr_bench.methods.uem.ablations",
        "u2cdr_bench.methods.uem.method",
        "u2cdr_bench.methods.uem.idse",
        "u2cdr_bench.methods.common",
        "u2cdr_bench.blocks.memory",
        "u2cdr_bench.blocks.merging",
        "u2cdr_bench.data.digits",
        "u2cdr_bench.data.augment",
        "u2cdr_bench.training",
        "u2cdr_bench.metrics",
        "u2cdr_bench.retrieval",
        "u2cdr_bench.protocols",
    } <= mods
    for not_numeric in ("u2cdr_bench.cli", "u2cdr_bench.records", "u2cdr_bench.tables", "u2cdr_bench.errors"):
        assert not_numeric not in mods
    assert "u2cdr_bench.methods.hparams" not in mods and "u2cdr_bench.features" not in mods
    real = code_info(run_roots(get_method("pretrained"), "u2cdr_bench.data.real", True))
    assert {"u2cdr_bench.features", "u2cdr_bench.backbones", "u2cdr_bench.data.real"} <= set(real["modules"])
    assert "u2cdr_bench.methods.uem.method" not in real["modules"]
    assert len(uem["fingerprint"]) == 16 and uem["fingerprint"] != real["fingerprint"]
    assert code_info(run_roots(get_method("uem-no-pm"), "u2cdr_bench.data.digits", False)) == uem


def _fixture_copy(tmp_path: Path, fingerprints: dict[str, str | None]) -> Path:
    """Copies of fixture records with the given code fingerprints (``None``: no ``code`` block)."""
    folder = tmp_path / "recs"
    folder.mkdir(parents=True)
    for name, fp in fingerprints.items():
        rec = read_record(FIXTURES / name)
        if fp is not None:
            rec["code"] = {"fingerprint": fp, "modules": []}
        (folder / name).write_text(json.dumps(rec))
    return folder


def _load(folder: Path) -> list[dict]:
    return [read_record(p) for p in sorted(folder.glob("*.json"))]


def test_table_marks_a_row_whose_records_come_from_several_fingerprints(tmp_path):
    # uem office31 close-set A->D seed 2024 and D->W seed 2024: one row, two cells
    names = ["3aa8645165262a2c.json", "390e1ea3c995d90e.json", "20b90d32355b9de3.json"]
    same = _load(_fixture_copy(tmp_path / "a", {names[0]: "a" * 16, names[1]: "a" * 16, names[2]: "b" * 16}))
    text = render_tables(same, dataset="office31", setting="close-set")
    assert "†" not in text  # one fingerprint per row (pretrained's differs, but it is another row)
    mixed = _load(_fixture_copy(tmp_path / "b", {names[0]: "a" * 16, names[1]: "c" * 16, names[2]: None}))
    text = render_tables(mixed, dataset="office31", setting="close-set")
    assert "| uem †      |" in text and "| pretrained |" in text  # pretrained: one record, one version
    assert "† records from several code versions (fingerprints); re-run with --force" in text
    latex = render_tables(mixed, dataset="office31", setting="close-set", fmt="latex")
    assert r"uem \dag{}" in latex
    old = _load(_fixture_copy(tmp_path / "c", {n: None for n in names}))
    assert "†" not in render_tables(old, dataset="office31", setting="close-set")  # committed results

"""Methods from outside the package: ``--method MODULE:CLASS`` and the ``u2cdr_bench.methods`` entry points.

The example of docs/extending.md (docs/examples/my_method.py) is run end to end as an import spec (run, table,
regress, in this process) and as an installed distribution with an entry point (a dist-info folder on
PYTHONPATH, in subprocesses: list methods, run, table). Each bad plug-in gets one sentence and exit code 2.
"""

from __future__ import annotations

import importlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
from importlib import metadata
from pathlib import Path

import pytest

from u2cdr_bench import plugins
from u2cdr_bench.cli import main
from u2cdr_bench.methods import METHODS, get_method, method_names
from u2cdr_bench.regress import run_regression

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "docs" / "examples" / "my_method.py"
SPEC = "my_method:TwoViewContrast"
RUN = ["--protocol", "open-set", "--pairs", "mnist:optdigits", "--epochs-scale", "0.1", "--quiet"]


def _forget(*names: str) -> None:
    """Remove plug-ins registered by a test (the registry is process-wide)."""
    for name in names:
        METHODS._entries.pop(name, None)
        plugins.BROKEN.pop(name, None)


@pytest.fixture
def plugin_dir(tmp_path, monkeypatch):
    """A folder on sys.path holding the example module and a few broken plug-in modules."""
    folder = tmp_path / "plugins"
    folder.mkdir()
    shutil.copy(EXAMPLE, folder / "my_method.py")
    (folder / "bad_import.py").write_text("import a_package_that_is_not_installed_anywhere\n")
    (folder / "bad_raise.py").write_text("raise RuntimeError('boom at import')\n")
    (folder / "not_method.py").write_text(
        textwrap.dedent(
            """
            class Plain:
                pass

            VALUE = 3
            """
        )
    )
    (folder / "abstract_method.py").write_text(
        textwrap.dedent(
            """
            from u2cdr_bench.methods.base import Method

            class Half(Method):
                name = "half"
            """
        )
    )
    monkeypatch.syspath_prepend(str(folder))
    for mod in ("my_method", "bad_import", "bad_raise", "not_method", "abstract_method"):
        sys.modules.pop(mod, None)
    yield folder
    _forget(SPEC, "not_method:Plain", "abstract_method:Half")
    for mod in ("my_method", "bad_import", "bad_raise", "not_method", "abstract_method"):
        sys.modules.pop(mod, None)


def _main(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_import_spec_runs_tables_and_regresses(plugin_dir, tmp_path, capsys):
    runs = tmp_path / "runs"
    code, out, err = _main(["run", "--method", SPEC, *RUN, "--json", "--out", str(runs)], capsys)
    assert code == 0, err
    rec = json.loads(out)
    assert rec["config"]["method"] == SPEC  # the spec is the name: regress can re-import it
    assert rec["method_info"]["epochs"] == 1  # 10 epochs × 0.1
    assert 0.0 <= rec["metrics"]["map_all"] <= 100.0 and rec["metrics"]["openset_accuracy"] is not None
    cls = get_method(SPEC)
    assert cls.name == SPEC and cls.__name__ == "TwoViewContrast"
    assert method_names()[-1] == SPEC  # after the built-ins

    code, out, err = _main(["table", "--runs", str(runs)], capsys)
    assert code == 0, err
    row = [line for line in out.splitlines() if line.startswith(f"| {SPEC}")]
    assert len(row) == 1 and f"{rec['metrics']['map_all']:.1f}" in row[0]

    # regress re-runs the record's config from scratch: same seed, same numbers (tolerance 1e-9), no failure
    from u2cdr_bench.regress import cell_averages, load_records

    cells = cell_averages(load_records(runs))[SPEC]
    tol = {"methods": {SPEC: {k: {"center": v, "tolerance": 1e-9} for k, v in cells.items()}}}
    (tmp_path / "tol.json").write_text(json.dumps(tol))
    assert run_regression(runs, tmp_path / "tol.json", quiet=True) == []


def test_example_label_hygiene_test_passes_and_is_the_documented_one(plugin_dir):
    sys.path.insert(0, str(EXAMPLE.parent))
    try:
        mod = importlib.import_module("test_my_method")
        mod.test_labels_never_reach_the_method()
    finally:
        sys.path.remove(str(EXAMPLE.parent))
        sys.modules.pop("test_my_method", None)
    doc = (ROOT / "docs" / "extending.md").read_text()
    assert EXAMPLE.read_text().rstrip() in doc
    assert (EXAMPLE.parent / "test_my_method.py").read_text().rstrip() in doc


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("no_such_module_anywhere:Thing", "module 'no_such_module_anywhere' is not importable"),
        ("bad_import:Thing", "importing module 'bad_import' failed"),
        ("bad_raise:Thing", "RuntimeError: boom at import"),
        ("my_method:NoSuchClass", "has no attribute 'NoSuchClass'"),
        ("not_method:Plain", "is a class Plain, not a subclass of u2cdr_bench.methods.base.Method"),
        ("not_method:VALUE", "is a int, not a subclass"),
        ("abstract_method:Half", "does not implement embed, fit"),
    ],
)
def test_bad_plugin_is_one_sentence_exit_2(plugin_dir, tmp_path, capsys, spec, expected):
    code, out, err = _main(["run", "--method", spec, *RUN, "--out", str(tmp_path / "runs")], capsys)
    assert code == 2
    assert expected in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_broken_entry_point_is_skipped_and_named_on_use(monkeypatch, capsys):
    eps = [
        metadata.EntryPoint("broken-one", "no_such_module_anywhere:X", plugins.ENTRY_POINT_GROUP),
        metadata.EntryPoint("uem", "whatever:X", plugins.ENTRY_POINT_GROUP),  # a taken name
    ]
    method_names()  # the built-ins are registered first
    monkeypatch.setattr(plugins, "method_entry_points", lambda: eps)
    try:
        plugins.load_entry_points(METHODS)
        err = capsys.readouterr().err
        assert "warning: Plug-in method 'broken-one'" in err and "not importable" in err
        assert "'uem' (whatever:X) is skipped: the name is taken already" in err
        assert "broken-one" not in method_names()
        assert get_method("uem").__module__ == "u2cdr_bench.methods.uem.method"
        code = main(["run", "--method", "broken-one", "--quiet"])
        err = capsys.readouterr().err
        assert code == 2 and err.startswith("error: Plug-in method 'broken-one' (entry point")
    finally:
        _forget("broken-one")


def test_import_spec_is_found_in_the_current_folder_by_the_console_script(tmp_path):
    shutil.copy(EXAMPLE, tmp_path / "my_method.py")
    script = Path(sys.executable).parent / "u2cdr-bench"  # sys.path[0] is its folder, not the cwd
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = subprocess.run(
        [sys.executable, str(script), "run", "--method", SPEC, "--hp", "nope=1", "--quiet"],
        env=env, cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    # the spec was imported: the hyper-parameter check lists the example's own defaults
    assert out.returncode == 2 and "hyper-parameter of method my_method:TwoViewContrast 'nope'" in out.stderr
    assert "lam" in out.stderr and "tau" in out.stderr


def _install_fake_distribution(site: Path) -> None:
    """A distribution as pip leaves it: the package and a dist-info folder with the entry point."""
    pkg = site / "toy_u2cdr_plugin"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    shutil.copy(EXAMPLE, pkg / "method.py")
    info = site / "toy_u2cdr_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: toy-u2cdr-plugin\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(
        "[u2cdr_bench.methods]\ntwo-view = toy_u2cdr_plugin.method:TwoViewContrast\n"
    )
    (info / "RECORD").write_text("")


@pytest.mark.slow
def test_entry_point_plugin_lists_runs_and_tables(tmp_path):
    site = tmp_path / "site"
    _install_fake_distribution(site)
    env = dict(os.environ, PYTHONPATH=str(site), U2CDR_THREADS="1")
    cli = [sys.executable, "-c", "import sys; from u2cdr_bench.cli import main; sys.exit(main(sys.argv[1:]))"]

    def call(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [*cli, *args], env=env, cwd=tmp_path, capture_output=True, text=True, timeout=300
        )

    listed = call("list", "methods")
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert lines[-2] == "plug-ins:"  # the installed plug-ins are listed last, in their own group
    assert lines[-1].split()[0] == "two-view" and "Example plug-in: SimCLR two-view contrast" in lines[-1]

    runs = tmp_path / "runs"
    ran = call("run", "--method", "two-view", *RUN, "--json", "--out", str(runs))
    assert ran.returncode == 0, ran.stderr
    rec = json.loads(ran.stdout)
    assert rec["config"]["method"] == "two-view" and rec["method_info"]["epochs"] == 1

    tabled = call("table", "--runs", str(runs))
    assert tabled.returncode == 0, tabled.stderr
    assert any(line.startswith("| two-view") for line in tabled.stdout.splitlines())

    from u2cdr_bench.regress import cell_averages, load_records

    cells = cell_averages(load_records(runs))["two-view"]
    tol = {"methods": {"two-view": {k: {"center": v, "tolerance": 1e-9} for k, v in cells.items()}}}
    (tmp_path / "tol.json").write_text(json.dumps(tol))
    regressed = call(
        "regress", "--reference", str(runs), "--tolerances", str(tmp_path / "tol.json"), "--quiet"
    )
    assert regressed.returncode == 0, regressed.stderr
    assert "no regression" in regressed.stderr

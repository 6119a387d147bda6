"""Every user mistake of issue 12: exit 2, one line starting ``error:``, no traceback, ``--out`` unchanged.

Command-line parse errors run three ways (the console script in a subprocess, typer's ``CliRunner`` on the
app, and :func:`u2cdr_bench.cli.main`); the errors raised by our own checks run through ``main`` (the same
code path, without paying a subprocess per case). docs/reliability.md ("User errors") lists these cases.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from u2cdr_bench.cli import app, main

FIXTURES = Path(__file__).parent / "fixtures" / "records"
EXE = Path(sys.executable).with_name("u2cdr-bench")


def _snapshot(path: Path) -> object:
    """Everything under ``path`` (names and bytes), ``None`` when it does not exist."""
    if not path.exists():
        return None
    if path.is_file():
        return ("file", path.read_bytes())
    return sorted(
        (str(p.relative_to(path)), p.read_bytes() if p.is_file() else None) for p in path.rglob("*")
    )


def _assert_one_error_line(code: int, err: str, fragment: str) -> None:
    assert code == 2, err
    assert err.startswith("error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert "Traceback" not in err
    assert fragment in err, err


# ------------------------------------------------------------------------------ parse errors (click)
PARSE_CASES = [
    pytest.param(["run", "--nosuch"], "No such option: --nosuch", id="unknown-option"),
    pytest.param(
        ["frobnicate"], "No such command 'frobnicate'; valid commands: run, table", id="unknown-command"
    ),
    pytest.param(["run", "--epochs-scale", "abc"], "Invalid value for '--epochs-scale'", id="not-a-number"),
    pytest.param(["run", "--split-seed", "x"], "Invalid value for '--split-seed'", id="not-an-integer"),
    pytest.param(["data", "info", "pacs"], "unexpected extra argument", id="extra-argument"),
    pytest.param(["list"], "Missing argument 'WHAT'", id="missing-argument"),
    pytest.param(["run", "--seeds"], "requires an argument", id="missing-value"),
]


@pytest.mark.parametrize("args, fragment", PARSE_CASES)
def test_parse_error_console_script(args, fragment, tmp_path):
    before = _snapshot(tmp_path)
    proc = subprocess.run([str(EXE), *args], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    _assert_one_error_line(proc.returncode, proc.stderr, fragment)
    assert proc.stdout == "" and _snapshot(tmp_path) == before
    assert "see 'u2cdr-bench" in proc.stderr  # points at the right --help


@pytest.mark.parametrize("args, fragment", PARSE_CASES)
def test_parse_error_typer_runner(args, fragment, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(app, args, prog_name="u2cdr-bench")
    _assert_one_error_line(result.exit_code, result.stderr, fragment)
    assert result.stdout == "" and result.exception is None or isinstance(result.exception, SystemExit)
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize("args, fragment", PARSE_CASES)
def test_parse_error_main(args, fragment, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    code = main(args)
    cap = capsys.readouterr()
    _assert_one_error_line(code, cap.err, fragment)
    assert cap.out == "" and not any(tmp_path.iterdir())


def test_no_arguments_shows_help_and_exits_0(tmp_path):
    proc = subprocess.run([str(EXE)], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0 and "Usage: u2cdr-bench" in proc.stdout + proc.stderr


# ------------------------------------------------------------------------------ our own checks
def _records(tmp_path: Path, names: list[str]) -> Path:
    folder = tmp_path / "recs"
    folder.mkdir()
    for n in names:
        shutil.copy(FIXTURES / n, folder / n)
    return folder


def _setup(kind: str, tmp_path: Path) -> dict[str, str]:
    """Folders and files a case refers to as ``{name}`` in its arguments."""
    env = {"out": str(tmp_path / "runs"), "tmp": str(tmp_path)}
    (tmp_path / "runs").mkdir()
    (tmp_path / "runs" / "notes.txt").write_text("keep me\n")
    if kind == "file":
        (tmp_path / "afile").write_text("not a folder\n")
        env["file"] = str(tmp_path / "afile")
    elif kind == "uem-only":
        env["recs"] = str(_records(tmp_path, ["9a1384f97ca16e04.json"]))
    elif kind == "bad-record":
        folder = _records(tmp_path, ["9a1384f97ca16e04.json"])
        (folder / "broken.json").write_text('{"schema": 1')
        env["recs"] = str(folder)
    elif kind == "empty-data":
        (tmp_path / "data").mkdir()
        env["data"] = str(tmp_path / "data")
        env["newout"] = str(tmp_path / "not-yet")
    return env


OWN_CASES = [
    # item 4: seeds, split seed, epochs scale
    (
        "",
        ["run", "--seeds", "-5", "--out", "{out}"],
        "--seeds takes whole numbers from 0 to 4294967295, got -5",
    ),
    ("", ["run", "--seeds=-5", "--out", "{out}"], "--seeds takes whole numbers"),
    ("", ["run", "--seeds", "2024,2024", "--out", "{out}"], "--seeds lists 2024 more than once"),
    ("", ["run", "--seeds", "4294967296", "--out", "{out}"], "--seeds takes whole numbers"),
    ("", ["run", "--split-seed", "-1", "--out", "{out}"], "--split-seed takes whole numbers"),
    ("", ["run", "--epochs-scale", "nan", "--out", "{out}"], "--epochs-scale must be positive and finite"),
    ("", ["run", "--epochs-scale", "inf", "--out", "{out}"], "--epochs-scale must be positive and finite"),
    ("", ["run", "--epochs-scale", "-1", "--out", "{out}"], "--epochs-scale must be positive and finite"),
    (
        "",
        ["protocol", "show", "digits", "open-set", "--split-seed", "-1"],
        "--split-seed takes whole numbers",
    ),
    # empty or repeated list items, bad counts: refused before any work (a new user's review, 2026-12-04)
    ("", ["run", "--seeds", "1,,2", "--out", "{out}"], "--seeds has an empty item in '1,,2'"),
    ("", ["run", "--pairs", "", "--out", "{out}"], "--pairs is empty"),
    ("", ["run", "--pairs", "MN:OD,mnist:optdigits", "--out", "{out}"], "is given twice in --pairs"),
    ("", ["run", "--n-views", "-1", "--out", "{out}"], "--n-views must be >= 0, got -1"),
    (
        "",
        ["run", "--launcher", "submitit-local", "--slurm-timeout-min", "0", "--out", "{out}"],
        "--slurm-timeout-min must be >= 1, got 0",
    ),
    ("", ["run", "--backbone", "foo", "--out", "{out}"], "Unknown backbone 'foo'; valid choices:"),
    # item 3: hyper-parameters, checked before any work
    (
        "",
        ["run", "--hp", "lr=abc", "--out", "{out}"],
        "Hyper-parameter lr of method uem must be a number >= 0, got 'abc'",
    ),
    ("", ["run", "--hp", "lr=-1", "--out", "{out}"], "lr of method uem must be a number >= 0, got -1"),
    (
        "",
        ["run", "--hp", "batch_size=abc", "--out", "{out}"],
        "batch_size of method uem must be an integer >= 2",
    ),
    (
        "",
        ["run", "--hp", "idse_epochs=2.5", "--out", "{out}"],
        "idse_epochs of method uem must be an integer >= 1, got 2.5",
    ),
    ("", ["run", "--hp", "use_sel=maybe", "--out", "{out}"], "use_sel of method uem must be true or false"),
    (
        "",
        ["run", "--hp", "adv_mode=wgan", "--out", "{out}"],
        "adv_mode of method uem must be one of grl, flip",
    ),
    ("", ["run", "--hp", "tau=.nan", "--out", "{out}"], "tau of method uem must be a number > 0, got nan"),
    (
        "",
        ["run", "--hp", "elbow_k_min=30", "--out", "{out}"],
        "elbow_k_max of method uem must be >= elbow_k_min (30)",
    ),
    (
        "",
        ["run", "--hp", "detector_threshold=foo", "--out", "{out}"],
        "Method uem has its own open-set detector and does not read detector_threshold",
    ),
    (
        "",
        ["run", "--method", "pretrained", "--hp", "detector_threshold=foo", "--out", "{out}"],
        "detector_threshold of method pretrained must be one of radius, diameter, got 'foo'",
    ),
    (
        "",
        ["run", "--method", "protonce", "--hp", "num_clusters=[3,0]", "--out", "{out}"],
        "num_clusters of method protonce must be a non-empty list of integers >= 1 (or null)",
    ),
    (
        "",
        ["run", "--method", "dann", "--hp", "adv_weight=-0.5", "--out", "{out}"],
        "adv_weight of method dann must be a number >= 0",
    ),
    (
        "",
        ["run", "--method", "dgdir", "--hp", "memory_init=zeros", "--out", "{out}"],
        "memory_init of method dgdir must be one of random, features",
    ),
    (
        "",
        ["run", "--method", "pretrained", "--hp", "lr=0.1", "--out", "{out}"],
        "Unknown hyper-parameter of method pretrained 'lr'",
    ),
    # item 2: --out checked before any work
    ("file", ["run", "--method", "pretrained", "--out", "{file}"], "is a file, not a folder"),
    (
        "",
        ["run", "--method", "pretrained", "--out", "/proc/u2cdr-bench-test/runs"],
        "is not writable: a folder cannot be created in /proc",
    ),
    ("file", ["run", "--method", "pretrained", "--out", "{file}/runs"], "is a file, not a folder"),
    # data missing: found by the preflight, before the lock or any folder is created
    (
        "empty-data",
        ["run", "--dataset", "pacs", "--pairs", "P:S", "--data-dir", "{data}", "--out", "{newout}"],
        "domain 'photo' not found",
    ),
    # item 7: order of checks, table
    (
        "",
        ["data", "verify", "nosuch"],
        "Unknown dataset 'nosuch'; valid choices: domainnet, office31, officehome, pacs",
    ),
    ("", ["data", "download", "nosuch"], "Unknown dataset 'nosuch'"),
    ("uem-only", ["table", "--runs", "{recs}", "--versus", "uem"], "Nothing to compare 'uem' against"),
    ("bad-record", ["table", "--runs", "{recs}"], "pass --skip-bad to leave it out"),
    ("uem-only", ["table", "--runs", "{recs}", "--output", "{tmp}"], "is a folder; pass a file name"),
]


@pytest.mark.parametrize(
    "kind, args, fragment", [pytest.param(*c, id=f"{i}-{c[1][0]}-{c[1][1]}") for i, c in enumerate(OWN_CASES)]
)
def test_user_error(kind, args, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("U2CDR_DATA", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))  # a stray write would land here
    env = _setup(kind, tmp_path)
    argv = [a.format(**env) for a in args]
    watched = [Path(a) for a in argv if a.startswith(str(tmp_path)) or a.startswith("/proc")]
    before = _snapshot(tmp_path), [_snapshot(p) for p in watched]
    code = main(argv)
    cap = capsys.readouterr()
    _assert_one_error_line(code, cap.err, fragment)
    assert cap.out == ""
    assert (_snapshot(tmp_path), [_snapshot(p) for p in watched]) == before


def test_read_only_out_folder(tmp_path, capsys):
    if os.geteuid() == 0:
        pytest.skip("root writes into read-only folders; /proc and file cases cover the check")
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        code = main(["run", "--method", "pretrained", "--out", str(ro / "runs")])
        _assert_one_error_line(code, capsys.readouterr().err, "is not writable")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_skip_bad_lists_what_it_skipped(tmp_path, capsys):
    env = _setup("bad-record", tmp_path)
    code = main(["table", "--runs", env["recs"], "--skip-bad"])
    cap = capsys.readouterr()
    assert code == 0
    assert cap.err.startswith("skipped: Malformed record ") and "broken.json" in cap.err
    assert cap.err.count("\n") == 1
    assert "MN→OD" in cap.out and "uem" in cap.out


def test_help_has_no_type_tags(capsys):
    commands = [["run"], ["table"], ["list"], ["regress"], ["protocol", "show"], ["protocol", "generate"]]
    commands += [["data", "download"], ["data", "verify"], ["data", "info"], [], ["data"], ["protocol"]]
    commands += [["retrieve"], ["plot", "retrievals"], ["plot", "embedding"], ["plot", "results"]]
    for args in ([*c, "--help"] for c in commands):
        assert main(args) == 0
        text = capsys.readouterr().out
        assert "--out DIR" in text or args != ["run", "--help"]
        for tag in ("<bool>", "<str>", "<int>", "<float>", "<list", "<path>", ":mod:", "--no-quiet"):
            assert tag not in text, (args, tag)


def test_hp_errors_name_the_valid_keys(capsys):
    code = main(["run", "--method", "cds", "--hp", "topk=3"])
    err = capsys.readouterr().err
    _assert_one_error_line(code, err, "Unknown hyper-parameter of method cds 'topk'; valid choices:")
    assert "top_k" in err and "detector_threshold" in err and "lr" in err


def test_valid_values_pass_the_checks(tmp_path):
    """The same checks accept good values (so the cases above fail for the reason they name)."""
    from u2cdr_bench.data.registry import DataOptions
    from u2cdr_bench.runner import plan

    cfgs = plan(
        "uem",
        "digits",
        "open-set",
        "MN:OD",
        [0, 2024, 2**32 - 1],
        DataOptions(),
        split_seed=3,
        epochs_scale=0.25,
        hparams={"lr": 1, "batch_size": 32, "use_sel": False, "elbow_k_min": 3, "tau": 0.1},
    )
    assert [c.seed for c in cfgs] == [0, 2024, 2**32 - 1] and cfgs[0].hparams["lr"] == 1
    assert json.loads(json.dumps(cfgs[0].as_dict()))["split_seed"] == 3


# ------------------------------------------------------------------------------ warnings and unscored runs
def test_python_warnings_print_as_one_line_each_without_source(tmp_path):
    """A warning raised during a command is one ``warning: ...`` line (no file, line or code excerpt);
    options a dataset does not use are named as ignored before the checks that follow."""
    args = ["run", "--backbone", "resnet50", "--feature-views", "dropout", "--hp", "lr=abc"]
    proc = subprocess.run(
        [str(EXE), *args, "--out", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
    )
    lines = proc.stderr.splitlines()
    assert proc.returncode == 2 and lines[-1].startswith("error: Hyper-parameter lr"), proc.stderr
    assert lines[:-1] == [
        "warning: --backbone resnet50 is ignored by dataset digits (its own small CNN).",
        "warning: --feature-views dropout is ignored by dataset digits (images, augmented on the fly; "
        "feature-space views are for features without stored views).",
    ]
    assert not (tmp_path / "r").exists()


def test_show_warning_prints_each_text_once(capsys):
    from u2cdr_bench import entry

    entry._SHOWN.clear()
    for _ in range(2):
        entry._show_warning(UserWarning("two  domains\n share nothing"), UserWarning, "f.py", 3)
    assert capsys.readouterr().err == "warning: two domains share nothing.\n"


def test_result_line_of_an_unscored_run():
    from u2cdr_bench.cli_run import _result_line

    rec = {"metrics": {"map_all": None, "openset_accuracy": 92.66}, "timings": {"total_s": 8.04}}
    assert _result_line("[1/1] x", rec) == "[1/1] x: mAP@All n/a, open-set acc 92.7 (8.0 s)"

"""The command line: the issue's done-when command, bad input (one sentence, exit 2, nothing written)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from u2cdr_bench.cli import main


def _run(args: list[str], capsys) -> tuple[int, str, str]:
    code = main(args)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_pretrained_open_set_json_record(tmp_path, capsys):
    out_dir = tmp_path / "runs"
    code, out, err = _run(
        [
            "run",
            "--method",
            "pretrained",
            "--protocol",
            "open-set",
            "--dataset",
            "digits",
            "--pairs",
            "mnist:optdigits",
            "--seeds",
            "2024",
            "--json",
            "--quiet",
            "--out",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0, err
    rec = json.loads(out)
    m = rec["metrics"]
    for key in ("map_all", "p@1", "p@5", "p@15", "map_at_r", "openset_accuracy", "false_rejection"):
        assert isinstance(m[key], float), key
    assert 0 <= m["map_all"] <= 100
    assert rec["config"]["query"] == "mnist" and rec["config"]["gallery"] == "optdigits"
    assert rec["protocol"]["gallery_classes"] == ["0", "1", "4", "5", "8"]
    assert rec["counts"]["n_query"] == 5000 and rec["counts"]["n_query_private"] == 2500
    files = list(out_dir.glob("*.json"))
    assert [f.stem for f in files] == [rec["config_hash"]]

    # a finished run is skipped (same record back), unless --force
    code, out2, err2 = _run(
        [
            "run",
            "--method",
            "pretrained",
            "--dataset",
            "digits",
            "--pairs",
            "MN:OD",
            "--json",
            "--out",
            str(out_dir),
        ],
        capsys,
    )
    assert code == 0 and "done already" in err2
    assert json.loads(out2)["created"] == rec["created"]

    # the table renders it
    code, table, _ = _run(["table", "--runs", str(out_dir)], capsys)
    assert code == 0 and "MN→OD" in table and "pretrained" in table
    assert f"{m['map_all']:.1f} / {m['openset_accuracy']:.1f}" in table


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["run", "--method", "nope"], "Unknown method 'nope'; valid choices:"),
        (["run", "--dataset", "nope"], "Unknown dataset 'nope'; valid choices:"),
        (
            ["run", "--protocol", "semi"],
            "Unknown protocol 'semi'; valid choices: close-set, open-set, partial.",
        ),
        (["run", "--pairs", "mnist:mnist"], "uses domain 'mnist' twice"),
        (["run", "--pairs", "mnist:svhn"], "Unknown domain of dataset digits 'svhn'"),
        (["run", "--pairs", "mnist"], "Bad pair 'mnist'"),
        (["run", "--seeds", "x"], "--seeds must be comma-separated integers"),
        (["run", "--hp", "nokey"], "--hp takes KEY=VALUE"),
        (
            ["run", "--method", "pretrained", "--hp", "zzz=1"],
            "Unknown hyper-parameter of method pretrained 'zzz'",
        ),
        (["run", "--epochs-scale", "0"], "--epochs-scale must be positive"),
        (["run", "--mode", "train"], "Unknown mode 'train'"),
        (["table", "--runs", "/nonexistent/runs"], "does not exist"),
        (["table", "--metric", "auc"], "Unknown metric 'auc'"),
        (["table", "--format", "html"], "Unknown format 'html'"),
        (["list", "things"], "Unknown list 'things'"),
        (["protocol", "show", "digits", "semi"], "Unknown protocol 'semi'"),
    ],
)
def test_bad_input_one_sentence_exit_2(args, fragment, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, out, err = _run(args, capsys)
    assert code == 2
    assert fragment in err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not (tmp_path / "runs").exists()


def test_malformed_record_is_a_user_error(tmp_path, capsys):
    (tmp_path / "bad.json").write_text("{not json")
    code, _, err = _run(["table", "--runs", str(tmp_path)], capsys)
    assert code == 2 and "bad.json" in err and err.startswith("error: ")


def test_empty_records_folder(tmp_path, capsys):
    code, _, err = _run(["table", "--runs", str(tmp_path)], capsys)
    assert code == 2 and "No run records" in err


def test_list_commands(capsys):
    for what, expected in [
        ("methods", "pretrained"),
        ("datasets", "digits"),
        ("protocols", "open-set"),
        ("metrics", "map_all"),
    ]:
        code, out, _ = _run(["list", what], capsys)
        assert code == 0 and expected in out


def test_protocol_show(capsys):
    code, out, _ = _run(["protocol", "show", "digits", "partial"], capsys)
    assert code == 0 and "query classes (5)" in out and "gallery classes (10)" in out and "hash:" in out


def test_console_script_exit_code(tmp_path):
    exe = Path(sys.executable).with_name("u2cdr-bench")
    proc = subprocess.run([str(exe), "run", "--method", "nope"], capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == 2 and proc.stderr.startswith("error: Unknown method 'nope'")


def test_submitit_local_launcher_writes_the_same_record(tmp_path, capsys):
    args = [
        "run",
        "--method",
        "pretrained",
        "--protocol",
        "close-set",
        "--pairs",
        "optdigits:printed",
        "--json",
        "--quiet",
    ]
    code, out, err = _run([*args, "--out", str(tmp_path / "a")], capsys)
    assert code == 0, err
    code, out2, err2 = _run([*args, "--out", str(tmp_path / "b"), "--launcher", "submitit-local"], capsys)
    assert code == 0, err2
    a, b = json.loads(out), json.loads(out2)
    assert a["config_hash"] == b["config_hash"] and a["metrics"] == b["metrics"]
    assert (tmp_path / "b" / f"{b['config_hash']}.json").exists()


def test_unknown_launcher(capsys):
    code, _, err = _run(["run", "--launcher", "pbs"], capsys)
    assert code == 2 and "Unknown launcher 'pbs'" in err


def test_exit_codes_from_typer_exit_are_returned(monkeypatch, capsys):
    import u2cdr_bench.regress as regress_mod

    monkeypatch.setattr(regress_mod, "run_regression", lambda *a, **k: ["m: map_all 1 < reference 50"])
    code, _, err = _run(["regress", "--quiet"], capsys)
    assert code == 1 and "1 regression(s) beyond the measured spread" in err


def test_table_versus(capsys):
    runs = str(Path(__file__).parent / "fixtures" / "records")
    code, out, err = _run(["table", "--runs", runs, "--versus", "uem", "--protocol", "open-set"], capsys)
    assert code == 0, err
    assert "| pretrained | +4.0 (1/2) |" in out
    code, _, err = _run(["table", "--runs", runs, "--versus", "uem"], capsys)
    assert code == 2 and "names 2 rows of the office31 close-set table" in err and err.count("\n") == 1
    code, _, err = _run(["table", "--runs", runs, "--versus", "uem", "--paper"], capsys)
    assert code == 2 and "drop --paper" in err

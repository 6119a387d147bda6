"""Faults of issue 12 and what survives each (docs/reliability.md, "Faults").

SIGINT and SIGKILL during training, SIGKILL during feature extraction, an ``--out`` that fails at the end,
corrupt caches, two processes on one config (and on one feature view), stale records (code fingerprints),
the views a method extracts, the non-terminal progress lines, ``list`` without torch, record file modes and
failed downloads. Subprocesses run the real console script; holders of a lock are separate processes.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from u2cdr_bench import progress
from u2cdr_bench.cli import main
from u2cdr_bench.data.registry import DataOptions
from u2cdr_bench.records import read_record, write_record

EXE = Path(sys.executable).with_name("u2cdr-bench")
ENV = {**os.environ, "U2CDR_THREADS": "1", "PYTHONUNBUFFERED": "1"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory) -> Path:
    """A cache folder shared by this module (the digits are built once)."""
    return tmp_path_factory.mktemp("cache")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*")) if root.exists() else []


class _Lines:
    """Collect a subprocess's stderr lines in a thread; ``wait_for`` polls them."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(proc,), daemon=True)
        self.thread.start()

    def _read(self, proc: subprocess.Popen) -> None:
        for line in proc.stderr:  # type: ignore[union-attr]
            self.lines.append(line)

    def wait_for(self, text: str, timeout: float = 240.0) -> None:
        t0 = time.monotonic()
        while not any(text in line for line in self.lines):
            if time.monotonic() - t0 > timeout:
                raise AssertionError(f"no line with {text!r} in {self.lines}")
            time.sleep(0.05)

    def text(self) -> str:
        self.thread.join(timeout=30)
        return "".join(self.lines)


def _popen(args: list[str], cwd: Path) -> tuple[subprocess.Popen, _Lines]:
    proc = subprocess.Popen(args, cwd=cwd, env=ENV, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return proc, _Lines(proc)


# ------------------------------------------------------------------------------------------ SIGINT
def test_sigint_during_training_writes_nothing(tmp_path, cache):
    out = tmp_path / "runs"
    args = [
        str(EXE),
        "run",
        "--method",
        "uem",
        "--pairs",
        "MN:OD",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
    ]
    proc, lines = _popen(args, tmp_path)
    lines.wait_for(": started")
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    assert proc.wait(timeout=120) == 130
    err = lines.text()
    assert err.splitlines()[-1] == "interrupted; nothing was written."
    assert "Traceback" not in err and not out.exists()  # no record, no lock file, no empty folder


def test_sigint_after_a_finished_run_says_what_was_written(tmp_path, cache, capsys, monkeypatch):
    from u2cdr_bench.entry import Interrupted
    from u2cdr_bench.runner import Runner

    real_run = Runner.run
    calls = []

    def run_then_interrupt(self, cfg, progress=None):
        calls.append(cfg)
        if len(calls) == 2:
            raise Interrupted()  # what the SIGINT handler raises
        return real_run(self, cfg, progress=progress)

    monkeypatch.setattr(Runner, "run", run_then_interrupt)
    out = tmp_path / "runs"
    code = main(
        ["run", "--method", "pretrained", "--pairs", "MN:OD,OD:MN", "--out", str(out)]
        + ["--quiet"]
        + ["--cache-dir", str(cache)]
    )
    err = capsys.readouterr().err
    assert code == 130
    assert err.splitlines()[-1] == (
        f"interrupted; 1 finished run record(s) were written to {out} and are kept; "
        "the same command skips them and runs the rest."
    )
    assert [p.suffix for p in out.iterdir()] == [".json"]  # the record; no lock file left


# ------------------------------------------------------------------------------------------ locks
HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from u2cdr_bench.data.registry import DataOptions
    from u2cdr_bench.runner import Runner, plan
    out, cache, ready, go, train = sys.argv[1:6]
    opts = DataOptions(cache_dir=Path(cache), quiet=True)
    cfg = plan("pretrained", "digits", "open-set", "MN:OD", [2024], opts)[0]
    runner = Runner(opts, Path(out))
    with runner.lock(cfg, wait=False) as held:
        assert held
        Path(ready).touch()
        while not Path(go).exists():
            time.sleep(0.05)
        if train == "1":
            runner.run(cfg)
    """
)


def _holder(tmp_path: Path, out: Path, cache: Path, train: bool) -> tuple[subprocess.Popen, Path, Path]:
    ready, go = tmp_path / "ready", tmp_path / "go"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(out), str(cache), str(ready), str(go), "1" if train else "0"],
        env=ENV,
    )
    t0 = time.monotonic()
    while not ready.exists():
        assert proc.poll() is None and time.monotonic() - t0 < 240
        time.sleep(0.05)
    return proc, ready, go


def test_two_processes_on_one_config_train_it_once(tmp_path, cache):
    out = tmp_path / "runs"
    holder, _, go = _holder(tmp_path, out, cache, train=True)
    args = [str(EXE), "run", "--method", "pretrained", "--pairs", "MN:OD", "--json"]
    proc, lines = _popen([*args, "--out", str(out), "--cache-dir", str(cache)], tmp_path)
    lines.wait_for("another u2cdr-bench process is running it; waiting for it at the end")
    go.touch()  # the holder now trains and writes the record while the CLI waits
    stdout = proc.stdout.read()  # type: ignore[union-attr]  # stderr belongs to the _Lines reader
    proc.wait(timeout=240)
    err = lines.text()
    assert holder.wait(timeout=60) == 0 and proc.returncode == 0, err
    assert "done by another process" in err and ": started" not in err, err  # the CLI did not train
    records = list(out.glob("*.json"))
    assert len(records) == 1 and not list(out.glob(".*.lock")), _files(out)
    assert json.loads(stdout)["created"] == read_record(records[0])["created"]


def test_lock_is_released_when_its_holder_is_killed(tmp_path, cache):
    from u2cdr_bench.outdir import config_lock
    from u2cdr_bench.records import config_hash
    from u2cdr_bench.runner import plan

    out = tmp_path / "runs"
    holder, _, _ = _holder(tmp_path, out, cache, train=False)
    cfg = plan("pretrained", "digits", "open-set", "MN:OD", [2024], DataOptions())[0]
    with config_lock(out, config_hash(cfg.as_dict()), wait=False) as held:
        assert not held  # held by the other process
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    with config_lock(out, config_hash(cfg.as_dict()), wait=False) as held:
        assert held  # the kernel released it with the process


def test_sigkill_during_training_leaves_no_record_and_the_next_run_trains(tmp_path, cache):
    out = tmp_path / "runs"
    base = [
        str(EXE),
        "run",
        "--method",
        "uem",
        "--pairs",
        "MN:OD",
        "--out",
        str(out),
        "--cache-dir",
        str(cache),
    ]
    proc, lines = _popen(base, tmp_path)
    lines.wait_for(": started")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    left = _files(out)
    assert not [f for f in left if f.endswith(".json") or f.endswith(".tmp")]
    assert all(f.endswith(".lock") for f in left)  # at most the (released) lock file
    code = main(
        ["run", "--method", "uem", "--pairs", "MN:OD", "--out", str(out), "--quiet"]
        + ["--cache-dir", str(cache), "--epochs-scale", "0.1"]
    )
    assert code == 0 and len(list(out.glob("*.json"))) == 1


# ------------------------------------------------------------------------------------------ rescue
def test_record_is_rescued_when_out_fails_at_the_end(tmp_path, cache, capsys, monkeypatch):
    import errno

    from u2cdr_bench import outdir

    out = tmp_path / "runs"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    real_write = outdir.write_record

    def read_only_out(record, folder):
        if Path(folder) == out:
            raise OSError(errno.EROFS, "Read-only file system")
        return real_write(record, folder)

    monkeypatch.setattr(outdir, "write_record", read_only_out)
    code = main(
        ["run", "--method", "pretrained", "--pairs", "MN:OD", "--out", str(out), "--quiet"]
        + ["--cache-dir", str(cache)]
    )
    err = capsys.readouterr().err
    rescued = list((tmp_path / "xdg" / "u2cdr-bench" / "rescued-records").glob("*.json"))
    assert code == 2 and err.count("\n") == 1 and len(rescued) == 1
    assert err.startswith(
        f"error: Could not write the record to {out} (Read-only file system); it is saved as "
    )
    assert str(rescued[0]) in err
    rec = read_record(rescued[0])
    assert rec["config"]["method"] == "pretrained" and rec["metrics"]["map_all"] > 0
    assert not out.exists()  # the folder this command created (for the lock) is gone again


# ------------------------------------------------------------------------------------------ caches
def test_corrupt_digits_cache_is_rebuilt_and_said(tmp_path):
    from u2cdr_bench.data.digits import cache_path, load_digits_cached

    opts = DataOptions(cache_dir=tmp_path)
    path = cache_path(opts)
    path.parent.mkdir(parents=True)
    path.write_bytes(b"not an npz")
    notes = _Recorder()
    with progress.use(notes):
        data = load_digits_cached(opts)
    assert notes.notes == [f"the digits cache {path} was corrupt or outdated; rebuilt it"]
    assert data["mnist"][0].shape == (5000, 16, 16)
    with progress.use(notes):
        load_digits_cached(opts)  # now valid: nothing said
    assert len(notes.notes) == 1


class _Recorder:
    """A reporter that records notes and task totals."""

    def __init__(self) -> None:
        self.notes: list[str] = []
        self.tasks: list[tuple[str, int | None]] = []

    def task(self, description, total, unit="it"):
        self.tasks.append((description, total))
        return progress._NullTask()

    def note(self, message):
        self.notes.append(message)


def _image_folder(root: Path, per_class: int = 6) -> Path:
    rng = np.random.default_rng(0)
    for d in ("left", "right"):
        for c in ("cat", "dog"):
            (root / d / c).mkdir(parents=True)
            for k in range(per_class):
                Image.fromarray(rng.integers(0, 256, (20, 24, 3), dtype=np.uint8)).save(
                    root / d / c / f"{k}.png"
                )
    return root


def _image_set(root: Path):
    from u2cdr_bench.features import ImageSet

    paths = sorted((root / "left").rglob("*.png"))
    names = [p.relative_to(root).as_posix() for p in paths]
    labels = np.array([0 if "/cat/" in n else 1 for n in names])
    return ImageSet("toy", "left", tuple(paths), tuple(names), labels)


def test_corrupt_feature_cache_is_extracted_again_and_said(tmp_path):
    from u2cdr_bench.features import View, extract_views

    files = _image_set(_image_folder(tmp_path / "img"))
    root = tmp_path / "feat"
    first = extract_views(files, "tiny-random", [View("clean")], root, quiet=True)["clean"]
    (first.folder / "features.npy").write_bytes(b"garbage")
    notes = _Recorder()
    with progress.use(notes):
        again = extract_views(files, "tiny-random", [View("clean")], root, quiet=True)["clean"]
    assert notes.notes == [
        f"feature cache {first.folder} is corrupt or incomplete; extracting that view again"
    ]
    assert np.array_equal(again.features, first.features) and again.folder == first.folder


KILLED_EXTRACTION = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import numpy as np
    from u2cdr_bench import features as F
    sys.path.insert(0, sys.argv[3])
    from test_reliability import _image_set
    real = F._save_chunk
    def slow(folder, c, feats, ok):
        real(folder, c, feats, ok)
        time.sleep(0.3)
    F._save_chunk = slow
    F.extract_views(_image_set(Path(sys.argv[1])), "tiny-random", [F.View("clean"), F.View("aug", 0)],
                    Path(sys.argv[2]), chunk_size=4, quiet=True)
    """
)


def test_sigkill_during_extraction_resumes_with_the_same_numbers(tmp_path):
    from u2cdr_bench.features import View, extract_views

    img = _image_folder(tmp_path / "img", per_class=10)  # 20 images in "left": 5 chunks of 4
    root = tmp_path / "feat"
    proc = subprocess.Popen(
        [sys.executable, "-c", KILLED_EXTRACTION, str(img), str(root), str(Path(__file__).parent)], env=ENV
    )
    t0 = time.monotonic()
    while len(list(root.rglob("part-*.npz"))) < 3:
        assert proc.poll() is None and time.monotonic() - t0 < 240
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    assert not list(root.rglob("meta.json"))  # nothing finished: parts only
    files = _image_set(img)
    rec = _Recorder()
    views = [View("clean"), View("aug", 0)]
    with progress.use(rec):
        resumed = extract_views(files, "tiny-random", views, root, chunk_size=4)
    ((description, total),) = rec.tasks
    assert "(resumed, " in description and total < 2 * len(files)  # the killed run's chunks were kept
    fresh = extract_views(files, "tiny-random", views, tmp_path / "fresh", chunk_size=4, quiet=True)
    for v in ("clean", "aug0"):
        assert np.array_equal(resumed[v].features, fresh[v].features)
    assert not list(root.rglob(".lock")) and not list(root.rglob("part-*"))


VIEW_HOLDER = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    from u2cdr_bench import features as F
    folder, ready, go = (Path(a) for a in sys.argv[1:4])
    folder.mkdir(parents=True, exist_ok=True)
    with F._view_lock(folder, "x"):
        ready.touch()
        while not go.exists():
            time.sleep(0.05)
    """
)


def test_second_process_waits_for_a_view_being_extracted(tmp_path):
    from u2cdr_bench.features import View, extract_views, view_cache_dir

    files = _image_set(_image_folder(tmp_path / "img"))
    root = tmp_path / "feat"
    folder = view_cache_dir(root, files, "tiny-random", View("clean"))
    ready, go = tmp_path / "ready", tmp_path / "go"
    holder = subprocess.Popen([sys.executable, "-c", VIEW_HOLDER, str(folder), str(ready), str(go)], env=ENV)
    while not ready.exists():
        assert holder.poll() is None
        time.sleep(0.05)
    rec = _Recorder()
    result: dict = {}

    def extract() -> None:
        with progress.use(rec):
            result.update(extract_views(files, "tiny-random", [View("clean")], root, quiet=True))

    t = threading.Thread(target=extract)
    t.start()
    t0 = time.monotonic()
    while not rec.notes:
        assert time.monotonic() - t0 < 120
        time.sleep(0.05)
    assert rec.notes == ["another process is extracting toy/left clean; waiting for it"]
    assert t.is_alive() and "clean" not in result  # blocked while the other process holds the view
    go.touch()
    t.join(timeout=240)
    assert holder.wait(timeout=60) == 0 and result["clean"].features.shape == (len(files), 64)


# ------------------------------------------------------------------------------------------ views
def test_methods_extract_only_the_views_they_read(tmp_path, capsys):
    from u2cdr_bench.data.registry import get_dataset
    from u2cdr_bench.features import View, view_cache_dir

    img = _image_folder(tmp_path / "img")
    cache, out = tmp_path / "cache", tmp_path / "runs"
    base = ["run", "--dataset", f"folder:{img}", "--backbone", "tiny-random", "--protocol", "close-set"]
    base += ["--pairs", "left:right", "--cache-dir", str(cache), "--out", str(out), "--quiet"]
    assert main([*base, "--method", "pretrained"]) == 0
    feat = cache / "features"

    def views_of(domain: str) -> list[str]:
        return sorted(
            p.name.rsplit("-", 1)[0] for p in feat.glob(f"*/{domain}/*/*") if (p / "meta.json").exists()
        )

    assert views_of("left") == ["clean"] and views_of("right") == ["clean"]
    clean = next(feat.glob("*/left/*/clean-*"))
    stamp = (clean / "features.npy").stat().st_mtime_ns
    assert main([*base, "--method", "dn2a", "--epochs-scale", "0.05"]) == 0
    assert views_of("left") == ["aug0", "aug1", "clean", "strong0", "strong1"]
    assert (clean / "features.npy").stat().st_mtime_ns == stamp  # reused, not extracted again
    spec = get_dataset(f"folder:{img}")
    paths, names, labels = spec.extra["files"]["left"]
    from u2cdr_bench.features import ImageSet

    files = ImageSet(spec.extra["cache_name"], "left", tuple(paths), tuple(names), labels)
    assert view_cache_dir(feat, files, "tiny-random", View("clean")) == clean  # the key did not change
    capsys.readouterr()


# ------------------------------------------------------------------------------------------ stale records
def test_stale_records_are_rerun_unless_reuse_stale(tmp_path, cache, capsys):
    out = tmp_path / "runs"
    args = ["run", "--method", "pretrained", "--pairs", "MN:OD", "--out", str(out), "--cache-dir", str(cache)]
    assert main(args) == 0
    first = capsys.readouterr()
    assert f"tabulate them with: u2cdr-bench table --runs {out}" in first.out
    (path,) = out.glob("*.json")
    rec = json.loads(path.read_text())
    mine = rec["code"]["fingerprint"]
    assert len(mine) == 16 and "u2cdr_bench.metrics" in rec["code"]["modules"]
    assert main(args) == 0
    assert "done already (use --force to re-run)" in capsys.readouterr().err

    rec["code"]["fingerprint"] = "0" * 16
    path.write_text(json.dumps(rec))
    assert main([*args, "--reuse-stale"]) == 0
    err = capsys.readouterr().err
    assert (
        f"its record was made by other code (fingerprint {'0' * 16}, this code {mine}); kept by --reuse-stale"
        in err
    )
    assert json.loads(path.read_text())["code"]["fingerprint"] == "0" * 16
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"made by other code (fingerprint {'0' * 16}, this code {mine}); running it again" in err
    assert read_record(path)["code"]["fingerprint"] == mine

    del rec["code"]
    path.write_text(json.dumps(rec))
    assert main(args) == 0
    assert "its record predates code fingerprints; running it again" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------ progress
def test_line_reporter_prints_at_most_every_10_s(monkeypatch):
    clock = [0.0]
    monkeypatch.setattr(progress.time, "monotonic", lambda: clock[0])
    buf = io.StringIO()
    task = progress.LineReporter(out=buf).task("extract toy/left tiny [clean]", total=100, unit="img")
    for _ in range(10):  # 10 img every 3 s
        clock[0] += 3.0
        task.advance(10)
    task.close()
    assert buf.getvalue().splitlines() == [
        "extract toy/left tiny [clean]: 0/100 img",
        "extract toy/left tiny [clean]: 40/100 img, 3.3 img/s, ETA 0:18",
        "extract toy/left tiny [clean]: 80/100 img, 3.3 img/s, ETA 0:06",
        "extract toy/left tiny [clean]: 100/100 img, 3.3 img/s, ETA 0:00",
    ]


def test_run_display_without_terminal_prints_epoch_lines(monkeypatch):
    from rich.console import Console

    from u2cdr_bench import cli_display

    clock = [0.0]
    monkeypatch.setattr(cli_display.time, "monotonic", lambda: clock[0])
    buf = io.StringIO()
    with cli_display.RunDisplay(Console(file=buf, force_terminal=False), n_runs=1) as d:
        d.start_run("[1/1] m")
        for step in range(1, 21):  # 20 epochs of 2 s each
            clock[0] += 2.0
            d.epoch("idse", step, 20, {"loss": 1.0 / step})
        d.end_run()
    lines = buf.getvalue().splitlines()
    assert lines[0] == "[1/1] m: started"
    assert [line.split(" · ")[1].split()[1] for line in lines[1:]] == [
        "1/20",
        "6/20",
        "11/20",
        "16/20",
        "20/20",
    ]


def test_run_display_on_a_terminal_shows_extraction_rate_and_eta():
    from rich.console import Console

    from u2cdr_bench.cli_display import RunDisplay

    buf = io.StringIO()
    console = Console(file=buf, force_terminal=True, width=200)
    with RunDisplay(console, n_runs=1) as d:
        task = progress.reporter().task("extract pacs/photo effnet-lite0 [clean]", total=1000, unit="img")
        for _ in range(5):
            time.sleep(0.05)
            task.advance(64)
        d._prog.refresh()  # type: ignore[union-attr]
        shown = buf.getvalue()
        task.close()
    assert "extract pacs/photo effnet-lite0 [clean]" in shown and "320/1000" in shown
    assert "img/s, ETA " in shown


# ------------------------------------------------------------------------------------------ small items
def test_list_does_not_import_torch(tmp_path):
    code = textwrap.dedent(
        """
        import sys
        from u2cdr_bench.cli import main
        for what in ("methods", "datasets", "protocols", "metrics"):
            assert main(["list", what]) == 0
        assert "torch" not in sys.modules, "torch imported"
        """
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "uem-no-sn2m" in proc.stdout and "pacs" in proc.stdout and "map_all" in proc.stdout


def test_list_rows_equal_the_registries():
    from u2cdr_bench.catalog import dataset_rows, method_rows
    from u2cdr_bench.data.registry import DATASETS, dataset_names
    from u2cdr_bench.methods import load_methods, method_names

    reg = load_methods()
    assert method_rows() == [(n, reg.entry(n).summary) for n in method_names()]
    dataset_names()
    live = [
        (e.name, f"{e.summary} [domains: {', '.join(f'{d.name} ({d.abbrev})' for d in e.obj.domains)}]")
        for e in DATASETS
    ]
    # the registry's order depends on which data module was imported first; the CLI's is digits, then real
    assert sorted(dataset_rows()) == sorted(live) and dataset_rows()[0][0] == "digits"


@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o027, 0o640), (0o077, 0o600)])
def test_record_mode_follows_the_umask(tmp_path, umask, mode):
    src = Path(__file__).parent / "fixtures" / "records" / "9a1384f97ca16e04.json"
    old = os.umask(umask)
    try:
        path = write_record(read_record(src), tmp_path)
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == mode


def test_failed_download_leaves_no_empty_folders(tmp_path):
    from u2cdr_bench.data.download import download_dataset
    from u2cdr_bench.data.manifests import Archive, DatasetManifest, DomainManifest
    from u2cdr_bench.errors import UserError

    manifest = DatasetManifest(
        name="toy",
        title="Toy",
        domains=(DomainManifest("one", "O", folders=("one",)),),
        class_names=("cat",),
        archives=(Archive("toy.zip", (tmp_path / "missing.zip").as_uri(), "md5:" + "0" * 32, verified=True),),
        layouts=("toy/<domain>/<class>/<image>",),
    )
    with pytest.raises(UserError, match="Could not download"):
        download_dataset("toy", tmp_path / "home", manifest=manifest, quiet=True)
    assert _files(tmp_path / "home") == [] and (tmp_path / "home").exists() is False

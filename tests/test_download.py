"""Downloads and ``data`` commands against a local HTTP server (u2cdr_bench/data/download.py, data_cli.py).

A ``http.server`` in a thread on 127.0.0.1 serves generated archives and honours ``Range: bytes=N-`` with
``206 Partial Content`` (Python's SimpleHTTPRequestHandler does not), logging every request's Range header.
"""

from __future__ import annotations

import hashlib
import io
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from u2cdr_bench.data import download as dl
from u2cdr_bench.data import manifests as mf
from u2cdr_bench.data.manifests import Archive, DatasetManifest, DomainManifest
from u2cdr_bench.data.real import verify_dataset
from u2cdr_bench.data_cli import data_app
from u2cdr_bench.errors import UserError

CLASSES = ("cat", "dog")


def _jpeg(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue()


def _toy_zip(wrapper: str = "ToyData") -> bytes:
    """``ToyData/{one,two}/{cat,dog}/k.jpg``: 3 images per class in domain one, 2 in domain two."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for d, per in (("one", 3), ("two", 2)):
            for c in CLASSES:
                for k in range(per):
                    zf.writestr(f"{wrapper}/{d}/{c}/{k}.jpg", _jpeg(hash((d, c, k)) % 1000))
    return buf.getvalue()


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, tuple[bytes, str]] = {}
    log: list[tuple[str, str | None]] = []
    honour_range = True

    def do_GET(self) -> None:  # noqa: N802 - http.server API
        type(self).log.append((self.path, self.headers.get("Range")))
        if self.path not in self.files:
            self.send_error(404)
            return
        data, ctype = self.files[self.path]
        rng = self.headers.get("Range")
        start = 0
        if rng and self.honour_range and rng.startswith("bytes="):
            start = int(rng[6:].split("-")[0])
            if start >= len(data):
                self.send_error(416)
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        self.wfile.write(data[start:])

    def log_message(self, *args) -> None:
        return None


@pytest.fixture()
def server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("H", (_Handler,), {"files": {}, "log": [], "honour_range": True})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def _manifest(url: str, data: bytes, checksum: str | None = None) -> DatasetManifest:
    return DatasetManifest(
        name="toy",
        title="Toy",
        domains=(
            DomainManifest("one", "O", folders=("one",), expected_count=6),
            DomainManifest("two", "T", folders=("two",), expected_count=4),
        ),
        class_names=CLASSES,
        archives=(
            Archive("toy.zip", url, checksum or f"md5:{hashlib.md5(data).hexdigest()}", verified=True),
        ),
        wrappers=("ToyData",),
        layouts=("toy/ToyData/<domain>/<class>/<image>",),
    )


def test_download_good_path_extracts_and_verifies(server, tmp_path: Path) -> None:
    base, handler = server
    data = _toy_zip()
    handler.files["/toy.zip"] = (data, "application/zip")
    man = _manifest(base + "/toy.zip", data)
    report = dl.download_dataset("toy", tmp_path, manifest=man, quiet=True)
    assert report.fetched == ["toy.zip"]
    root = tmp_path / "toy"
    assert sorted(p.name for p in (root / "ToyData" / "one").iterdir()) == ["cat", "dog"]
    assert not (root / ".downloads").exists()  # archive removed after unpacking
    assert not list(root.glob(".extract-*"))
    check = verify_dataset("toy", tmp_path, manifest=man)
    assert check.ok and [d.count for d in check.domains] == [6, 4]
    assert check.domains[0].class_counts == {"cat": 3, "dog": 3}
    # a second run skips the archive (recorded in the marker file)
    again = dl.download_dataset("toy", tmp_path, manifest=man, quiet=True)
    assert again.skipped == ["toy.zip"] and again.fetched == []
    assert len(handler.log) == 1


def test_resumed_download_asks_for_the_missing_bytes(server, tmp_path: Path) -> None:
    base, handler = server
    data = _toy_zip()
    handler.files["/toy.zip"] = (data, "application/zip")
    man = _manifest(base + "/toy.zip", data)
    part = tmp_path / "toy" / ".downloads" / "toy.zip.part"
    part.parent.mkdir(parents=True)
    half = len(data) // 2
    part.write_bytes(data[:half])
    dl.download_dataset("toy", tmp_path, manifest=man, quiet=True, keep_archives=True)
    assert handler.log == [("/toy.zip", f"bytes={half}-")]
    kept = tmp_path / "toy" / ".downloads" / "toy.zip"
    assert kept.read_bytes() == data and not part.exists()
    assert verify_dataset("toy", tmp_path, manifest=man, check_images=False).ok


def test_server_without_range_support_restarts_the_file(server, tmp_path: Path) -> None:
    base, handler = server
    handler.honour_range = False
    data = _toy_zip()
    handler.files["/toy.zip"] = (data, "application/zip")
    dest = tmp_path / "toy.zip"
    (tmp_path / "toy.zip.part").write_bytes(b"garbage that is not the start of the file")
    dl.fetch(base + "/toy.zip", dest, f"md5:{hashlib.md5(data).hexdigest()}", quiet=True)
    assert dest.read_bytes() == data


def test_checksum_mismatch_leaves_nothing_behind(server, tmp_path: Path) -> None:
    base, handler = server
    data = _toy_zip()
    handler.files["/toy.zip"] = (data, "application/zip")
    man = _manifest(base + "/toy.zip", data, checksum="md5:" + "0" * 32)
    with pytest.raises(UserError, match="Checksum mismatch for http://127.0.0.1:.*toy.zip.*deleted"):
        dl.download_dataset("toy", tmp_path, manifest=man, quiet=True)
    root = tmp_path / "toy"
    leftovers = [p for p in root.rglob("*") if p.is_file()] if root.exists() else []
    assert leftovers == []
    assert not (root / "ToyData").exists()


def test_unreachable_host_names_the_url_and_the_manual_route(tmp_path: Path) -> None:
    import socket

    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens on this port now
    url = f"http://127.0.0.1:{port}/toy.zip"
    man = _manifest(url, b"x", checksum="md5:" + "1" * 32)
    with pytest.raises(UserError) as err:
        dl.download_dataset("toy", tmp_path, manifest=man, quiet=True)
    msg = str(err.value)
    assert url in msg and "by hand" in msg and str(tmp_path / "toy" / ".downloads" / "toy.zip") in msg
    assert "toy/ToyData/<domain>/<class>/<image>" in msg


def test_html_page_instead_of_the_archive(server, tmp_path: Path) -> None:
    base, handler = server
    handler.files["/drive"] = (b"<html>confirm</html>", "text/html; charset=utf-8")
    with pytest.raises(UserError, match="web page instead of toy.zip"):
        dl.fetch(base + "/drive", tmp_path / "toy.zip", "md5:" + "2" * 32, quiet=True)


def test_tar_with_unsafe_member_is_refused(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 4
        tf.addfile(info, io.BytesIO(b"evil"))
    arch = tmp_path / "bad.tar.gz"
    arch.write_bytes(buf.getvalue())
    target = tmp_path / "out"
    with pytest.raises(UserError, match="unsafe"):
        dl.extract_archive(arch, target)
    assert not (tmp_path / "evil.txt").exists() and list(target.iterdir()) == []


def test_tar_archive_merges_into_existing_folders(tmp_path: Path) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name in ("amazon/images/bike/1.jpg", "amazon/images/mug/2.jpg"):
            data = _jpeg(len(name))
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    arch = tmp_path / "amazon.tgz"
    arch.write_bytes(buf.getvalue())
    target = tmp_path / "office31"
    (target / "amazon" / "images" / "bike").mkdir(parents=True)
    (target / "amazon" / "images" / "bike" / "0.jpg").write_bytes(_jpeg(0))
    dl.extract_archive(arch, target)
    assert sorted(p.name for p in (target / "amazon" / "images" / "bike").iterdir()) == ["0.jpg", "1.jpg"]
    assert (target / "amazon" / "images" / "mug" / "2.jpg").is_file()


def test_checksum_parsing_and_prefixes(tmp_path: Path) -> None:
    f = tmp_path / "f.bin"
    f.write_bytes(b"hello")
    md5 = hashlib.md5(b"hello").hexdigest()
    sha = hashlib.sha256(b"hello").hexdigest()
    assert dl.checksum_matches(f, f"md5:{md5}") and dl.checksum_matches(f, f"sha256:{sha[:8]}")
    assert not dl.checksum_matches(f, f"sha256:{'0' * 8}")
    for bad in ("crc:1234abcd", f"md5:{md5[:7]}", "md5:xyzxyzxyz"):
        with pytest.raises(UserError):
            dl.parse_checksum(bad)


def test_pacs_has_no_checksummed_archive(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="not downloaded automatically.*by hand"):
        dl.download_dataset("pacs", tmp_path)
    assert mf.OFFICE31.archives[0].verified is False  # single-source SHA-1
    assert mf.OFFICEHOME.archives[0].checksum == "md5:b1c14819770c4448fd5b6d931031c91c"
    assert {a.filename for a in mf.DOMAINNET.archives} == {
        f"{d}.zip" for d in ("quickdraw", "clipart", "painting", "infograph", "sketch", "real")
    }


# ---------------------------------------------------------------------------------------------- CLI
def test_cli_download_verify_info(server, tmp_path: Path, monkeypatch, capsys) -> None:
    from u2cdr_bench.cli import main

    base, handler = server
    data = _toy_zip()
    handler.files["/toy.zip"] = (data, "application/zip")
    monkeypatch.setitem(mf.MANIFESTS, "toy", _manifest(base + "/toy.zip", data))
    runner = CliRunner()
    res = runner.invoke(data_app, ["download", "toy", "--data-dir", str(tmp_path), "--quiet"])
    assert res.exit_code == 0, res.output
    monkeypatch.setenv("U2CDR_DATA", str(tmp_path))
    res = runner.invoke(data_app, ["verify", "toy", "--no-images"])
    assert res.exit_code == 0 and "verdict: OK" in res.output
    victim = tmp_path / "toy" / "ToyData" / "two" / "dog" / "0.jpg"
    victim.write_bytes(victim.read_bytes()[:40])  # truncated
    res = runner.invoke(data_app, ["verify", "toy"])
    assert res.exit_code == 1 and "1 unreadable file(s), e.g. dog/0.jpg" in res.output
    victim.unlink()
    res = runner.invoke(data_app, ["verify", "toy"])
    assert res.exit_code == 1 and "3 images, expected 4" in res.output
    res = runner.invoke(data_app, ["info"])
    assert res.exit_code == 0
    assert "present:" in res.output and "office31" in res.output and "effnet-lite0" in res.output
    # through the main entry point: user errors -> one sentence, exit code 2; verify problems -> exit 1
    capsys.readouterr()
    assert main(["data", "verify", "nope"]) == 2
    assert "Unknown dataset 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit) as ex:
        main(["data", "verify", "toy", "--no-images"])
    assert ex.value.code == 1
    monkeypatch.delenv("U2CDR_DATA")
    assert main(["data", "download", "toy"]) == 2
    assert "--data-dir" in capsys.readouterr().err

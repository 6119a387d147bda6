"""Checksummed, resumable downloads and safe archive extraction.

* :func:`fetch` downloads one URL to a file, resuming a ``<file>.part`` left by an interrupted run with an
  HTTP ``Range: bytes=<size>-`` request (a server that answers ``200`` instead of ``206`` restarts it), and
  checks the checksum before the file takes its final name. A mismatch deletes the download and raises a
  :class:`~u2cdr_bench.errors.UserError`; so does any network failure, naming the URL and where to put the
  file by hand (real hosts are often unreachable or dead: anchors.md §7 (f), §10).
* :func:`extract_archive` unpacks zip / tar(.gz|.bz2|.xz) into a temporary folder beside the target and only
  moves the result into place when the whole archive unpacked cleanly, refusing members that would land
  outside the target (absolute paths, ``..``, links).
* :func:`download_dataset` does both for every archive of a dataset manifest (``u2cdr-bench data download``).

Checksums are written ``"<algo>:<hex>"`` (``md5``, ``sha1``, ``sha256``); a hex shorter than the full digest
is compared as a prefix (the MoCo and torchvision checkpoints publish 8-character prefixes).

Example::

    fetch("https://host/x.zip", Path("/data/pacs/.downloads/x.zip"), "md5:0123...")
    download_dataset("officehome", Path("/data"))     # -> /data/officehome/OfficeHomeDataset_10072016/...
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tarfile
import urllib.error
import urllib.request
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from ..errors import UserError
from .manifests import Archive, DatasetManifest, get_manifest

__all__ = [
    "DownloadReport",
    "checksum_matches",
    "download_dataset",
    "extract_archive",
    "fetch",
    "file_digest",
    "parse_checksum",
]

_ALGOS = {"md5": 32, "sha1": 40, "sha256": 64}
_CHUNK = 1 << 20
TIMEOUT_S = 30.0
"""Socket timeout of every request, seconds."""

MARKER = ".u2cdr-download.json"
"""File in a dataset folder recording the archives already downloaded and extracted."""


def parse_checksum(checksum: str) -> tuple[str, str]:
    """``"md5:abc..."`` -> ``("md5", "abc...")``; UserError for an unknown algorithm or a bad hex string."""
    algo, sep, hexd = checksum.partition(":")
    algo, hexd = algo.strip().lower(), hexd.strip().lower()
    if not sep or algo not in _ALGOS:
        raise UserError(f"Bad checksum '{checksum}'; write it as md5:HEX, sha1:HEX or sha256:HEX.")
    if not (8 <= len(hexd) <= _ALGOS[algo]) or any(c not in "0123456789abcdef" for c in hexd):
        raise UserError(f"Bad checksum '{checksum}': expected 8 to {_ALGOS[algo]} hex digits.")
    return algo, hexd


def file_digest(path: Path, algo: str) -> str:
    """Hex digest of a file (read in 1 MiB blocks)."""
    h = hashlib.new(algo)
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            h.update(block)
    return h.hexdigest()


def checksum_matches(path: Path, checksum: str) -> bool:
    """Whether ``path``'s digest starts with the expected hex of ``checksum`` (full or prefix)."""
    algo, hexd = parse_checksum(checksum)
    return file_digest(path, algo).startswith(hexd)


def _describe(err: BaseException) -> str:
    if isinstance(err, urllib.error.HTTPError):
        return f"HTTP {err.code} {err.reason}"
    if isinstance(err, urllib.error.URLError):
        return str(err.reason)
    return str(err) or type(err).__name__


def fetch(
    url: str,
    dest: Path,
    checksum: str,
    *,
    manual_hint: str = "",
    quiet: bool = False,
    timeout: float = TIMEOUT_S,
) -> Path:
    """Download ``url`` to ``dest`` (resuming ``dest.part``), verify ``checksum`` and return ``dest``.

    Args:
        url: http(s) or file URL.
        dest: final path; its folder is created.
        checksum: ``"<algo>:<hex>"`` the file must match (required: nothing is downloaded unchecked).
        manual_hint: what to tell the user about placing the file by hand when the download fails.
        quiet: no progress bar.
        timeout: socket timeout, seconds.

    Raises:
        UserError: network failure, an HTML page instead of the file, or a checksum mismatch (the partial or
            bad file is deleted in the last case).
    """
    parse_checksum(checksum)
    dest = Path(dest)
    if dest.exists() and checksum_matches(dest, checksum):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    hint = manual_hint or f"Download it by hand and put it at {dest}, then run the command again."
    start = part.stat().st_size if part.exists() else 0
    headers = {"User-Agent": "u2cdr-bench"}
    if start:
        headers["Range"] = f"bytes={start}-"
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout) as resp:
            status = getattr(resp, "status", 200)
            ctype = resp.headers.get("Content-Type", "") or ""
            if ctype.startswith("text/html") and not dest.name.endswith((".html", ".htm")):
                raise UserError(
                    f"Could not download {url}: the host returned a web page instead of {dest.name} (Google "
                    f"Drive asks for a confirmation on large files). {hint}"
                )
            mode = "ab" if (start and status == 206) else "wb"
            done = start if mode == "ab" else 0
            length = resp.headers.get("Content-Length")
            total = done + int(length) if length and length.isdigit() else None
            from tqdm import tqdm

            with (
                open(part, mode) as f,
                tqdm(
                    total=total, initial=done, unit="B", unit_scale=True, desc=dest.name, disable=quiet
                ) as bar,
            ):
                for block in iter(lambda: resp.read(_CHUNK), b""):
                    f.write(block)
                    bar.update(len(block))
    except urllib.error.HTTPError as err:
        if err.code != 416 or not start:  # 416: the .part already holds the whole file
            raise UserError(f"Could not download {url} ({_describe(err)}). {hint}") from None
    except (TimeoutError, urllib.error.URLError, ConnectionError, OSError) as err:
        raise UserError(f"Could not download {url} ({_describe(err)}). {hint}") from None
    algo, want = parse_checksum(checksum)
    got = file_digest(part, algo)
    if not got.startswith(want):
        part.unlink(missing_ok=True)
        raise UserError(
            f"Checksum mismatch for {url}: expected {algo} {want}, got {got}; the download was deleted. "
            f"The file on the server changed or is corrupt. {hint}"
        )
    os.replace(part, dest)
    return dest


# ------------------------------------------------------------------------------------------------ extract
def _safe_member(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return not p.is_absolute() and ".." not in p.parts and not (p.parts and p.parts[0].endswith(":"))


def _archive_kind(path: Path) -> str:
    name = path.name.lower()
    if zipfile.is_zipfile(path):
        return "zip"
    if tarfile.is_tarfile(path):
        return "tar"
    raise UserError(f"{path} is neither a zip nor a tar archive ({name}); unpack it by hand.")


def _merge_move(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; folders are merged into an existing ``dst`` recursively."""
    if dst.is_dir() and src.is_dir():
        for child in src.iterdir():
            _merge_move(child, dst / child.name)
        src.rmdir()
    else:
        if dst.exists():
            if dst.is_dir():
                shutil.rmtree(dst)
            else:
                dst.unlink()
        shutil.move(str(src), str(dst))


def extract_archive(archive: Path, target: Path) -> list[Path]:
    """Unpack ``archive`` into ``target`` atomically; returns the top-level paths it created or merged into.

    Members with absolute paths, ``..`` components, or (tar) links and device files are refused with a
    UserError before anything is written to ``target``. The archive is unpacked in ``target/.extract-*`` and
    its top-level entries are moved into ``target`` only when unpacking succeeded; on any error the temporary
    folder is removed, so no partial tree is left.
    """
    target.mkdir(parents=True, exist_ok=True)
    kind = _archive_kind(archive)
    tmp = target / f".extract-{archive.name}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        if kind == "zip":
            with zipfile.ZipFile(archive) as zf:
                bad = [n for n in zf.namelist() if not _safe_member(n)]
                if bad:
                    raise UserError(
                        f"{archive.name} holds unsafe paths (e.g. '{bad[0]}'); not extracting it."
                    )
                zf.extractall(tmp)
        else:
            with tarfile.open(archive) as tf:
                members = tf.getmembers()
                bad = [m.name for m in members if not _safe_member(m.name) or not (m.isfile() or m.isdir())]
                if bad:
                    raise UserError(
                        f"{archive.name} holds unsafe entries (e.g. '{bad[0]}': links, devices or paths "
                        "outside the target); not extracting it."
                    )
                if hasattr(tarfile, "data_filter"):
                    tf.extractall(tmp, filter="data")
                else:  # pragma: no cover - Python < 3.11.4
                    tf.extractall(tmp)
    except (zipfile.BadZipFile, tarfile.TarError, EOFError, OSError) as err:
        shutil.rmtree(tmp, ignore_errors=True)
        raise UserError(f"Could not unpack {archive} ({err}); delete it and download again.") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    created = []
    for child in sorted(tmp.iterdir()):
        _merge_move(child, target / child.name)
        created.append(target / child.name)
    shutil.rmtree(tmp, ignore_errors=True)
    return created


# ---------------------------------------------------------------------------------------------- datasets
@dataclass
class DownloadReport:
    """What :func:`download_dataset` did: archives fetched, skipped (already there) and the dataset folder."""

    dataset: str
    root: Path
    fetched: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    extracted: list[Path] = field(default_factory=list)

    def lines(self) -> list[str]:
        out = [f"{self.dataset}: {self.root}"]
        out += [f"  downloaded and unpacked {n}" for n in self.fetched]
        out += [f"  already present: {n}" for n in self.skipped]
        return out


def _read_marker(root: Path) -> dict:
    try:
        return json.loads((root / MARKER).read_text())
    except (OSError, ValueError):
        return {}


def _write_marker(root: Path, data: dict) -> None:
    tmp = root / (MARKER + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, sort_keys=True))
    os.replace(tmp, root / MARKER)


def manual_instructions(manifest: DatasetManifest, root: Path) -> str:
    """One sentence on placing a dataset by hand."""
    layouts = "; ".join(manifest.layouts)
    return f"Place the images by hand under {root} in one of these layouts: {layouts} (see docs/data.md)."


def download_dataset(
    name: str,
    data_dir: Path,
    *,
    domains: list[str] | None = None,
    keep_archives: bool = False,
    quiet: bool = False,
    manifest: DatasetManifest | None = None,
) -> DownloadReport:
    """Download, check and unpack the archives of dataset ``name`` into ``<data_dir>/<name>/``.

    Args:
        name: dataset (manifest) name.
        data_dir: the data home.
        domains: only the archives holding these domains (names or abbreviations); default all.
        keep_archives: keep the archives in ``<data_dir>/<name>/.downloads/`` after unpacking.
        quiet: no progress bars.
        manifest: use this manifest instead of the registered one (tests, private mirrors).

    Archives already recorded as unpacked in ``<data_dir>/<name>/.u2cdr-download.json`` are skipped.

    Raises:
        UserError: no checksummed archive is known (the dataset must be placed by hand), a download or
            checksum failure, or an unknown domain.
    """
    manifest = manifest or get_manifest(name)
    root = Path(data_dir) / manifest.name
    archives: list[Archive] = list(manifest.archives)
    if domains:
        try:
            wanted = {manifest.domain(d).name for d in domains}
        except KeyError as err:
            valid = ", ".join(f"{d.name} ({d.abbrev})" for d in manifest.domains)
            raise UserError(
                f"Unknown domain {err} of dataset {manifest.name}; valid choices: {valid}."
            ) from None
        archives = [a for a in archives if not a.domains or wanted & set(a.domains)]
    usable = [a for a in archives if a.checksum]
    if not usable:
        raise UserError(
            f"{manifest.title} has no archive with a known checksum, so it is not downloaded automatically. "
            + manual_instructions(manifest, root)
        )
    report = DownloadReport(manifest.name, root)
    marker = _read_marker(root)
    created = [p for p in (Path(data_dir), root, root / ".downloads") if not p.exists()]
    try:
        _fetch_all(usable, marker, report, root, manifest, data_dir, keep_archives, quiet)
    finally:  # a failed download leaves no empty folder behind
        for folder in reversed(created):
            with contextlib.suppress(OSError):
                folder.rmdir()
    downloads = root / ".downloads"
    if downloads.is_dir() and not any(downloads.iterdir()):
        downloads.rmdir()
    return report


def _fetch_all(
    usable: list[Archive],
    marker: dict,
    report: DownloadReport,
    root: Path,
    manifest: DatasetManifest,
    data_dir: Path,
    keep_archives: bool,
    quiet: bool,
) -> None:
    """Fetch, check and unpack every archive not yet recorded in the marker (see :func:`download_dataset`)."""
    for arch in usable:
        if marker.get(arch.filename, {}).get("checksum") == arch.checksum:
            report.skipped.append(arch.filename)
            continue
        if not arch.verified:
            warnings.warn(
                f"{arch.filename}: the recorded checksum comes from a single source (unverified): "
                f"{arch.note}",
                UserWarning,
                stacklevel=2,
            )
        dest = root / ".downloads" / arch.filename
        layouts = "; ".join(manifest.layouts)
        hint = (
            f"Download {arch.url} by hand and put it at {dest}, then run "
            f"'u2cdr-bench data download {manifest.name} --data-dir {data_dir}' again, or unpack the images "
            f"yourself under {root} in one of these layouts: {layouts} (see docs/data.md)."
        )
        fetch(arch.url, dest, arch.checksum, manual_hint=hint, quiet=quiet)
        if arch.extract:
            report.extracted += extract_archive(dest, root)
            if not keep_archives:
                dest.unlink(missing_ok=True)
        marker[arch.filename] = {"checksum": arch.checksum, "url": arch.url, "extracted": arch.extract}
        _write_marker(root, marker)
        report.fetched.append(arch.filename)

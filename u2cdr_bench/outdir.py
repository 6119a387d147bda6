"""The records folder (``--out``): checked before any work, locked per config, never losing a record.

* :func:`check_writable` runs before any work: ``--out`` must be a folder (or a path whose nearest existing
  parent is a folder) in which a file can be created. The check creates and removes a probe, so it leaves
  nothing behind.
* :func:`config_lock` takes a per-config lock file ``<out>/.<config hash>.lock`` (an OS file lock through
  the ``filelock`` package: the kernel releases it when the process dies, SIGKILL included), so two
  ``run`` commands with the same config and ``--out`` never both train it. The file is removed on release.
* :func:`write_or_rescue` writes a record; when the folder became unwritable after the check it saves the
  record in the first writable of :func:`rescue_folders` (the user cache's ``rescued-records/``, then the
  temporary folder) and raises :class:`RecordRescued`, a one-sentence user error saying where it is.
* :class:`OutFolder` remembers whether ``--out`` existed; :meth:`OutFolder.tidy` removes the folders a
  command created but left empty (an interrupted or failed first run leaves ``--out`` as it was).

Assumption: the lock works where ``flock``/``LockFileEx`` work (local disks, most network file systems
with lock support); on a file system without locks, ``filelock`` falls back to its own rules.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from .errors import UserError
from .records import write_record

__all__ = ["OutFolder", "RecordRescued", "check_writable", "config_lock", "rescue_folders", "write_or_rescue"]


class RecordRescued(UserError):
    """The record could not be written to ``--out``; it was saved in :attr:`path` instead."""

    def __init__(self, message: str, path: Path) -> None:
        super().__init__(message)
        self.path = path


def _nearest_existing(path: Path) -> Path:
    p = path
    while not p.exists() and p.parent != p:
        p = p.parent
    return p


def check_writable(out_dir: str | os.PathLike[str], option: str = "--out") -> None:
    """UserError unless run records can be written in ``out_dir``; leaves the file system unchanged."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option} {out} is a file, not a folder; pass a folder for the run records.")
    base = _nearest_existing(out)
    if not base.is_dir():
        raise UserError(f"{option} {out} cannot be created: {base} is a file, not a folder.")
    try:
        if base == out:
            fd, name = tempfile.mkstemp(dir=out, prefix=".u2cdr-write-test-")
            os.close(fd)
            os.unlink(name)
        else:
            os.rmdir(tempfile.mkdtemp(dir=base, prefix=".u2cdr-write-test-"))
    except OSError as err:
        what = "a file cannot be created in it" if base == out else f"a folder cannot be created in {base}"
        raise UserError(
            f"{option} {out} is not writable: {what} ({err.strerror or err}); "
            f"pass {option} with a writable folder."
        ) from None


def rescue_folders() -> list[Path]:
    """Where a record goes when ``--out`` fails at the end of a run, in order of preference."""
    import platformdirs

    return [
        Path(platformdirs.user_cache_dir("u2cdr-bench")) / "rescued-records",
        Path(tempfile.gettempdir()) / "u2cdr-bench-rescued-records",
    ]


def write_or_rescue(record: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """:func:`records.write_record` into ``out_dir``; on an OS error save the record elsewhere.

    Raises:
        RecordRescued: the record is not in ``out_dir`` but in a rescue folder (the message says where).
        UserError: no rescue folder is writable either (the record's JSON is then printed on stderr).
    """
    try:
        return write_record(record, out_dir)
    except OSError as err:
        reason = err.strerror or str(err)
        for folder in rescue_folders():
            try:
                path = write_record(record, folder)
            except OSError:
                continue
            raise RecordRescued(
                f"Could not write the record to {out_dir} ({reason}); it is saved as {path} instead: move it "
                f"into {out_dir} once the folder is writable (the finished run is kept).",
                path,
            ) from None
        import json
        import sys

        print(json.dumps(record, ensure_ascii=False), file=sys.stderr)
        raise UserError(
            f"Could not write the record to {out_dir} ({reason}) nor to a rescue folder; its JSON is the "
            "line above."
        ) from None


@contextlib.contextmanager
def config_lock(out_dir: str | os.PathLike[str], config_hash: str, wait: bool) -> Iterator[bool]:
    """Hold the lock of one config in ``out_dir``; yields whether it was acquired.

    ``wait=False`` yields ``False`` at once when another process holds it; ``wait=True`` blocks until the
    holder releases it (or dies). The lock file is deleted on release.
    """
    from filelock import FileLock, Timeout

    folder = Path(out_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f".{config_hash}.lock"
    lock = FileLock(str(path), timeout=-1 if wait else 0, is_singleton=False)
    try:
        lock.acquire()
    except Timeout:
        yield False
        return
    try:
        yield True
    finally:
        lock.release()
        with contextlib.suppress(OSError):
            path.unlink()


class OutFolder:
    """``--out`` and the parent folders a command may create there, to tidy away if left empty."""

    def __init__(self, out_dir: str | os.PathLike[str]) -> None:
        self.path = Path(out_dir)
        base = _nearest_existing(self.path)
        created = []
        p = self.path
        while p != base and p.parent != p:
            created.append(p)
            p = p.parent
        self.created = created  # innermost first

    def tidy(self) -> None:
        """Remove the folders this command created that are still empty (innermost first)."""
        for p in self.created:
            try:
                p.rmdir()
            except OSError:
                return

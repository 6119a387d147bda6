"""Run records: one JSON file per run, named by the hash of its canonical config, written atomically.

Tables and regressions read records only; nothing is parsed from logs (DESIGN.md, "The path of one run").
A record (schema version :data:`SCHEMA_VERSION`) looks like::

    {"schema": 1,
     "config_hash": "3f2a9c0d1e4b5a67",            # config_hash(config)
     "config": {"method": "uem", "dataset": "digits", "setting": "open-set", "split_seed": 0,
                "query": "mnist", "gallery": "optdigits", "seed": 2024, "epochs_scale": 1.0,
                "mode": "image", "backbone": "small-cnn", "hparams": {}},
     "task": {"query_abbrev": "MN", "gallery_abbrev": "OD", "pair": "MN→OD"},
     "protocol": {"hash": "<sha256 hex>", "query_classes": [...], "gallery_classes": [...],
                  "shared_classes": [...]},
     "metrics": {"map_all": 51.2, "map_all_standard": 48.0, "p@1": 60.1, "p@5": 58.0, "p@15": 55.2,
                 "map_at_r": 30.1, "openset_accuracy": 70.0, "false_rejection": 12.0},
     "counts": {"n_query": 5000, "n_gallery": 900, "n_query_private": 2500},
     "method_info": {"num_classes_given": null},
     "timings": {"load_s": 0.1, "fit_s": 10.0, "embed_s": 0.2, "eval_s": 0.5, "total_s": 11.0},
     "env": {"u2cdr_bench": "0.1.0", "python": "3.11.7", "torch": "...", "numpy": "...",
             "platform": "...", "git_commit": "abc123" | null},
     "created": "2026-11-24T12:00:00+00:00"}

Metrics are percentages (×100, paper-spec §4); ``openset_accuracy``, ``false_rejection`` and
``openset_binary_accuracy`` (absent from records written before it existed; tables derive it) exist only for
open-set runs (absent or ``null`` otherwise). Timings are seconds.

Example::

    rec = build_record(config, task=..., protocol=..., metrics=..., counts=..., timings=...)
    path = write_record(rec, Path("runs"))     # runs/<config_hash>.json
    assert is_done(Path("runs"), config)
    records = load_records(Path("runs"))
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import platform
import subprocess
import sys
import tempfile
from collections.abc import Mapping
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from .errors import UserError

SCHEMA_VERSION = 1


class RecordError(UserError):
    """A record file that cannot be read or is malformed (the message names the file)."""


#: Top-level keys every record must have.
REQUIRED_KEYS: tuple[str, ...] = (
    "schema",
    "config_hash",
    "config",
    "task",
    "protocol",
    "metrics",
    "counts",
    "method_info",
    "timings",
    "env",
    "created",
)
#: Config keys every record must have (tables group and label by them), with their JSON types.
REQUIRED_CONFIG: dict[str, type] = {
    "method": str,
    "dataset": str,
    "setting": str,
    "query": str,
    "gallery": str,
    "seed": int,
}
#: Keys the ``task`` object must have (string values).
REQUIRED_TASK: tuple[str, ...] = ("query_abbrev", "gallery_abbrev", "pair")


def canonical_json(obj: Any) -> str:
    """The canonical JSON text of ``obj``: sorted keys, compact separators, non-ASCII kept as is.

    Two dicts with the same content in a different key order give the same text. Note that ``1`` and ``1.0``
    are different texts (and so different hashes).
    """
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def config_hash(config: Mapping[str, Any]) -> str:
    """The run's identity: the first 16 hex characters of ``sha256(canonical_json(config))`` (64 bits)."""
    return hashlib.sha256(canonical_json(dict(config)).encode("utf-8")).hexdigest()[:16]


def record_path(out_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> Path:
    """Where the record of ``config`` lives: ``out_dir / "<config_hash>.json"``."""
    return Path(out_dir) / f"{config_hash(config)}.json"


def environment_info() -> dict[str, Any]:
    """The ``env`` block of a record: package, Python, torch and numpy versions, platform and git commit.

    Versions are read from the installed distributions (no heavy imports); a missing one is ``None``.
    ``git_commit`` is the ``HEAD`` of the repository holding this package, or ``None`` outside a checkout.
    """

    def version(dist: str) -> str | None:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return None

    from . import __version__

    return {
        "u2cdr_bench": __version__,
        "python": platform.python_version(),
        "torch": version("torch"),
        "numpy": version("numpy"),
        "platform": platform.platform(),
        "git_commit": _git_commit(),
    }


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    commit = out.stdout.strip()
    return commit if out.returncode == 0 and commit else None


def build_record(
    config: Mapping[str, Any],
    *,
    task: Mapping[str, Any],
    protocol: Mapping[str, Any],
    metrics: Mapping[str, float | None],
    counts: Mapping[str, int],
    timings: Mapping[str, float],
    method_info: Mapping[str, Any] | None = None,
    env: Mapping[str, Any] | None = None,
    created: str | None = None,
) -> dict[str, Any]:
    """Assemble a schema-:data:`SCHEMA_VERSION` record; fills ``config_hash``, ``env`` and ``created`` (UTC).

    The result passes :func:`validate_record`; a malformed part raises :class:`UserError`.
    """
    record = {
        "schema": SCHEMA_VERSION,
        "config_hash": config_hash(config),
        "config": dict(config),
        "task": dict(task),
        "protocol": dict(protocol),
        "metrics": dict(metrics),
        "counts": dict(counts),
        "method_info": dict(method_info or {}),
        "timings": dict(timings),
        "env": dict(env) if env is not None else environment_info(),
        "created": created or datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    validate_record(record, "<new record>")
    return record


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def validate_record(record: Any, path: str | os.PathLike[str]) -> None:
    """Check a record's structure; the first problem found raises :class:`UserError` naming ``path``.

    Checked: a JSON object; every key of :data:`REQUIRED_KEYS`; ``schema == SCHEMA_VERSION``; ``config``
    an object with the keys and types of :data:`REQUIRED_CONFIG`; ``config_hash`` equal to
    :func:`config_hash` of the config; ``task`` an object with string :data:`REQUIRED_TASK` values;
    ``metrics`` a non-empty object of finite numbers or ``null``; the other blocks objects.
    """

    def fail(problem: str) -> UserError:
        return RecordError(f"Malformed record {path}: {problem}.")

    if not isinstance(record, dict):
        raise fail(f"expected a JSON object, found {type(record).__name__}")
    missing = [k for k in REQUIRED_KEYS if k not in record]
    if missing:
        raise fail("missing key(s) " + ", ".join(repr(k) for k in missing))
    schema = record["schema"]
    if schema != SCHEMA_VERSION or isinstance(schema, bool):
        raise fail(f"schema version {schema!r} is not the supported version {SCHEMA_VERSION}")
    for block in ("config", "task", "protocol", "metrics", "counts", "method_info", "timings", "env"):
        if not isinstance(record[block], dict):
            raise fail(f"'{block}' must be an object, found {type(record[block]).__name__}")
    config = record["config"]
    for key, typ in REQUIRED_CONFIG.items():
        if key not in config:
            raise fail(f"config lacks '{key}'")
        value = config[key]
        if not isinstance(value, typ) or isinstance(value, bool):
            noun = "an integer" if typ is int else "a string"
            raise fail(f"config '{key}' must be {noun}, found {value!r}")
    try:
        expected = config_hash(config)
    except ValueError as err:  # NaN or infinity in the config
        raise fail(f"config is not valid canonical JSON ({err})") from None
    if record["config_hash"] != expected:
        raise fail(f"config_hash {record['config_hash']!r} does not match its config (expected {expected!r})")
    for key in REQUIRED_TASK:
        if not isinstance(record["task"].get(key), str):
            raise fail(f"task '{key}' must be a string")
    metrics = record["metrics"]
    if not metrics:
        raise fail("'metrics' is empty")
    for name, value in metrics.items():
        if value is not None and not (_is_number(value) and math.isfinite(value)):
            raise fail(f"metric '{name}' must be a finite number or null, found {value!r}")
    if not isinstance(record["created"], str):
        raise fail("'created' must be an ISO-8601 string")


def read_record(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate one record; unreadable, non-JSON or malformed files raise :class:`UserError`."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RecordError(f"Malformed record {path}: not UTF-8 text.") from None
    except OSError as err:
        raise RecordError(f"Cannot read record {path}: {err.strerror or err}.") from None
    try:
        record = json.loads(text)
    except json.JSONDecodeError as err:
        raise RecordError(
            f"Malformed record {path}: not valid JSON ({err.msg} at line {err.lineno}, column {err.colno})."
        ) from None
    validate_record(record, path)
    return record


def write_record(record: Mapping[str, Any], out_dir: str | os.PathLike[str]) -> Path:
    """Validate ``record`` and write it to ``out_dir / "<config_hash>.json"`` atomically; return the path.

    The JSON goes to a temporary file in ``out_dir`` (created if needed; its mode is ``0666`` minus the
    umask, like any new file), is flushed and fsync'ed, then ``os.replace``'d onto the final name, so a
    reader sees either the old file, the new one or none -- never a partial record. On any failure the
    temporary file is removed and the error re-raised.
    """
    record = dict(record)
    validate_record(record, "<record to write>")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    final = out_dir / f"{record['config_hash']}.json"
    fd, tmp_name = tempfile.mkstemp(dir=out_dir, prefix=f".{final.stem}.", suffix=".tmp")
    tmp = Path(tmp_name)
    try:
        if hasattr(os, "fchmod"):  # mkstemp makes 0600; a record gets the mode any new file gets (umask)
            os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            json.dump(record, fh, indent=2, sort_keys=True, ensure_ascii=False, allow_nan=False)
            fh.write("\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, final)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(out_dir)
    return final


def _umask() -> int:
    """The process's umask (read by setting and restoring it)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); a no-op where directories cannot be opened (Windows)."""
    if sys.platform.startswith("win"):
        return
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def load_records(
    runs_dir: str | os.PathLike[str], skipped: list[tuple[Path, str]] | None = None
) -> list[dict[str, Any]]:
    """All records ``*.json`` in ``runs_dir`` and its sub-folders (recursively), sorted by path.

    A missing or unreadable folder raises :class:`UserError`; an empty folder gives ``[]``. A malformed
    record raises :class:`RecordError` naming that file, unless ``skipped`` is a list: then it is left out
    and ``(path, reason)`` appended to ``skipped`` (``table --skip-bad``).
    """
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        raise UserError(
            f"Records folder {runs_dir} does not exist; run `u2cdr-bench run` first or pass --runs DIR."
        )
    try:
        paths = sorted(p for p in runs_dir.rglob("*.json") if p.is_file())
    except OSError as err:
        raise UserError(f"Records folder {runs_dir} cannot be read: {err.strerror or err}.") from None
    out = []
    for p in paths:
        try:
            out.append(read_record(p))
        except RecordError as err:
            if skipped is None:
                raise
            skipped.append((p, str(err)))
    return out


def is_done(out_dir: str | os.PathLike[str], config: Mapping[str, Any]) -> bool:
    """Whether a valid record of ``config`` exists in ``out_dir`` (a malformed one counts as not done)."""
    path = record_path(out_dir, config)
    if not path.is_file():
        return False
    try:
        record = read_record(path)
    except UserError:
        return False
    return record["config_hash"] == path.stem


__all__ = [
    "REQUIRED_CONFIG",
    "REQUIRED_KEYS",
    "REQUIRED_TASK",
    "SCHEMA_VERSION",
    "RecordError",
    "build_record",
    "canonical_json",
    "config_hash",
    "environment_info",
    "is_done",
    "load_records",
    "read_record",
    "record_path",
    "validate_record",
    "write_record",
]

"""Code fingerprints: which code made a record (``record["code"]``), so that stale records are not reused.

A run's numbers depend on the code it executes. The fingerprint of a run is

    sha256 over the sorted modules M of "<module name>\\n<sha256 of normalise(source of module)>\\n"

where ``normalise`` parses the module, drops every docstring and every other bare string statement, and
writes the tree back with :func:`ast.unparse` (so comments, docstrings, blank lines and formatting do not
count; any change to a statement does). ``M`` is the closure, over the ``import`` / ``from ... import``
statements found anywhere in a module (function-level lazy imports included), of the run's **roots**:

* the method's module and the modules of its base classes (``methods/base.py``, ``methods/common.py``,
  ``methods/uem/method.py`` for the ablations, ...);
* the dataset's loader module (``data/digits.py``, ``data/real.py``, ``data/custom.py``);
* ``training``, ``nets``, ``metrics``, ``retrieval``, ``protocols`` and ``reproducibility`` (its kernel
  pinning changes numbers); ``features`` and ``backbones`` for real images.

Modules that cannot change a number are left out of the closure (:data:`NOT_NUMERIC`: errors, registries,
hyper-parameter validation, progress display, records, tables, the CLI). Only ``u2cdr_bench`` modules count;
third-party packages are identified by the versions in ``record["env"]``.

Assumptions: a module is found from its name without being imported (:func:`source_path`); the unparsed
text can differ between Python minor versions, so records made under another Python version may read as
stale (``--reuse-stale`` accepts them).
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
from functools import cache
from pathlib import Path

__all__ = [
    "NOT_NUMERIC",
    "code_info",
    "module_digest",
    "module_imports",
    "normalise_source",
    "run_roots",
    "source_path",
]

PACKAGE = "u2cdr_bench"

#: Modules whose code cannot change a run's numbers (left out of every fingerprint).
NOT_NUMERIC: frozenset[str] = frozenset(
    f"{PACKAGE}.{m}" if m else PACKAGE
    for m in (
        "",
        "errors",
        "registry",
        "progress",
        "records",
        "runner",
        "tables",
        "cli",
        "cli_display",
        "cli_run",
        "entry",
        "outdir",
        "fingerprint",
        "catalog",
        "launch",
        "regress",
        "data_cli",
        "data.download",
        "methods",
        "methods.hparams",
    )
)

#: Modules every run executes besides its method and its dataset's loader.
COMMON_ROOTS: tuple[str, ...] = tuple(
    f"{PACKAGE}.{m}" for m in ("training", "nets", "metrics", "retrieval", "protocols", "reproducibility")
)
#: Extra roots of runs on real images (features or finetune mode).
IMAGE_ROOTS: tuple[str, ...] = (f"{PACKAGE}.features", f"{PACKAGE}.backbones")


@cache
def source_path(module: str) -> Path | None:
    """The ``.py`` file of a ``u2cdr_bench`` module, found without importing it (``None`` if absent).

    Only the second-level package (e.g. ``u2cdr_bench.baselines``, mapped to another folder by the
    installer) is located through :func:`importlib.util.find_spec`; deeper names are walked on disk.
    """
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    if len(parts) == 1:
        spec = importlib.util.find_spec(PACKAGE)
        return Path(spec.origin) if spec and spec.origin else None
    try:
        spec = importlib.util.find_spec(".".join(parts[:2]))
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:
        base = Path(next(iter(spec.submodule_search_locations)))
    elif len(parts) == 2 and spec.origin:
        return Path(spec.origin)
    else:
        return None
    for part in parts[2:]:
        base = base / part
    for cand in (base.with_suffix(".py"), base / "__init__.py"):
        if cand.is_file():
            return cand
    return None


def _tree(module: str) -> ast.Module | None:
    path = source_path(module)
    if path is None:
        return None
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _is_package(module: str) -> bool:
    path = source_path(module)
    return path is not None and path.name == "__init__.py"


def module_imports(module: str) -> list[str]:
    """``u2cdr_bench`` modules imported anywhere in ``module`` (relative imports resolved), sorted."""
    tree = _tree(module)
    if tree is None:
        return []
    package = module if _is_package(module) else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            found.add(base)
            for alias in node.names:  # ``from . import baselines`` may name a sub-module
                sub = f"{base}.{alias.name}"
                if source_path(sub) is not None:
                    found.add(sub)
    return sorted(m for m in found if m.split(".")[0] == PACKAGE and source_path(m) is not None)


def _is_bare_string(stmt: ast.stmt) -> bool:
    """A docstring or any other string statement (no effect at run time)."""
    if not isinstance(stmt, ast.Expr) or not isinstance(stmt.value, ast.Constant):
        return False
    return isinstance(stmt.value.value, str)


def normalise_source(text: str) -> str:
    """``text`` parsed, every docstring and bare string statement dropped, and unparsed (comments and
    layout vanish with the parse)."""
    tree = ast.parse(text)
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if not isinstance(body, list):
            continue
        kept = [s for s in body if not _is_bare_string(s)]
        node.body = kept or [ast.Pass()]  # type: ignore[attr-defined]
    return ast.unparse(tree)


def _normalised(module: str) -> str:
    path = source_path(module)
    return "" if path is None else normalise_source(path.read_text(encoding="utf-8"))


@cache
def module_digest(module: str) -> str:
    """sha256 (hex) of the module's normalised source (docstrings, comments and layout removed)."""
    return hashlib.sha256(_normalised(module).encode("utf-8")).hexdigest()


def closure(roots: tuple[str, ...]) -> list[str]:
    """``roots`` and every module they import, transitively, minus :data:`NOT_NUMERIC`; sorted."""
    seen: set[str] = set()
    todo = [r for r in roots if r not in NOT_NUMERIC]
    while todo:
        m = todo.pop()
        if m in seen or source_path(m) is None:
            continue
        seen.add(m)
        todo += [d for d in module_imports(m) if d not in seen and d not in NOT_NUMERIC]
    return sorted(seen)


@cache
def _code_info(roots: tuple[str, ...]) -> tuple[str, tuple[str, ...]]:
    mods = closure(roots)
    h = hashlib.sha256()
    for m in mods:
        h.update(f"{m}\n{module_digest(m)}\n".encode())
    return h.hexdigest()[:16], tuple(mods)


def code_info(roots: tuple[str, ...]) -> dict[str, object]:
    """``{"fingerprint": 16 hex digits, "modules": [names]}`` of the closure of ``roots``."""
    fp, mods = _code_info(roots)
    return {"fingerprint": fp, "modules": list(mods)}


def run_roots(method_cls: type, loader_module: str, real_images: bool) -> tuple[str, ...]:
    """The roots of a run: the method's class hierarchy, the dataset's loader, the common modules and,
    for real images (``real_images``), the feature extraction and the backbones."""
    mods = [c.__module__ for c in method_cls.__mro__ if c.__module__.split(".")[0] == PACKAGE]
    mods.append(loader_module)
    mods += COMMON_ROOTS
    if real_images:
        mods += IMAGE_ROOTS
    return tuple(dict.fromkeys(mods))

"""Methods that live outside the package: ``--method MODULE:CLASS`` and the entry-point group.

Two ways to bring your own method (walk-through: ``docs/extending.md``):

* **import spec** ``--method my_module:MyMethod`` -- ``my_module`` must be importable (from the current
  folder, which is put on ``sys.path``, or from ``$PYTHONPATH``) and ``MyMethod`` a subclass of
  :class:`~u2cdr_bench.methods.base.Method`.
  The method is registered under the spec itself (``"my_module:MyMethod"``): that is the name in the record's
  config, so ``table`` shows it as a row and ``regress`` re-imports it from the record alone.
* **entry point** in the group :data:`ENTRY_POINT_GROUP` of an installed distribution, e.g. in its
  ``pyproject.toml``::

      [project.entry-points."u2cdr_bench.methods"]
      my-method = "my_package.method:MyMethod"

  The method is registered under the entry point's name (``my-method``) the first time the registry is
  loaded, after the built-in methods, so ``list methods`` shows it and every command accepts the name.

The registered class is the plug-in's class when its ``name`` attribute already equals the registered name,
and otherwise a subclass that differs only in ``name`` (the runner writes ``cls.name`` into the config).

A plug-in that cannot be used (its module fails to import, the attribute is missing, it is not a ``Method``
subclass, or it is abstract) is a user error with one sentence. A broken *entry point* does not break the
other commands: it is skipped with a warning on stderr, and naming it raises the error.
"""

from __future__ import annotations

import importlib
import inspect
import os
import re
import sys
from importlib import metadata
from typing import TYPE_CHECKING

from .errors import UserError

if TYPE_CHECKING:
    from .methods.base import Method
    from .registry import Registry

#: The entry-point group scanned for plug-in methods.
ENTRY_POINT_GROUP = "u2cdr_bench.methods"

_SPEC = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")

#: Entry points that failed to load: name -> the reason (one sentence).
BROKEN: dict[str, str] = {}


def is_import_spec(name: str) -> bool:
    """Whether ``name`` looks like ``module.path:Attribute`` (a plug-in import spec)."""
    return bool(_SPEC.match(name))


def _named(cls: type[Method], name: str) -> type[Method]:
    """``cls`` itself when ``cls.name == name``, else a subclass whose only difference is ``name``."""
    if getattr(cls, "name", "") == name:
        return cls
    attrs = {"name": name, "__module__": cls.__module__, "__qualname__": cls.__qualname__}
    attrs["__doc__"] = cls.__doc__
    return type(cls.__name__, (cls,), attrs)


def check_method_class(obj: object, where: str) -> type[Method]:
    """``obj`` when it is a concrete :class:`Method` subclass; else UserError naming ``where``."""
    from .methods.base import Method

    if not (inspect.isclass(obj) and issubclass(obj, Method)):
        kind = type(obj).__name__ if not inspect.isclass(obj) else f"class {obj.__name__}"
        raise UserError(
            f"Plug-in method {where} is a {kind}, not a subclass of u2cdr_bench.methods.base.Method."
        )
    if inspect.isabstract(obj):
        missing = ", ".join(sorted(getattr(obj, "__abstractmethods__", ())))
        raise UserError(f"Plug-in method {where} does not implement {missing}.")
    return obj


def import_object(spec: str, where: str) -> object:
    """The attribute ``ATTR`` of module ``MODULE`` for ``spec = "MODULE:ATTR"``; UserError on failure."""
    module_name, _, attr = spec.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name == err.name or module_name.startswith(err.name + ".")):
            raise UserError(
                f"Plug-in method {where}: module '{module_name}' is not importable (not on sys.path; "
                "run from its folder or add it to PYTHONPATH)."
            ) from None
        raise UserError(f"Plug-in method {where}: importing module '{module_name}' failed: {err}.") from None
    except Exception as err:  # the plug-in's own code raised while importing
        raise UserError(
            f"Plug-in method {where}: importing module '{module_name}' failed: {type(err).__name__}: {err}."
        ) from None
    obj: object = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            public = sorted(n for n in dir(module) if not n.startswith("_"))
            raise UserError(
                f"Plug-in method {where}: module '{module_name}' has no attribute '{attr}' "
                f"(it defines: {', '.join(public[:12]) or 'nothing'})."
            )
        obj = getattr(obj, part)
    return obj


def register_spec(registry: Registry[type[Method]], spec: str) -> type[Method]:
    """Import ``MODULE:CLASS``, check it and register it under ``spec``; returns the registered class.

    The current folder is put on ``sys.path`` first (as ``python -m`` would), since the ``u2cdr-bench``
    console script does not look there.
    """
    if spec in registry:
        return registry.get(spec)
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)
    cls = check_method_class(import_object(spec, f"'{spec}'"), f"'{spec}'")
    named = _named(cls, spec)
    registry.add(spec, named, _summary(cls, f"plug-in {spec}"))
    return named


def _summary(cls: type[Method], fallback: str) -> str:
    text = getattr(cls, "summary", "") or ""
    if not text and cls.__doc__:
        text = cls.__doc__.strip().splitlines()[0]
    return text or fallback


def method_entry_points() -> list[metadata.EntryPoint]:
    """The installed entry points of :data:`ENTRY_POINT_GROUP`, sorted by name."""
    return sorted(metadata.entry_points(group=ENTRY_POINT_GROUP), key=lambda ep: ep.name)


def load_entry_points(registry: Registry[type[Method]]) -> None:
    """Register every entry-point method (after the built-ins); broken ones go to :data:`BROKEN`."""
    for ep in method_entry_points():
        if ep.name in registry:
            if ep.name not in BROKEN:
                _warn(f"plug-in method '{ep.name}' ({ep.value}) is skipped: the name is taken already")
            continue
        where = f"'{ep.name}' (entry point {ep.value})"
        try:
            cls = check_method_class(import_object(ep.value, where), where)
        except UserError as err:
            BROKEN[ep.name] = str(err)
            _warn(str(err))
            continue
        registry.add(ep.name, _named(cls, ep.name), _summary(cls, f"plug-in {ep.value}"))


def _warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)


__all__ = [
    "BROKEN",
    "ENTRY_POINT_GROUP",
    "check_method_class",
    "import_object",
    "is_import_spec",
    "load_entry_points",
    "method_entry_points",
    "register_spec",
]

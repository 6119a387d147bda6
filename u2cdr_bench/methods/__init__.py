"""Method registry. UEM and ``pretrained`` live here; the baselines in :mod:`u2cdr_bench.baselines`.

Registration order is the table row order.
"""

from __future__ import annotations

import importlib

from ..registry import Registry
from .base import FitContext, Method

METHODS: Registry[type[Method]] = Registry("method")


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: register ``cls`` under ``cls.name`` with ``cls.summary``."""
    METHODS.add(cls.name, cls, cls.summary)
    return cls


_LOADED = False


def load_methods() -> Registry[type[Method]]:
    """Import every method module once (they register themselves) and return the registry."""
    global _LOADED
    if not _LOADED:
        for mod in (
            "u2cdr_bench.methods.pretrained",
            "u2cdr_bench.methods.training_free",
            "u2cdr_bench.methods.uem",
            "u2cdr_bench.baselines",
        ):
            importlib.import_module(mod)
        _LOADED = True
        from ..plugins import load_entry_points

        load_entry_points(METHODS)  # plug-ins of the entry-point group, after the built-ins
    return METHODS


def _order_key(entry) -> tuple[int, int]:
    """Stable display order whatever the import order: pretrained, the other training-free rows, UEM and
    its ablations, then the baselines in ``baselines._MODULES`` order (registration order within a
    module)."""
    module = entry.obj.__module__
    if module.endswith(".pretrained"):
        return (0, 0)
    if module.endswith(".training_free"):
        return (0, 1)
    if ".methods.uem" in module:
        return (1, 0)
    if not module.startswith("u2cdr_bench."):
        return (3, 0)  # plug-ins (entry points, MODULE:CLASS) after the baselines, in registration order
    from .. import baselines

    name = module.rsplit(".", 1)[-1]
    return (2, baselines._MODULES.index(name) if name in baselines._MODULES else len(baselines._MODULES))


def method_names() -> list[str]:
    """Registered method names in table row order."""
    entries = list(load_methods())
    return [e.name for e in sorted(entries, key=_order_key)]


def get_method(name: str) -> type[Method]:
    """The method class of a registered name, or of a plug-in import spec ``MODULE:CLASS``."""
    from .. import plugins

    reg = load_methods()
    if name not in reg:
        if name in plugins.BROKEN:
            from ..errors import UserError

            raise UserError(plugins.BROKEN[name])
        if plugins.is_import_spec(name):
            return plugins.register_spec(reg, name)
    return reg.get(name)


__all__ = ["METHODS", "FitContext", "Method", "get_method", "load_methods", "method_names", "register_method"]

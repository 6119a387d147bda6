"""Reimplemented baselines, registered like UEM (shipped as ``u2cdr_bench.baselines``).

Import order is the table row order.
"""

import importlib

_MODULES = [
    "source_only",
    "dann",
    "protonce",
    "cds",
    "pcs",
    "darl",
    "dn2a",
    "ucdir",
    "coda",
    "dgdir",
]

for _name in _MODULES:
    try:
        importlib.import_module(f"{__name__}.{_name}")
    except ModuleNotFoundError as _err:  # pragma: no cover - only while a module is being written
        if _err.name != f"{__name__}.{_name}":
            raise

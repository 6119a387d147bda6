"""What ``u2cdr-bench list methods|datasets`` prints, read from the source without importing torch.

Importing the method and dataset modules imports torch, faiss and scikit-learn (seconds). The names and
one-line summaries are literals in the source, so they are read from the modules' syntax trees instead:

* methods: every class decorated with ``@register_method`` in the modules ``load_methods`` imports
  (``methods/pretrained.py``, the ``methods/uem`` package in execution order, ``baselines`` in its
  ``_MODULES`` order), with its ``name`` and ``summary`` class attributes;
* datasets: the ``DatasetSpec(...)`` of ``data/digits.py`` (name, summary, domains) and the real-dataset
  manifests (:mod:`u2cdr_bench.data.manifests`, torch-free).

Assumption: ``name`` and ``summary`` are string literals (possibly implicitly concatenated) and the order
rule is that of :func:`u2cdr_bench.methods._order_key`. ``tests/test_cli_errors.py`` checks that these
rows equal the live registries' rows.
"""

from __future__ import annotations

import ast
from typing import Any

from .fingerprint import source_path

__all__ = ["METHOD_GROUPS", "PLUGIN_GROUP", "dataset_rows", "method_groups", "method_rows"]


def _tree(module: str) -> ast.Module:
    path = source_path(module)
    if path is None:
        raise FileNotFoundError(module)
    return ast.parse(path.read_text(encoding="utf-8"))


def _top_level_imports(module: str) -> list[str]:
    """Intra-package modules imported at module level, in source order (relative imports resolved)."""
    tree = _tree(module)
    path = source_path(module)
    package = module if path is not None and path.name == "__init__.py" else module.rpartition(".")[0]
    out = []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level:
            parts = package.split(".")
            parts = parts[: len(parts) - (node.level - 1)]
            base = ".".join(parts + ([node.module] if node.module else []))
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                out.append(sub if source_path(sub) is not None else base)
        elif isinstance(node, ast.ImportFrom) and node.module:
            out.append(node.module)
    return out


def _execution_order(module: str, package: str, seen: set[str], out: list[str]) -> None:
    """Depth-first post-order of the imports inside ``package``: the order Python runs the modules."""
    if module in seen:
        return
    seen.add(module)
    for dep in _top_level_imports(module):
        if dep.startswith(package + ".") or dep == package:
            _execution_order(dep, package, seen, out)
    out.append(module)


def _literal_assign(tree: ast.Module | ast.ClassDef, name: str) -> Any:
    for node in tree.body:
        target = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]
        elif isinstance(node, ast.AnnAssign):
            target = node.target
        if isinstance(target, ast.Name) and target.id == name and node.value is not None:
            return ast.literal_eval(node.value)
    return None


def _registered_classes(module: str) -> list[tuple[str, str]]:
    rows = []
    for node in _tree(module).body:
        if not isinstance(node, ast.ClassDef):
            continue
        names = {d.id for d in node.decorator_list if isinstance(d, ast.Name)}
        if "register_method" in names:
            rows.append((_literal_assign(node, "name"), _literal_assign(node, "summary")))
    return rows


#: Display groups of ``list methods``, in table order.
METHOD_GROUPS = ("training-free", "UEM and its ablations", "baselines")
#: The group of installed entry-point plug-ins, listed last when there are any.
PLUGIN_GROUP = "plug-ins"


def method_groups() -> list[tuple[str, list[tuple[str, str]]]]:
    """``[(group, [(name, summary), ...]), ...]`` of every registered method, in table row order."""
    uem: list[str] = []
    _execution_order("u2cdr_bench.methods.uem", "u2cdr_bench.methods.uem", set(), uem)
    baselines = _literal_assign(_tree("u2cdr_bench.baselines"), "_MODULES") or []
    modules = {
        "training-free": ["u2cdr_bench.methods.pretrained", "u2cdr_bench.methods.training_free"],
        "UEM and its ablations": uem,
        "baselines": [f"u2cdr_bench.baselines.{m}" for m in baselines],
    }
    groups = [(g, [row for m in modules[g] for row in _registered_classes(m)]) for g in METHOD_GROUPS]
    plugins = _plugin_rows()
    return groups + ([(PLUGIN_GROUP, plugins)] if plugins else [])


def _plugin_rows() -> list[tuple[str, str]]:
    """``(name, summary)`` of the installed entry-point plug-ins (docs/extending.md). Reading the entry
    points is cheap; only when there are some are the methods imported (their summaries are class
    attributes); a broken plug-in is listed with the reason it cannot be used."""
    from .plugins import BROKEN, method_entry_points

    eps = method_entry_points()
    if not eps:
        return []
    from .methods import load_methods

    reg = load_methods()
    rows = []
    for ep in eps:
        if ep.name in BROKEN:
            rows.append((ep.name, f"(not usable) {BROKEN[ep.name]}"))
        elif ep.name in reg and not reg.entry(ep.name).obj.__module__.startswith("u2cdr_bench."):
            rows.append((ep.name, reg.entry(ep.name).summary))
    return rows


def method_rows() -> list[tuple[str, str]]:
    """``(name, summary)`` of every registered method, in table row order (as ``method_names()``)."""
    return [row for _, rows in method_groups() for row in rows]


def _call_kwargs(call: ast.Call) -> dict[str, ast.expr]:
    return {k.arg: k.value for k in call.keywords if k.arg}


def _digits_row() -> tuple[str, str, list[tuple[str, str]]]:
    for node in ast.walk(_tree("u2cdr_bench.data.digits")):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "DatasetSpec":
            kw = _call_kwargs(node)
            domains = [
                tuple(ast.literal_eval(a) for a in d.args[:2])
                for d in getattr(kw["domains"], "elts", [])
                if isinstance(d, ast.Call)
            ]
            return ast.literal_eval(kw["name"]), ast.literal_eval(kw["summary"]), domains  # type: ignore[return-value]
    raise LookupError("no DatasetSpec in u2cdr_bench.data.digits")


def dataset_rows() -> list[tuple[str, str]]:
    """``(name, summary [domains: ...])`` of every registered dataset, in registry order."""
    from .data.manifests import MANIFESTS, summary_line

    name, summary, domains = _digits_row()
    entries = [(name, summary, domains)]
    for m in MANIFESTS.values():
        entries.append((m.name, summary_line(m), [(d.name, d.abbrev) for d in m.domains]))
    return [(n, f"{s} [domains: {', '.join(f'{d} ({a})' for d, a in doms)}]") for n, s, doms in entries]

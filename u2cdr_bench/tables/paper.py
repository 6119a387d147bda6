"""The paper's own numbers (``u2cdr_bench/paper/results.yaml``, paper-spec §6) as a table's reference rows."""

from __future__ import annotations

import copy
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from . import frame
from .model import AVG, METRIC_LABELS, OPENSET_ACC, Row, Stat


@lru_cache(maxsize=1)
def paper_results_cached() -> dict[str, Any]:
    """The parsed ``results.yaml``, shared: never mutate it (:func:`load_paper_results` gives a copy)."""
    text = resources.files("u2cdr_bench").joinpath("paper/results.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_paper_results() -> dict[str, Any]:
    """The paper's result tables (``u2cdr_bench/paper/results.yaml``; paper-spec §6) as a fresh dict.

    ``["tables"][paper_key][setting]`` has ``source`` (e.g. ``"Table 7 (appendix)"``), ``metric``, ``pairs``
    (column labels in paper order) and ``rows``: method -> pair label (and ``"Avg"``) -> ``[mean, std]`` or a
    bare mean; open-set cells are ``{"map": ..., "acc": ...}``. ``["ablations"]`` holds Table 4.
    """
    return copy.deepcopy(paper_results_cached())


def _paper_stat(value: Any, n: int) -> Stat:
    if isinstance(value, list):
        return Stat(float(value[0]), float(value[1]), n)
    return Stat(float(value), None, n)


def paper_key(dataset: str, paper: dict[str, Any]) -> str | None:
    """The ``results.yaml`` key of ``dataset``: its spec's ``paper_key``, else the name itself if listed."""
    spec = frame.hook("_dataset_spec")(dataset)
    if spec is not None:
        return spec.paper_key
    return dataset if dataset in paper["tables"] else None


def paper_rows(
    paper: dict[str, Any], dataset: str, setting: str, metric: str, pairs: list[str], paired: bool
) -> tuple[list[Row], str]:
    """The paper's rows for this table (paper-spec §6) and the caption note saying where they come from."""
    key = paper_key(dataset, paper)
    spec = paper["tables"].get(key, {}).get(setting) if key else None
    if spec is None:
        return [], "the paper has no table for this dataset/setting"
    if metric == "map_all":
        part = "map" if setting == "open-set" else None
    elif metric == OPENSET_ACC and setting == "open-set":
        part = "acc"
    else:
        return [], f"the paper reports no {METRIC_LABELS.get(metric, metric)}"
    n_paper = len(paper["meta"]["seeds"])
    shown = [p for p in pairs if p in spec["pairs"]]
    exact = set(pairs) == set(spec["pairs"])
    recomputed = not exact and len(shown) == len(pairs)

    def series(values: dict[str, Any], sub: str | None) -> dict[str, Stat | None]:
        def get(p: str) -> Stat | None:
            v = values[p] if sub is None else values[p][sub]
            return _paper_stat(v, n_paper)

        out: dict[str, Stat | None] = {p: (get(p) if p in spec["pairs"] else None) for p in pairs}
        if exact:
            out[AVG] = get(AVG)
        elif recomputed:
            out[AVG] = Stat(sum(out[p].mean for p in pairs) / len(pairs), None, n_paper)  # type: ignore[union-attr]
        else:
            out[AVG] = None
        return out

    rows = []
    for name, values in spec["rows"].items():
        row_cells = series(values, part)
        row_acc = series(values, "acc") if paired else {}
        rows.append(Row(f"{name} (paper)", name, "paper", row_cells, row_acc))
    note = f"paper rows: {spec['source']}"
    if recomputed:
        note += ", their Avg recomputed over the shown pairs"
    elif not exact:
        note += ", no paper Avg (some shown pairs are not in the paper)"
    return rows, note

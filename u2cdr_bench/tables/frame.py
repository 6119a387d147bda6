"""Records to the long frame a table is built from: one line per record, the orders of rows and columns.

A record places itself in a cell by its config's ``method, dataset, setting, query, gallery, seed``
(:data:`~.model.CELL_KEYS`); every other config key distinguishes a variant of the method, which becomes its
own row ``method [key=value, ...]`` (:func:`row_labels`). Rows follow the method registry, columns the
dataset's ``all_pairs()`` order.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import pandas as pd

from ..errors import UserError
from ..records import canonical_json
from .model import CELL_KEYS, OPENSET_ACC, SETTING_ORDER


def hook(name: str) -> Callable[..., Any]:
    """The package attribute ``u2cdr_bench.tables.<name>`` (``_method_order``, ``_dataset_spec``), looked up
    at call time: the seam where tests replace the registry look-ups, as on the former single module."""
    return getattr(sys.modules[__package__], name)


def method_order() -> list[str]:
    """Registry order of the methods (table row order); empty when the registry cannot be imported yet."""
    try:
        from ..methods import method_names

        return method_names()
    except ImportError:
        return []


def dataset_spec(name: str) -> Any | None:
    """The registered dataset's spec, ``None`` for unregistered names (custom data, test records)."""
    try:
        from ..data.registry import get_dataset

        return get_dataset(name)
    except (ImportError, UserError):
        return None


def pair_order(dataset: str, labels: Iterable[str]) -> list[str]:
    """The present pair labels in the dataset's ``all_pairs()`` order (unknown labels after, sorted)."""
    labels = set(labels)
    order: list[str] = []
    spec = hook("_dataset_spec")(dataset)
    if spec is not None:
        for q, g in spec.all_pairs():
            label = f"{spec.abbrev(q)}→{spec.abbrev(g)}"
            if label in labels and label not in order:
                order.append(label)
    return order + sorted(labels - set(order))


def setting_key(setting: str) -> tuple[int, str]:
    """Sort key of a setting: :data:`~.model.SETTING_ORDER` first, then alphabetical."""
    if setting in SETTING_ORDER:
        return (SETTING_ORDER.index(setting), setting)
    return (len(SETTING_ORDER), setting)


def _number(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and not isinstance(x, bool) else math.nan


def record_metric(rec: dict[str, Any], metric: str) -> float:
    """``rec["metrics"][metric]``, NaN when absent.

    ``openset_binary_accuracy`` is derived for records written before it was recorded:
    (Acc · P + (100 − false rejection) · S) / (P + S) with P = ``counts.n_query_private`` and S the other
    queries (exact up to the 4-decimal rounding of the stored values).
    """
    metrics = rec["metrics"]
    if metric == "openset_binary_accuracy" and metric not in metrics:
        acc, fr = _number(metrics.get(OPENSET_ACC)), _number(metrics.get("false_rejection"))
        counts = rec.get("counts", {})
        n, p = _number(counts.get("n_query")), _number(counts.get("n_query_private"))
        if not n or math.isnan(n) or math.isnan(p):
            return math.nan
        private = acc * p if p else 0.0
        shared = (100.0 - fr) * (n - p) if n - p else 0.0
        return (private + shared) / n
    return _number(metrics.get(metric))


def long_frame(records: Sequence[dict[str, Any]], metric: str) -> pd.DataFrame:
    """One row per record: cell keys, pair label, variant text, metric value and open-set Acc (NaN if none).

    Records with the same ``config_hash`` (the same run copied twice) count once: the latest ``created``.
    """
    rows = []
    for rec in records:
        cfg = rec["config"]
        extras = {k: cfg[k] for k in sorted(cfg) if k not in CELL_KEYS}
        rows.append(
            {
                "hash": rec["config_hash"],
                "created": rec["created"],
                "dataset": cfg["dataset"],
                "setting": cfg["setting"],
                "method": cfg["method"],
                "pair": rec["task"]["pair"],
                "seed": int(cfg["seed"]),
                "extras": canonical_json(extras),
                "mode": cfg.get("mode"),
                "backbone": cfg.get("backbone"),
                "value": record_metric(rec, metric),
                "acc": _number(rec["metrics"].get(OPENSET_ACC)),
                "code": str((rec.get("code") or {}).get("fingerprint") or ""),
            }
        )
    df = pd.DataFrame(rows)
    df = df.sort_values(["hash", "created"], kind="stable").drop_duplicates("hash", keep="last")
    return df.reset_index(drop=True)


def row_labels(df: pd.DataFrame) -> pd.Series:
    """``method``, plus ``[key=value, ...]`` for the config keys that vary among this method's records of
    the same (dataset, setting) table, e.g. ``uem [epochs_scale=0.5]``."""
    labels = pd.Series(df["method"], index=df.index, dtype=object)
    for _key, sub in df.groupby(["dataset", "setting", "method"], sort=False):
        extras = [json.loads(e) for e in sub["extras"]]
        keys = sorted({k for e in extras for k in e})
        varying = [k for k in keys if len({canonical_json(e.get(k)) for e in extras}) > 1]
        if not varying:
            continue
        for idx, e in zip(sub.index, extras, strict=True):
            parts = []
            for k in varying:
                v = e.get(k)
                parts.append(f"{k}={v if isinstance(v, str) else canonical_json(v)}")
            labels[idx] = f"{labels[idx]} [{', '.join(parts)}]"
    return labels


def select(df: pd.DataFrame, column: str, value: str | None) -> pd.DataFrame:
    """The lines with ``df[column] == value`` (all when ``value`` is None); ``UserError`` listing the values
    present when none has it."""
    if value is None:
        return df
    out = df[df[column] == value]
    if out.empty:
        present = ", ".join(sorted(set(df[column]))) or "none"
        raise UserError(f"No records for {column} '{value}'; {column}s present: {present}.")
    return out


def metrics_present(records: Sequence[dict[str, Any]], hashes: pd.Series) -> list[str]:
    """The metric keys with a value in any record of ``hashes`` (plus the derivable binary open-set Acc)."""
    keep = set(hashes)
    names = {
        k
        for r in records
        if r["config_hash"] in keep
        for k, v in r["metrics"].items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    }
    if {OPENSET_ACC, "false_rejection"} <= names:
        names.add("openset_binary_accuracy")  # derivable, see record_metric
    return sorted(names)

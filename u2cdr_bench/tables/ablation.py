"""Ablation and probe tables (``u2cdr-bench table --ablation LABEL=DIR ...``; issue 10's evidence).

A probe changes one reading of a method (``--hp KEY=VALUE``) and runs the same grid into its own folder; the
paper-format tables key rows by method, so two readings of UEM would collide there. Here each folder is a
row (split by method when it holds several: ``LABEL/method``), and the columns are what a reading of UEM is
judged by, per setting ``s`` in close-set / partial / open-set:

* ``mAP`` — the mean over the row's records of ``metric`` (default ``map_all``, percent) in that setting;
* ``open Acc`` / ``FR`` — the means of ``openset_accuracy`` (private queries flagged, %) and
  ``false_rejection`` (shared queries flagged, %) over the open-set records;
* ``merges`` — the mean number of merged prototype pairs at the **last stage-1 clustering** of each run
  (``method_info.clusterings`` entries with ``stage == 1``; UEM's Eq. 9), per setting;
* ``runs with a merge`` — the share of runs whose last stage-1 clustering merged at least one pair;
* ``K`` — the mean of ``(K_A + K_B) / 2`` at that clustering;
* ``SN2M agree`` — the mean of ``method_info.sn2m_agree`` (the share of samples on which SN2M's switch,
  Eqs. 15–17, finds the instance and the prototype search in agreement);
* ``Δ``, ``higher``, ``p`` — paired against the **first** row, over the cells both rows have (a cell is
  ``(dataset, setting, query, gallery, seed, split_seed)``): the mean of ``row − first`` in ``metric``, the
  number of cells where the row is higher out of the shared cells, and the two-sided Wilcoxon signed-rank
  p-value of those differences (:func:`~u2cdr_bench.tables.stats.wilcoxon_signed_rank`; zero differences
  dropped; ``–`` with fewer than :data:`~u2cdr_bench.tables.summary.MIN_PAIRED` non-zero differences, as in
  ``--stats``: below that even the exact test cannot reach 0.05).

A column a row's records do not carry (a baseline has no clusterings) prints ``–``. Records are read as they
are: a row's cells are whatever its folder holds, so a row missing pairs averages fewer cells (``runs``
says how many), and the paired columns use only the shared cells.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from .frame import record_metric
from .stats import wilcoxon_signed_rank
from .summary import MIN_PAIRED

__all__ = ["SETTINGS", "AblationRow", "ablation_rows", "group_by_method", "render_ablation", "summarise"]

#: The settings in column order.
SETTINGS = ("close-set", "partial", "open-set")


def _last_stage1(rec: dict[str, Any]) -> dict[str, Any] | None:
    clusterings = [c for c in rec.get("method_info", {}).get("clusterings", []) if c.get("stage") == 1]
    return clusterings[-1] if clusterings else None


def _mean(values: Sequence[float]) -> float | None:
    vals = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    return float(np.mean(vals)) if vals else None


def summarise(records: Sequence[dict[str, Any]], metric: str = "map_all") -> dict[str, dict[str, float]]:
    """Per setting: ``n`` records, ``map`` (mean ``metric``), and where the records carry them ``acc``,
    ``fr`` (open-set only), ``merged``, ``runs_merging`` (a fraction), ``k`` and ``agree``."""
    out: dict[str, dict[str, float]] = {}
    for setting in SETTINGS:
        rs = [r for r in records if r["config"]["setting"] == setting]
        if not rs:
            continue
        row: dict[str, float | None] = {
            "n": float(len(rs)),
            "map": _mean([record_metric(r, metric) for r in rs]),
        }
        if setting == "open-set":
            row["acc"] = _mean([record_metric(r, "openset_accuracy") for r in rs])
            row["fr"] = _mean([record_metric(r, "false_rejection") for r in rs])
        ends = [s for s in (_last_stage1(r) for r in rs) if s is not None]
        if ends:
            row["merged"] = _mean([s["merged"] for s in ends])
            row["runs_merging"] = _mean([float(s["merged"] > 0) for s in ends])
            row["k"] = _mean([(s["k_a"] + s["k_b"]) / 2 for s in ends])
        row["agree"] = _mean([r["method_info"]["sn2m_agree"] for r in rs if "sn2m_agree" in r["method_info"]])
        out[setting] = {k: v for k, v in row.items() if v is not None}
    return out


def _cell(rec: dict[str, Any]) -> tuple:
    c = rec["config"]
    return (c["dataset"], c["setting"], c["query"], c["gallery"], c["seed"], c.get("split_seed", 0))


@dataclass(frozen=True)
class AblationRow:
    """One row: its label, record count, per-setting summary and its paired comparison with the first row.

    ``diff`` is the mean of ``row − first`` over the ``shared`` cells, ``higher`` how many of them are
    positive, ``p`` the Wilcoxon p-value (NaN where it cannot be computed, and for the first row itself).
    """

    label: str
    n: int
    by_setting: dict[str, dict[str, float]] = field(default_factory=dict)
    diff: float = math.nan
    higher: int = 0
    shared: int = 0
    p: float = math.nan


def group_by_method(label: str, records: Sequence[dict[str, Any]]) -> list[tuple[str, list[dict[str, Any]]]]:
    """``[(label, records)]`` for a folder of one method, ``[("label/method", records), ...]`` otherwise
    (methods in first-seen order)."""
    methods: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        methods.setdefault(r["config"]["method"], []).append(r)
    if len(methods) <= 1:
        return [(label, list(records))]
    return [(f"{label}/{m}", rs) for m, rs in methods.items()]


def ablation_rows(
    groups: Sequence[tuple[str, Sequence[dict[str, Any]]]], metric: str = "map_all"
) -> list[AblationRow]:
    """The rows of an ablation table, each ``(label, records)`` group one row, paired against the first."""
    rows: list[AblationRow] = []
    ref: dict[tuple, float] = {}
    for i, (label, recs) in enumerate(groups):
        values = {_cell(r): record_metric(r, metric) for r in recs}
        values = {k: v for k, v in values.items() if not math.isnan(v)}
        if i == 0:
            ref = values
            rows.append(AblationRow(label, len(recs), summarise(recs, metric)))
            continue
        shared = sorted(set(values) & set(ref))
        d = np.array([values[k] - ref[k] for k in shared], dtype=np.float64)
        # as in --stats: below MIN_PAIRED non-zero differences even the exact test cannot reach 0.05
        p = wilcoxon_signed_rank(d).p if np.count_nonzero(d) >= MIN_PAIRED else math.nan
        rows.append(
            AblationRow(
                label,
                len(recs),
                summarise(recs, metric),
                diff=float(d.mean()) if d.size else math.nan,
                higher=int((d > 0).sum()),
                shared=int(d.size),
                p=p,
            )
        )
    return rows


def _fmt(value: float | None, spec: str) -> str:
    return "–" if value is None or math.isnan(value) else format(value, spec)


def _per_setting(row: AblationRow, key: str, spec: str) -> str:
    return " / ".join(_fmt(row.by_setting.get(s, {}).get(key), spec) for s in SETTINGS)


def _frame(rows: Sequence[AblationRow]) -> pd.DataFrame:
    lines = []
    for i, r in enumerate(rows):
        s = r.by_setting
        lines.append(
            {
                "row": r.label,
                "runs": str(r.n),
                "close": _fmt(s.get("close-set", {}).get("map"), ".1f"),
                "partial": _fmt(s.get("partial", {}).get("map"), ".1f"),
                "open": _fmt(s.get("open-set", {}).get("map"), ".1f"),
                "open Acc": _fmt(s.get("open-set", {}).get("acc"), ".1f"),
                "FR": _fmt(s.get("open-set", {}).get("fr"), ".1f"),
                "merges": _per_setting(r, "merged", ".1f"),
                "runs with a merge": _per_setting(r, "runs_merging", ".0%"),
                "K": _per_setting(r, "k", ".1f"),
                "SN2M agree": _per_setting(r, "agree", ".2f"),
                "Δ": "–" if i == 0 else _fmt(r.diff, "+.2f"),
                "higher": "–" if i == 0 else f"{r.higher}/{r.shared}",
                "p": "–" if i == 0 else _fmt(r.p, ".3g"),
            }
        )
    return pd.DataFrame(lines)


def render_ablation(
    groups: Sequence[tuple[str, Sequence[dict[str, Any]]]], metric: str = "map_all", fmt: str = "markdown"
) -> str:
    """The ablation table of ``groups`` as ``markdown`` (GitHub pipes), ``latex`` or ``csv`` text."""
    from tabulate import tabulate

    frame = _frame(ablation_rows(groups, metric))
    if fmt == "csv":
        return frame.to_csv(index=False)
    per = "merges, runs with a merge, K and SN2M agree: close / partial / open-set"
    head = (
        f"Ablation ({metric}; Δ, higher and p paired against the first row; {per}; "
        "merges at the last stage-1 clustering)"
    )
    if fmt == "latex":
        body = tabulate(frame.values.tolist(), headers=list(frame.columns), tablefmt="latex_booktabs")
        return f"% {head}\n{body}\n"
    body = tabulate(
        frame.values.tolist(), headers=list(frame.columns), tablefmt="github", disable_numparse=True
    )
    return f"{head}\n\n{body}\n"

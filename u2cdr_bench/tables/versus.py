"""Head-to-head: a reference row against every other run row, per (dataset, setting) table.

``u2cdr-bench table --versus ROW``. The statistical version (a paired Wilcoxon test over (pair, seed) with
its effect size) is in :mod:`.summary` (``--stats --versus ROW``).
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pandas as pd
from tabulate import tabulate

from ..errors import UserError
from .build import build_tables, printed
from .frame import setting_key
from .model import AVG, LOWER_IS_BETTER, METRIC_LABELS, MISSING, Row, Table, fmt1


@dataclass(frozen=True)
class Versus:
    """``ref`` against one other row of one (dataset, setting) table, over the pairs both rows have.

    ``ref_avg`` / ``other_avg`` are plain means of the per-pair means over those ``n`` pairs; ``wins`` /
    ``losses`` count the pairs where ``ref``'s printed value (one decimal) is better / worse (higher, or lower
    for :data:`LOWER_IS_BETTER` metrics); equal printed values are ties.
    """

    dataset: str
    setting: str
    method: str
    ref_avg: float
    other_avg: float
    wins: int
    losses: int
    n: int

    @property
    def diff(self) -> float:
        return self.ref_avg - self.other_avg


def reference_row(table: Table, ref: str) -> Row | None:
    """The run row ``ref`` names in ``table``: the row with that label, else the one row of that method.

    ``None`` when no run row matches; ``UserError`` when ``ref`` is a method with several rows (variants).
    """
    runs = [r for r in table.rows if r.source == "run"]
    matches = [r for r in runs if r.label == ref] or [r for r in runs if r.method == ref]
    if len(matches) > 1:
        raise UserError(
            f"'{ref}' names {len(matches)} rows of the {table.dataset} {table.setting} table "
            f"({', '.join(r.label for r in matches)}); "
            "pass one of these labels, or --dataset / --protocol."
        )
    return matches[0] if matches else None


def versus(
    records: Sequence[dict[str, Any]],
    ref: str,
    dataset: str | None = None,
    setting: str | None = None,
    metric: str = "map_all",
    methods: Sequence[str] | None = None,
) -> list[Versus]:
    """Head-to-head of the row ``ref`` against every other run row.

    ``ref`` is a row label (``uem [epochs_scale=0.5]``) or a method with a single row in each table
    (``UserError`` when it names several). One :class:`Versus` per (dataset, setting, other row) in table
    order; rows sharing no pair with ``ref`` are left out, and so are rows whose method is not in ``methods``
    (when given). ``UserError`` when ``ref`` is in none of the tables, listing the rows present.
    """
    tables = build_tables(records, dataset=dataset, setting=setting, metric=metric)
    lower = metric in LOWER_IS_BETTER
    out: list[Versus] = []
    found = False
    for t in tables:
        ref_row = reference_row(t, ref)
        if ref_row is None:
            continue
        found = True
        for row in t.rows:
            if row is ref_row or row.source != "run" or (methods is not None and row.method not in methods):
                continue
            pairs = [
                c
                for c in t.columns
                if c != AVG and row.cells.get(c) is not None and ref_row.cells.get(c) is not None
            ]
            if not pairs:
                continue
            a = [ref_row.cells[c].mean for c in pairs]  # type: ignore[union-attr]
            b = [row.cells[c].mean for c in pairs]  # type: ignore[union-attr]
            pa = [printed(ref_row.cells[c]) for c in pairs]  # type: ignore[arg-type]
            pb = [printed(row.cells[c]) for c in pairs]  # type: ignore[arg-type]
            better = sum((x < y) if lower else (x > y) for x, y in zip(pa, pb, strict=True))
            worse = sum((x > y) if lower else (x < y) for x, y in zip(pa, pb, strict=True))
            out.append(
                Versus(
                    t.dataset,
                    t.setting,
                    row.label,
                    sum(a) / len(a),
                    sum(b) / len(b),
                    better,
                    worse,
                    len(pairs),
                )
            )
    if not found:
        labels = sorted({r.label for t in tables for r in t.rows if r.source == "run"})
        raise UserError(f"No records for '{ref}' to compare against; rows present: {', '.join(labels)}.")
    if not out:
        only = f" among the methods {', '.join(methods)}" if methods else ""
        raise UserError(f"Nothing to compare '{ref}' against: no other run row{only} shares a pair with it.")
    return out


def render_versus(
    records: Sequence[dict[str, Any]],
    ref: str,
    dataset: str | None = None,
    setting: str | None = None,
    metric: str = "map_all",
    fmt: str = "markdown",
    methods: Sequence[str] | None = None,
) -> str:
    """:func:`versus` as one table per dataset: a row per method, a column per setting.

    A markdown cell reads ``+1.9 (8/12)``: ``ref``'s average minus the method's over the pairs both have
    (percentage points, one decimal), then the pairs ``ref`` wins out of those pairs. ``csv`` gives every
    field of :class:`Versus` (long format).
    """
    rows = versus(records, ref, dataset=dataset, setting=setting, metric=metric, methods=methods)
    if fmt == "csv":
        df = pd.DataFrame(
            [
                {
                    "dataset": v.dataset,
                    "setting": v.setting,
                    "method": v.method,
                    "ref": ref,
                    "metric": metric,
                    "ref_avg": round(v.ref_avg, 4),
                    "other_avg": round(v.other_avg, 4),
                    "diff": round(v.diff, 4),
                    "wins": v.wins,
                    "losses": v.losses,
                    "n_pairs": v.n,
                }
                for v in rows
            ]
        )
        buf = io.StringIO()
        df.to_csv(buf, index=False, lineterminator="\n")
        return buf.getvalue()
    if fmt != "markdown":
        raise UserError(f"The versus table comes as markdown or csv, not '{fmt}'.")
    blocks = []
    for ds in dict.fromkeys(v.dataset for v in rows):
        sub = [v for v in rows if v.dataset == ds]
        settings = sorted(dict.fromkeys(v.setting for v in sub), key=setting_key)
        methods_in = list(dict.fromkeys(v.method for v in sub))
        cell = {(v.method, v.setting): v for v in sub}
        body = []
        for m in methods_in:
            line = [m]
            for st in settings:
                v = cell.get((m, st))
                if v is None:
                    line.append(MISSING)
                else:
                    line.append(f"{'+' if v.diff >= 0 else ''}{fmt1(v.diff)} ({v.wins}/{v.n})")
            body.append(line)
        label = METRIC_LABELS.get(metric, metric)
        caption = (
            f"**{ds}: {ref} against each method, {label}.** A cell is {ref}'s average minus the method's "
            f"over the pairs both have (points), then the pairs {ref} wins / pairs compared (ties count for "
            "neither)."
        )
        grid = tabulate(body, headers=["method", *settings], tablefmt="github")
        blocks.append(f"{caption}\n\n{grid}\n")
    return "\n".join(blocks)

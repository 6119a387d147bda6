"""Per-table statistics of ``table --stats``: what :mod:`.stats` computes, applied to one built table.

For each run row of a (dataset, setting) table (paper rows are never tested):

* ``avg``: the table's ``Avg`` cell, the mean over the pairs of the per-pair means, ± the population std
  over seeds of the per-seed averages (:mod:`.build`; no std with one seed).
* ``ci``: the 95 % percentile interval of that average under the two-way bootstrap over pairs and seeds
  (:func:`.stats.bootstrap_mean_ci`, seeded), on the seeds that have every pair; with one seed it
  resamples pairs only.
* ``rank``: the average rank over the pairs (blocks), 1 = best, of the rows that have every pair, each row's
  value in a pair being its cell mean over seeds; the Friedman test and the Nemenyi post-hoc run on the same
  (pairs × rows) matrix (:func:`.stats.friedman`, :func:`.stats.nemenyi`).
* ``paired``: with a reference row (``--versus``), the two-sided Wilcoxon signed-rank test of the reference
  minus the row over every (pair, seed) both have, its rank-biserial effect size and its p-value
  Holm-adjusted over the comparisons of this table (:func:`.stats.wilcoxon_signed_rank`, :func:`.stats.holm`).

Too little evidence is said, not tested: no Friedman test with fewer than :data:`MIN_BLOCKS` pairs or 3
rows, and no Wilcoxon p-value with fewer than :data:`MIN_PAIRED` non-zero differences (below 6 the exact
two-sided p cannot fall under 0.05, 2/2⁵ = 0.0625); the table's notes say which and why.

Assumption: rows lacking a pair get no rank and stay out of the Friedman test; the interval of a row whose
pairs have different seeds uses only the seeds that have every pair (its centre can then differ from Avg).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ..errors import UserError
from . import stats as st
from .build import build_tables
from .model import AVG, Row, Stat, Table
from .versus import reference_row

#: Fewest blocks (pairs) of a Friedman test, fewest non-zero differences of a Wilcoxon p-value.
MIN_BLOCKS = 3
MIN_PAIRED = 6


@dataclass(frozen=True)
class Paired:
    """The reference row against one row: ``n`` matched (pair, seed) runs, ``diff`` the mean of reference
    minus row over them (points), ``wins`` / ``losses`` the runs where the reference is better / worse
    (higher, or lower for lower-is-better metrics; exact values), the test and its Holm-adjusted p."""

    n: int
    diff: float
    wins: int
    losses: int
    test: st.SignedRank
    p_holm: float


@dataclass(frozen=True)
class RowStats:
    """One run row's statistics (``None`` where the row lacks a pair, or for the reference's own test)."""

    label: str
    method: str
    avg: Stat | None
    ci: tuple[float, float] | None
    ci_seeds: int  # seeds behind the interval (those with every pair)
    rank: float | None
    paired: Paired | None
    is_ref: bool = False


@dataclass
class TableStats:
    """The statistics of one table. ``ranked``: the rows with every pair (the Friedman / Nemenyi rows)."""

    table: Table
    rows: list[RowStats]
    seeds: list[int]
    ranked: list[str]
    friedman: st.Friedman | None
    nemenyi_p: pd.DataFrame | None
    cd: float | None
    ref: str | None  # the reference row's label in this table, None without one
    notes: list[str] = field(default_factory=list)  # why a statistic is missing

    @property
    def ranks(self) -> dict[str, float]:
        """Average rank of each ranked row, by label."""
        return {r.label: r.rank for r in self.rows if r.rank is not None}


def _matrix(values: pd.DataFrame, label: str, pairs: list[str]) -> pd.DataFrame:
    """(pairs × seeds) values of one row, NaN where a run is missing."""
    sub = values[values["row"] == label]
    mat = sub.pivot_table(index="pair", columns="seed", values="value", aggfunc="mean")
    return mat.reindex(index=pairs)


def _paired(values: pd.DataFrame, ref: str, label: str, lower: bool) -> tuple[int, float, int, int, Any]:
    keys = ["pair", "seed"]
    a = values[values["row"] == ref].groupby(keys)["value"].mean()
    b = values[values["row"] == label].groupby(keys)["value"].mean()
    both = pd.concat([a.rename("ref"), b.rename("other")], axis=1, join="inner")
    if both.empty:
        return 0, float("nan"), 0, 0, None
    d = (both["ref"] - both["other"]).to_numpy()
    better = int((d < 0).sum() if lower else (d > 0).sum())
    worse = int((d > 0).sum() if lower else (d < 0).sum())
    return len(d), float(d.mean()), better, worse, st.wilcoxon_signed_rank(d)


def table_stats(table: Table, ref: str | None = None) -> TableStats:
    """The statistics of ``table`` (built by :func:`.build.build_tables`), ``ref`` a row label or method."""
    if table.values is None:
        raise ValueError("table_stats needs a table built from records (Table.values)")
    values = table.values
    pairs = table.pairs
    lower = table.lower_is_better
    runs: list[Row] = [r for r in table.rows if r.source == "run"]
    seeds = sorted(int(s) for s in values["seed"].unique())
    notes: list[str] = []

    ci: dict[str, tuple[tuple[float, float] | None, int]] = {}
    for row in runs:
        mat = _matrix(values, row.label, pairs).dropna(axis=1, how="any")
        if row.cells.get(AVG) is None or mat.shape[1] == 0:
            ci[row.label] = (None, 0)
        else:
            ci[row.label] = (st.bootstrap_mean_ci(mat.to_numpy()), int(mat.shape[1]))

    ranked = [r for r in runs if r.cells.get(AVG) is not None]
    labels = [r.label for r in ranked]
    ranks: dict[str, float] = {}
    fried, nem, cd = None, None, None
    if len(ranked) >= 2:
        scores = np.array([[r.cells[p].mean for r in ranked] for p in pairs])  # type: ignore[union-attr]
        ranks = dict(zip(labels, st.average_ranks(scores, lower).tolist(), strict=True))
        if len(ranked) >= 3 and len(pairs) >= MIN_BLOCKS:
            fried = st.friedman(scores)
            nem = st.nemenyi(scores, labels)
            cd = st.critical_difference(len(ranked), len(pairs))
        else:
            notes.append(
                f"no Friedman test: it needs at least 3 rows with every pair and {MIN_BLOCKS} pairs "
                f"({len(ranked)} and {len(pairs)} here)"
            )
    else:
        notes.append("no ranks: fewer than 2 rows have every pair")
    missing = [r.label for r in runs if r.cells.get(AVG) is None]
    if missing:
        notes.append(f"not ranked (a pair missing): {', '.join(missing)}")

    ref_row = reference_row(table, ref) if ref is not None else None
    raw: dict[str, tuple[int, float, int, int, Any]] = {}
    if ref_row is not None:
        for row in runs:
            if row is not ref_row:
                raw[row.label] = _paired(values, ref_row.label, row.label, lower)
    few = [k for k, v in raw.items() if v[4] is not None and v[4].n_nonzero < MIN_PAIRED]
    for k in few:  # no p-value: it could not fall below 0.05
        n, diff, wins, losses, test = raw[k]
        raw[k] = (n, diff, wins, losses, replace(test, p=float("nan")))
    if few:
        notes.append(
            f"no Wilcoxon p-value for {', '.join(few)}: fewer than {MIN_PAIRED} runs differ from "
            f"{ref_row.label if ref_row else ref}, too few for a two-sided p below 0.05"
        )
    tested = [k for k, v in raw.items() if v[4] is not None and k not in few]
    adjusted = dict(zip(tested, st.holm([raw[k][4].p for k in tested]), strict=True))

    rows = []
    for row in runs:
        paired = None
        if row.label in raw and raw[row.label][4] is not None:
            n, diff, wins, losses, test = raw[row.label]
            paired = Paired(n, diff, wins, losses, test, adjusted.get(row.label, float("nan")))
        interval, n_ci = ci[row.label]
        rows.append(
            RowStats(
                row.label,
                row.method,
                row.cells.get(AVG),
                interval,
                n_ci,
                ranks.get(row.label),
                paired,
                is_ref=row is ref_row,
            )
        )
    ref_label = ref_row.label if ref_row is not None else None
    return TableStats(table, rows, seeds, labels if ranks else [], fried, nem, cd, ref_label, notes)


def build_stats(
    records: Sequence[dict[str, Any]],
    dataset: str | None = None,
    setting: str | None = None,
    metric: str = "map_all",
    methods: Sequence[str] | None = None,
    ref: str | None = None,
    paper: bool = False,
) -> list[TableStats]:
    """:func:`table_stats` of every table :func:`.build.build_tables` makes of ``records``.

    ``UserError`` when ``ref`` is given and is a row of none of the tables (listing the rows present).
    """
    tables = build_tables(records, dataset, setting, metric, paper, methods)
    out = [table_stats(t, ref) for t in tables]
    if ref is not None and all(s.ref is None for s in out):
        labels = sorted({r.label for t in tables for r in t.rows if r.source == "run"})
        raise UserError(f"No records for '{ref}' to compare against; rows present: {', '.join(labels)}.")
    return out

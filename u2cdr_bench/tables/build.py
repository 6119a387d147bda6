"""Build the format-independent :class:`~.model.Table` s from records: cell statistics, ``Avg``, marks.

Statistics (paper-spec §4.3). For a row (method) and a pair with per-seed values :math:`v_s`, :math:`s\\in S`,
the cell is :math:`\\bar v=\\frac1{|S|}\\sum_s v_s` ± the *population* standard deviation
:math:`\\sqrt{\\frac1{|S|}\\sum_s (v_s-\\bar v)^2}` (``ddof=0``, as DomainBed's ``format_mean``); one seed
prints the mean alone. ``Avg`` is the mean over the pairs :math:`P` of the per-pair means,
:math:`\\frac1{|P|}\\sum_p \\bar v_p`, shown only when the row has every pair of the table; its std is the
population std over seeds of the per-seed averages :math:`a_s=\\frac1{|P|}\\sum_p v_{s,p}`, using only the
seeds that have every pair, and shown only when at least two seeds do.

Marks: in each column the best run row (highest; lowest for ``false_rejection``) is marked ``best`` and the
second best ``second``, comparing the values as printed (one decimal, so equal-looking values share a mark).
Best is marked only when at least two rows have a value, second best only when at least three do. Open-set
``map_all`` cells read ``mAP / Acc`` and are ranked by mAP. Rows of the paper are never ranked.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd

from ..errors import UserError
from . import frame
from .model import AVG, LOWER_IS_BETTER, METRIC_LABELS, MIXED_MARK, Row, Stat, Table, fmt1
from .paper import paper_results_cached, paper_rows


def _cell_stats(df: pd.DataFrame, column: str) -> dict[tuple[str, str], Stat]:
    """(row, pair) -> mean ± population std over seeds of ``df[column]`` (NaN values skipped)."""
    sub = df.dropna(subset=[column])
    out: dict[tuple[str, str], Stat] = {}
    for (row, pair), vals in sub.groupby(["row", "pair"], sort=False)[column]:
        n = int(vals.size)
        std = float(vals.std(ddof=0)) if n >= 2 else None
        out[(str(row), str(pair))] = Stat(float(vals.mean()), std, n)
    return out


def _avg_stat(df: pd.DataFrame, column: str, row: str, pairs: list[str], cells: dict) -> Stat | None:
    """Avg of a row: mean of the per-pair means; std over the seeds that have every pair (≥ 2 of them)."""
    if any((row, p) not in cells for p in pairs):
        return None
    mean = sum(cells[(row, p)].mean for p in pairs) / len(pairs)
    sub = df[(df["row"] == row)].dropna(subset=[column])
    per_seed = sub.pivot_table(index="seed", columns="pair", values=column, aggfunc="mean")
    per_seed = per_seed.reindex(columns=pairs).dropna(axis=0, how="any")
    n = len(per_seed)
    std = float(per_seed.mean(axis=1).std(ddof=0)) if n >= 2 else None
    return Stat(mean, std, n)


def printed(stat: Stat) -> float:
    """The value as printed (one decimal), the basis of marks and pair wins."""
    return float(fmt1(stat.mean))


def _mark(rows: list[Row], columns: list[str], lower_better: bool) -> None:
    """Set ``marks`` on run rows: best per column (≥ 2 values) and second best (≥ 3 values)."""
    for col in columns:
        vals = [(r, printed(r.cells[col])) for r in rows if r.source == "run" and r.cells.get(col)]
        if len(vals) < 2:
            continue
        distinct = sorted({v for _, v in vals}, reverse=not lower_better)
        for r, v in vals:
            if v == distinct[0]:
                r.marks[col] = "best"
            elif len(vals) >= 3 and len(distinct) >= 2 and v == distinct[1]:
                r.marks[col] = "second"


def _metric_label(metric: str, paired: bool) -> str:
    if paired:
        return "shared-set mAP@All / open-set Acc"
    return METRIC_LABELS.get(metric, metric)


def _build_table(
    df: pd.DataFrame, dataset: str, setting: str, metric: str, order: list[str], paper: dict | None
) -> Table:
    """One table from the lines of one (dataset, setting); ``order``: the registry's method order."""
    paired = metric == "map_all" and setting == "open-set" and df["acc"].notna().any()
    pairs = frame.pair_order(dataset, df["pair"].unique())
    columns = pairs + [AVG]
    cells = _cell_stats(df, "value")
    accs = _cell_stats(df, "acc") if paired else {}

    rank = {m: i for i, m in enumerate(order)}
    row_keys = df[["row", "method"]].drop_duplicates()
    row_keys = sorted(
        row_keys.itertuples(index=False),
        key=lambda t: (rank.get(t.method, len(rank)), t.method, t.row),
    )
    rows: list[Row] = []
    for key in row_keys:
        row_cells: dict[str, Stat | None] = {p: cells.get((key.row, p)) for p in pairs}
        row_cells[AVG] = _avg_stat(df, "value", key.row, pairs, cells)
        row_acc: dict[str, Stat | None] = {}
        if paired:
            row_acc = {p: accs.get((key.row, p)) for p in pairs}
            row_acc[AVG] = _avg_stat(df, "acc", key.row, pairs, accs)
        mixed = df.loc[df["row"] == key.row, "code"].nunique() > 1
        rows.append(Row(key.row, key.method, "run", row_cells, row_acc, mixed_code=bool(mixed)))
    _mark(rows, columns, metric in LOWER_IS_BETTER)

    details = [_metric_label(metric, paired) + ", " + _seed_clause(df, cells)]
    setup = []
    for key, noun in (("mode", "mode"), ("backbone", "backbone")):
        vals = df[key]
        if vals.notna().all() and vals.nunique() == 1:
            setup.append(f"{vals.iloc[0]} {noun}")
    if setup:
        details.append(", ".join(setup))
    if any(r.mixed_code for r in rows):
        details.append(f"{MIXED_MARK} records from several code versions (fingerprints); re-run with --force")
    if paper is not None:
        extra, note = paper_rows(paper, dataset, setting, metric, pairs, paired)
        rows.extend(extra)
        details.append(note)
    values = df[["row", "method", "pair", "seed", "value", "acc"]].reset_index(drop=True)
    return Table(dataset, setting, metric, columns, rows, paired, details, values)


def _seed_clause(df: pd.DataFrame, cells: dict[tuple[str, str], Stat]) -> str:
    seeds = sorted(int(s) for s in df.dropna(subset=["value"])["seed"].unique())
    counts = sorted({s.n for s in cells.values()})
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    n = f"n={counts[0]}" if len(counts) == 1 else f"n={counts[0]}–{counts[-1]} seeds per cell"
    return f"mean±std over seeds {', '.join(map(str, seeds))} (population std, ddof=0); {n}"


def build_tables(
    records: Sequence[dict[str, Any]],
    dataset: str | None = None,
    setting: str | None = None,
    metric: str = "map_all",
    paper: bool = False,
    methods: Sequence[str] | None = None,
) -> list[Table]:
    """The tables of :func:`render_tables`, before formatting (one per (dataset, setting), sorted)."""
    if not records:
        raise UserError("No records to tabulate; run `u2cdr-bench run` first or pass --runs DIR.")
    df = frame.long_frame(records, metric)
    df = frame.select(df, "dataset", dataset)
    df = frame.select(df, "setting", setting)
    if methods:
        present = set(df["method"])
        unknown = [m for m in methods if m not in present]
        if len(unknown) == len(methods):
            listed = ", ".join(sorted(present))
            raise UserError(f"No records for method(s) {', '.join(methods)}; methods present: {listed}.")
        df = df[df["method"].isin(list(methods))]
    present_metrics = frame.metrics_present(records, df["hash"])
    if metric not in present_metrics:
        raise UserError(
            f"Metric '{metric}' is in none of the selected records; metrics present: "
            f"{', '.join(present_metrics) or 'none'}."
        )
    df = df.dropna(subset=["value"]).copy()
    df["row"] = frame.row_labels(df)
    order = frame.hook("_method_order")()
    paper_data = paper_results_cached() if paper else None
    tables = []
    groups = sorted(df.groupby(["dataset", "setting"]).groups, key=lambda g: (g[0], frame.setting_key(g[1])))
    for ds, st in groups:
        sub = df[(df["dataset"] == ds) & (df["setting"] == st)]
        tables.append(_build_table(sub, ds, st, metric, order, paper_data))
    return tables

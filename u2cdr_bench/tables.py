"""Result tables in the paper's format, built from run records only (never from logs).

One table per (dataset, setting). Rows are methods in registry order; columns are the directed pairs
``Q→G`` (query→gallery domain abbreviations) in the dataset's order, then ``Avg``.

Statistics (paper-spec §4.3). For a row (method) and a pair with per-seed values :math:`v_s`, :math:`s\\in S`,
the cell is :math:`\\bar v=\\frac1{|S|}\\sum_s v_s` ± the *population* standard deviation
:math:`\\sqrt{\\frac1{|S|}\\sum_s (v_s-\\bar v)^2}` (``ddof=0``, as DomainBed's ``format_mean``); one seed
prints the mean alone. ``Avg`` is the mean over the pairs :math:`P` of the per-pair means,
:math:`\\frac1{|P|}\\sum_p \\bar v_p`, shown only when the row has every pair of the table; its std is the
population std over seeds of the per-seed averages :math:`a_s=\\frac1{|P|}\\sum_p v_{s,p}`, using only the
seeds that have every pair, and shown only when at least two seeds do. Values are percentages printed with
one decimal, halves rounded away from zero (:func:`fmt1`).

Marks: in each column the best run row (highest; lowest for ``false_rejection``) is **bold** and the second
best is *italic* in markdown / ``\\underline`` in LaTeX, comparing the values as printed (one decimal, so
equal-looking values share a mark). Best is marked only when at least two rows have a value, second best
only when at least three do. Open-set ``map_all`` cells read ``mAP / Acc`` and are ranked by mAP. Rows of the
paper (``paper=True``) are reference rows and never ranked.

Code versions: a run row whose records carry more than one code fingerprint (``record["code"]``, see
:mod:`u2cdr_bench.fingerprint`; a record without one counts as its own version) is marked ``†`` in markdown
and LaTeX, and the caption says so: its cells mix numbers from different code. The csv format is unchanged.

Example::

    from u2cdr_bench.records import load_records
    print(render_tables(load_records("runs"), dataset="office31", fmt="markdown", paper=True))
"""

from __future__ import annotations

import copy
import io
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from importlib import resources
from typing import Any

import pandas as pd
import yaml
from tabulate import tabulate

from .errors import UserError
from .records import canonical_json

FORMATS: tuple[str, ...] = ("markdown", "latex", "csv")
#: Display order of the settings; unknown settings follow alphabetically.
SETTING_ORDER: tuple[str, ...] = ("close-set", "partial", "open-set")
#: Human labels of the record metrics (unknown metrics print their key).
METRIC_LABELS: dict[str, str] = {
    "map_all": "mAP@All",
    "map_all_standard": "mAP@All (plain AP, query mean)",
    "p@1": "P@1",
    "p@5": "P@5",
    "p@15": "P@15",
    "map_at_r": "MAP@R",
    "openset_accuracy": "open-set Acc",
    "false_rejection": "false rejection",
    "openset_binary_accuracy": "open-set Acc (binary, all queries)",
}
#: Metrics where lower is better (best = smallest).
LOWER_IS_BETTER: frozenset[str] = frozenset({"false_rejection"})
MISSING = "–"
MIXED_MARK = "†"
AVG = "Avg"
#: Config keys that place a record in a table cell; every other config key distinguishes variants of a method.
_CELL_KEYS = ("method", "dataset", "setting", "query", "gallery", "seed")
_OPENSET_ACC = "openset_accuracy"


@dataclass(frozen=True)
class Stat:
    """A printed statistic: mean, std (``None`` = not printed) and the number of seeds behind it."""

    mean: float
    std: float | None
    n: int

    def text(self) -> str:
        if self.std is None:
            return fmt1(self.mean)
        return f"{fmt1(self.mean)}±{fmt1(self.std)}"


def fmt1(x: float) -> str:
    """``x`` with one decimal, halves rounded away from zero as printed tables do (``78.35 -> "78.4"``).

    The value is first rounded to 9 decimals so that binary noise (``78.35`` stored as ``78.3499...``)
    does not decide the rounding.
    """
    d = Decimal(f"{x:.9f}").quantize(Decimal("0.1"), rounding=ROUND_HALF_UP)
    return f"{d:.1f}" if d != 0 else "0.0"


@dataclass
class Row:
    """One table row: ``cells[column]`` (and ``acc[column]`` for open-set mAP tables); ``None`` = missing."""

    label: str
    method: str
    source: str  # "run" or "paper"
    cells: dict[str, Stat | None]
    acc: dict[str, Stat | None] = field(default_factory=dict)
    marks: dict[str, str] = field(default_factory=dict)  # column -> "best" | "second"
    mixed_code: bool = False  # records of several code fingerprints

    @property
    def shown_label(self) -> str:
        """The label as printed: ``†`` after it when its records come from several code versions."""
        return f"{self.label} {MIXED_MARK}" if self.mixed_code else self.label


@dataclass
class Table:
    """One (dataset, setting) table, independent of the output format."""

    dataset: str
    setting: str
    metric: str
    columns: list[str]  # pair labels, then "Avg"
    rows: list[Row]
    paired: bool  # cells read "mAP / Acc"
    details: list[str]  # caption clauses, plain unicode


# --------------------------------------------------------------------------------------------------------
# The paper's numbers


@lru_cache(maxsize=1)
def _paper_results_cached() -> dict[str, Any]:
    text = resources.files("u2cdr_bench").joinpath("paper/results.yaml").read_text(encoding="utf-8")
    return yaml.safe_load(text)


def load_paper_results() -> dict[str, Any]:
    """The paper's result tables (``u2cdr_bench/paper/results.yaml``; paper-spec §6) as a fresh dict.

    ``["tables"][paper_key][setting]`` has ``source`` (e.g. ``"Table 7 (appendix)"``), ``metric``, ``pairs``
    (column labels in paper order) and ``rows``: method -> pair label (and ``"Avg"``) -> ``[mean, std]`` or a
    bare mean; open-set cells are ``{"map": ..., "acc": ...}``. ``["ablations"]`` holds Table 4.
    """
    return copy.deepcopy(_paper_results_cached())


def _paper_stat(value: Any, n: int) -> Stat:
    if isinstance(value, list):
        return Stat(float(value[0]), float(value[1]), n)
    return Stat(float(value), None, n)


# --------------------------------------------------------------------------------------------------------
# Orders


def _method_order() -> list[str]:
    """Registry order of the methods (table row order); empty when the registry cannot be imported yet."""
    try:
        from .methods import method_names

        return method_names()
    except ImportError:
        return []


def _dataset_spec(name: str) -> Any | None:
    try:
        from .data.registry import get_dataset

        return get_dataset(name)
    except (ImportError, UserError):
        return None


def _pair_order(dataset: str, labels: Iterable[str]) -> list[str]:
    """The present pair labels in the dataset's ``all_pairs()`` order (unknown labels after, sorted)."""
    labels = set(labels)
    order: list[str] = []
    spec = _dataset_spec(dataset)
    if spec is not None:
        for q, g in spec.all_pairs():
            label = f"{spec.abbrev(q)}→{spec.abbrev(g)}"
            if label in labels and label not in order:
                order.append(label)
    return order + sorted(labels - set(order))


def _setting_key(setting: str) -> tuple[int, str]:
    if setting in SETTING_ORDER:
        return (SETTING_ORDER.index(setting), setting)
    return (len(SETTING_ORDER), setting)


def _paper_key(dataset: str, paper: dict[str, Any]) -> str | None:
    spec = _dataset_spec(dataset)
    if spec is not None:
        return spec.paper_key
    return dataset if dataset in paper["tables"] else None


# --------------------------------------------------------------------------------------------------------
# Records -> long frame


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
        acc, fr = _number(metrics.get(_OPENSET_ACC)), _number(metrics.get("false_rejection"))
        counts = rec.get("counts", {})
        n, p = _number(counts.get("n_query")), _number(counts.get("n_query_private"))
        if not n or math.isnan(n) or math.isnan(p):
            return math.nan
        private = acc * p if p else 0.0
        shared = (100.0 - fr) * (n - p) if n - p else 0.0
        return (private + shared) / n
    return _number(metrics.get(metric))


def _frame(records: Sequence[dict[str, Any]], metric: str) -> pd.DataFrame:
    """One row per record: cell keys, pair label, variant text, metric value and open-set Acc (NaN if none).

    Records with the same ``config_hash`` (the same run copied twice) count once: the latest ``created``.
    """
    rows = []
    for rec in records:
        cfg = rec["config"]
        extras = {k: cfg[k] for k in sorted(cfg) if k not in _CELL_KEYS}
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
                "acc": _number(rec["metrics"].get(_OPENSET_ACC)),
                "code": str((rec.get("code") or {}).get("fingerprint") or ""),
            }
        )
    df = pd.DataFrame(rows)
    df = df.sort_values(["hash", "created"], kind="stable").drop_duplicates("hash", keep="last")
    return df.reset_index(drop=True)


def _row_labels(df: pd.DataFrame) -> pd.Series:
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


# --------------------------------------------------------------------------------------------------------
# Statistics


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


def _printed(stat: Stat) -> float:
    return float(fmt1(stat.mean))


def _mark(rows: list[Row], columns: list[str], lower_better: bool) -> None:
    """Set ``marks`` on run rows: best per column (≥ 2 values) and second best (≥ 3 values)."""
    for col in columns:
        vals = [(r, _printed(r.cells[col])) for r in rows if r.source == "run" and r.cells.get(col)]
        if len(vals) < 2:
            continue
        distinct = sorted({v for _, v in vals}, reverse=not lower_better)
        for r, v in vals:
            if v == distinct[0]:
                r.marks[col] = "best"
            elif len(vals) >= 3 and len(distinct) >= 2 and v == distinct[1]:
                r.marks[col] = "second"


# --------------------------------------------------------------------------------------------------------
# Tables


def _metric_label(metric: str, paired: bool) -> str:
    if paired:
        return "shared-set mAP@All / open-set Acc"
    return METRIC_LABELS.get(metric, metric)


def _build_table(
    df: pd.DataFrame, dataset: str, setting: str, metric: str, order: list[str], paper: dict | None
) -> Table:
    paired = metric == "map_all" and setting == "open-set" and df["acc"].notna().any()
    pairs = _pair_order(dataset, df["pair"].unique())
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
        paper_rows, note = _paper_rows(paper, dataset, setting, metric, pairs, paired)
        rows.extend(paper_rows)
        details.append(note)
    return Table(dataset, setting, metric, columns, rows, paired, details)


def _seed_clause(df: pd.DataFrame, cells: dict[tuple[str, str], Stat]) -> str:
    seeds = sorted(int(s) for s in df.dropna(subset=["value"])["seed"].unique())
    counts = sorted({s.n for s in cells.values()})
    if len(seeds) == 1:
        return f"seed {seeds[0]}"
    n = f"n={counts[0]}" if len(counts) == 1 else f"n={counts[0]}–{counts[-1]} seeds per cell"
    return f"mean±std over seeds {', '.join(map(str, seeds))} (population std, ddof=0); {n}"


def _paper_rows(
    paper: dict[str, Any], dataset: str, setting: str, metric: str, pairs: list[str], paired: bool
) -> tuple[list[Row], str]:
    """The paper's rows for this table (paper-spec §6) and the caption note saying where they come from."""
    key = _paper_key(dataset, paper)
    spec = paper["tables"].get(key, {}).get(setting) if key else None
    if spec is None:
        return [], "the paper has no table for this dataset/setting"
    if metric == "map_all":
        part = "map" if setting == "open-set" else None
    elif metric == _OPENSET_ACC and setting == "open-set":
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
    df = _frame(records, metric)
    df = _filter(df, "dataset", dataset)
    df = _filter(df, "setting", setting)
    if methods:
        present = set(df["method"])
        unknown = [m for m in methods if m not in present]
        if len(unknown) == len(methods):
            listed = ", ".join(sorted(present))
            raise UserError(f"No records for method(s) {', '.join(methods)}; methods present: {listed}.")
        df = df[df["method"].isin(list(methods))]
    present_metrics = _metrics_present(records, df["hash"])
    if metric not in present_metrics:
        raise UserError(
            f"Metric '{metric}' is in none of the selected records; metrics present: "
            f"{', '.join(present_metrics) or 'none'}."
        )
    df = df.dropna(subset=["value"]).copy()
    df["row"] = _row_labels(df)
    order = _method_order()
    paper_data = _paper_results_cached() if paper else None
    tables = []
    groups = sorted(df.groupby(["dataset", "setting"]).groups, key=lambda g: (g[0], _setting_key(g[1])))
    for ds, st in groups:
        sub = df[(df["dataset"] == ds) & (df["setting"] == st)]
        tables.append(_build_table(sub, ds, st, metric, order, paper_data))
    return tables


def _filter(df: pd.DataFrame, column: str, value: str | None) -> pd.DataFrame:
    if value is None:
        return df
    out = df[df[column] == value]
    if out.empty:
        present = ", ".join(sorted(set(df[column]))) or "none"
        raise UserError(f"No records for {column} '{value}'; {column}s present: {present}.")
    return out


def _metrics_present(records: Sequence[dict[str, Any]], hashes: pd.Series) -> list[str]:
    keep = set(hashes)
    names = {
        k
        for r in records
        if r["config_hash"] in keep
        for k, v in r["metrics"].items()
        if v is not None and not (isinstance(v, float) and math.isnan(v))
    }
    if {_OPENSET_ACC, "false_rejection"} <= names:
        names.add("openset_binary_accuracy")  # derivable, see record_metric
    return sorted(names)


# --------------------------------------------------------------------------------------------------------
# Rendering


def _cell_text(row: Row, col: str, paired: bool) -> str:
    stat = row.cells.get(col)
    if stat is None:
        return MISSING
    text = stat.text()
    if paired:
        acc = row.acc.get(col)
        text += " / " + (acc.text() if acc is not None else MISSING)
    return text


def _legend(tables_rows: list[Row], second: str) -> str | None:
    marks = {m for r in tables_rows for m in r.marks.values()}
    if not marks:
        return None
    if "second" in marks:
        return f"best per column in bold, second best {second}"
    return "best per column in bold"


def _caption(table: Table, second: str) -> tuple[str, str]:
    """``(title, details)``: e.g. ``("office31 — open-set", "shared-set mAP@All / open-set Acc, ...")``."""
    details = list(table.details)
    legend = _legend(table.rows, second)
    if legend:
        details.append(legend)
    return f"{table.dataset} — {table.setting}", "; ".join(details)


def _markdown(table: Table) -> str:
    title, details = _caption(table, "in italics")
    headers = ["Method", *table.columns]
    body = []
    for row in table.rows:
        line = [row.shown_label]
        for col in table.columns:
            text = _cell_text(row, col, table.paired)
            mark = row.marks.get(col)
            if mark == "best":
                text = f"**{text}**"
            elif mark == "second":
                text = f"*{text}*"
            line.append(text)
        body.append(line)
    grid = tabulate(
        body,
        headers=headers,
        tablefmt="pipe",
        colalign=("left",) + ("right",) * len(table.columns),
        disable_numparse=True,
    )
    return f"**{title}** ({details})\n\n{grid}\n"


_LATEX_SPECIAL = {
    "\\": r"\textbackslash{}",
    "&": r"\&",
    "%": r"\%",
    "$": r"\$",
    "#": r"\#",
    "_": r"\_",
    "{": r"\{",
    "}": r"\}",
    "~": r"\textasciitilde{}",
    "^": r"\textasciicircum{}",
    "→": r"$\rightarrow$",
    "±": r"$\pm$",
    "—": "---",
    "–": "--",
    "≥": r"$\geq$",
    "†": r"\dag{}",
}


def latex_escape(text: str) -> str:
    """Escape LaTeX specials (``& % $ # _ { } ~ ^ \\``) and map → ± — – ≥ † to LaTeX."""
    return "".join(_LATEX_SPECIAL.get(ch, ch) for ch in text)


def _latex(table: Table) -> str:
    title, details = _caption(table, "underlined")
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{latex_escape(title)} ({latex_escape(details)})}}",
        r"\begin{tabular}{l" + "r" * len(table.columns) + "}",
        r"\toprule",
        " & ".join(["Method", *(latex_escape(c) for c in table.columns)]) + r" \\",
        r"\midrule",
    ]
    previous = "run"
    for row in table.rows:
        if row.source != previous:
            lines.append(r"\midrule")
            previous = row.source
        cells = [latex_escape(row.shown_label)]
        for col in table.columns:
            text = latex_escape(_cell_text(row, col, table.paired))
            mark = row.marks.get(col)
            if mark == "best":
                text = rf"\textbf{{{text}}}"
            elif mark == "second":
                text = rf"\underline{{{text}}}"
            cells.append(text)
        lines.append(" & ".join(cells) + r" \\")
    lines += [r"\bottomrule", r"\end{tabular}", r"\end{table}"]
    return "\n".join(lines) + "\n"


#: Columns of the ``csv`` format (long: one line per printed cell, pairs and ``Avg``).
CSV_COLUMNS = (
    "dataset",
    "setting",
    "source",
    "method",
    "pair",
    "metric",
    "mean",
    "std",
    "n_seeds",
    "openset_accuracy_mean",
    "openset_accuracy_std",
)


def _csv(tables: list[Table]) -> str:
    """Long format: one line per present cell (pairs and Avg); std empty where not printed."""
    lines = []
    for t in tables:
        for row in t.rows:
            for col in t.columns:
                stat = row.cells.get(col)
                if stat is None:
                    continue
                acc = row.acc.get(col) if t.paired else None
                lines.append(
                    {
                        "dataset": t.dataset,
                        "setting": t.setting,
                        "source": row.source,
                        "method": row.label,
                        "pair": col,
                        "metric": t.metric,
                        "mean": stat.mean,
                        "std": stat.std,
                        "n_seeds": stat.n,
                        "openset_accuracy_mean": acc.mean if acc else None,
                        "openset_accuracy_std": acc.std if acc else None,
                    }
                )
    df = pd.DataFrame(lines, columns=list(CSV_COLUMNS))
    for col in ("mean", "std", "openset_accuracy_mean", "openset_accuracy_std"):
        df[col] = pd.to_numeric(df[col]).round(4)
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()


def render_tables(
    records: Sequence[dict[str, Any]],
    dataset: str | None = None,
    setting: str | None = None,
    metric: str = "map_all",
    fmt: str = "markdown",
    paper: bool = False,
    methods: Sequence[str] | None = None,
) -> str:
    """Render the records as one table per (dataset, setting); see the module docstring for the rules.

    Args:
        records: run records (:func:`u2cdr_bench.records.load_records`).
        dataset, setting: keep only this dataset / setting (``UserError`` when absent, listing those present).
        metric: a record metric key (``map_all``, ``p@1``, ``openset_accuracy`` ...); ``UserError`` listing
            the metrics present when no selected record has it. Open-set ``map_all`` cells also show Acc.
        fmt: ``markdown`` (caption line + pipe table), ``latex`` (booktabs ``table`` environments) or ``csv``
            (long format, columns :data:`CSV_COLUMNS`).
        paper: append the paper's rows (``"UEM (paper)"`` ...) where the dataset's ``paper_key`` and the
            setting have a paper table, matched by pair label; else the caption says the paper has no table.
        methods: keep only these methods (rows stay in registry order).

    Returns:
        The text; tables are separated by a blank line.
    """
    if fmt not in FORMATS:
        raise UserError(f"Unknown table format '{fmt}'; valid choices: {', '.join(FORMATS)}.")
    tables = build_tables(records, dataset, setting, metric, paper, methods)
    if fmt == "csv":
        return _csv(tables)
    render = _markdown if fmt == "markdown" else _latex
    text = "\n".join(render(t) for t in tables)
    if fmt == "latex":
        text = "% requires \\usepackage{booktabs}\n" + text
    return text


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
        runs = [r for r in t.rows if r.source == "run"]
        matches = [r for r in runs if r.label == ref] or [r for r in runs if r.method == ref]
        if not matches:
            continue
        if len(matches) > 1:
            raise UserError(
                f"'{ref}' names {len(matches)} rows of the {t.dataset} {t.setting} table "
                f"({', '.join(r.label for r in matches)}); "
                "pass one of these labels, or --dataset / --protocol."
            )
        ref_row = matches[0]
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
            pa = [_printed(ref_row.cells[c]) for c in pairs]  # type: ignore[arg-type]
            pb = [_printed(row.cells[c]) for c in pairs]  # type: ignore[arg-type]
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
        settings = sorted(dict.fromkeys(v.setting for v in sub), key=_setting_key)
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


__all__ = [
    "CSV_COLUMNS",
    "FORMATS",
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "Row",
    "SETTING_ORDER",
    "Stat",
    "Table",
    "Versus",
    "build_tables",
    "fmt1",
    "latex_escape",
    "load_paper_results",
    "record_metric",
    "render_tables",
    "render_versus",
    "versus",
]

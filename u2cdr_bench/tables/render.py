"""Print :class:`~.model.Table` s as markdown (caption line + pipe table), LaTeX (booktabs) or long CSV.

Marks: best per column **bold**, second best *italic* in markdown / ``\\underline`` in LaTeX. A run row whose
records carry more than one code fingerprint (``record["code"]``, see :mod:`u2cdr_bench.fingerprint`; a
record without one counts as its own version) is marked ``†`` in markdown and LaTeX and the caption says so:
its cells mix numbers from different code. The csv format is unchanged by it.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

import pandas as pd
from tabulate import tabulate

from ..errors import UserError
from .build import build_tables
from .model import FORMATS, MISSING, Row, Table, latex_escape
from .report import stats_csv, stats_latex, stats_markdown
from .summary import build_stats


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
            line.append(_marked(_cell_text(row, col, table.paired), row.marks.get(col), "**{}**", "*{}*"))
        body.append(line)
    grid = tabulate(
        body,
        headers=headers,
        tablefmt="pipe",
        colalign=("left",) + ("right",) * len(table.columns),
        disable_numparse=True,
    )
    return f"**{title}** ({details})\n\n{grid}\n"


def _marked(text: str, mark: str | None, best: str, second: str) -> str:
    """``text`` in the format's best / second-best template (``"**{}**"``), or as it is."""
    return best.format(text) if mark == "best" else second.format(text) if mark == "second" else text


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
            cells.append(_marked(text, row.marks.get(col), r"\textbf{{{}}}", r"\underline{{{}}}"))
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
    stats: bool = False,
    ref: str | None = None,
) -> str:
    """Render the records as one table per (dataset, setting); the rules are in :mod:`.build`.

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
        stats: follow each table with its statistics (:mod:`.summary`, printed by :mod:`.report`); with
            ``csv`` the output is the statistics CSV alone (columns :data:`.report.STATS_COLUMNS`).
        ref: with ``stats``, the reference row of the paired Wilcoxon tests (``UserError`` when absent).

    Returns:
        The text; tables are separated by a blank line.
    """
    if fmt not in FORMATS:
        raise UserError(f"Unknown table format '{fmt}'; valid choices: {', '.join(FORMATS)}.")
    if ref is not None and not stats:
        raise ValueError("ref is the reference of the statistics: pass stats=True")
    if stats:
        all_stats = build_stats(records, dataset, setting, metric, methods, ref, paper)
        if fmt == "csv":
            return stats_csv(all_stats)
        render, block = (_markdown, stats_markdown) if fmt == "markdown" else (_latex, stats_latex)
        text = "\n".join(render(s.table) + "\n" + block(s) for s in all_stats)
        if fmt == "latex":
            text = "% requires \\usepackage{booktabs}\n" + text
        return text
    tables = build_tables(records, dataset, setting, metric, paper, methods)
    if fmt == "csv":
        return _csv(tables)
    render = _markdown if fmt == "markdown" else _latex
    text = "\n".join(render(t) for t in tables)
    if fmt == "latex":
        text = "% requires \\usepackage{booktabs}\n" + text
    return text

"""Result tables in the paper's format, built from run records only (never from logs).

One table per (dataset, setting). Rows are methods in registry order; columns are the directed pairs
``Q→G`` (query→gallery domain abbreviations) in the dataset's order, then ``Avg``. The modules, one per
concern:

* :mod:`.model` — the data model (:class:`Stat`, :class:`Row`, :class:`Table`), labels, :func:`fmt1`;
* :mod:`.frame` — records to the long frame (one line per record), row labels, row and column order;
* :mod:`.build` — the tables' cells (mean ± population std over seeds, ``Avg``) and best / second marks;
* :mod:`.paper` — the paper's own rows (``u2cdr_bench/paper/results.yaml``);
* :mod:`.render` — markdown, LaTeX and CSV (:func:`render_tables`);
* :mod:`.versus` — head-to-head of one row against the others (:func:`render_versus`);
* :mod:`.stats` — the statistical tests (bootstrap interval, average ranks, Friedman, Nemenyi, Wilcoxon,
  Holm), pure functions of arrays;
* :mod:`.summary` — those statistics applied to one table (:func:`build_stats`), printed by :mod:`.report`.

The statistics and their assumptions are documented in ``docs/tables.md``.

Example::

    from u2cdr_bench.records import load_records
    print(render_tables(load_records("runs"), dataset="office31", fmt="markdown", paper=True))
"""

from __future__ import annotations

from .build import build_tables
from .frame import dataset_spec as _dataset_spec
from .frame import method_order as _method_order
from .frame import record_metric
from .model import (
    AVG,
    FORMATS,
    LOWER_IS_BETTER,
    METRIC_LABELS,
    MISSING,
    MIXED_MARK,
    SETTING_ORDER,
    Row,
    Stat,
    Table,
    fmt1,
    latex_escape,
)
from .paper import load_paper_results
from .render import CSV_COLUMNS, render_tables
from .report import STATS_COLUMNS
from .summary import TableStats, build_stats, table_stats
from .versus import Versus, render_versus, versus

__all__ = [
    "AVG",
    "CSV_COLUMNS",
    "FORMATS",
    "LOWER_IS_BETTER",
    "METRIC_LABELS",
    "MISSING",
    "MIXED_MARK",
    "SETTING_ORDER",
    "STATS_COLUMNS",
    "Row",
    "Stat",
    "Table",
    "TableStats",
    "Versus",
    "build_stats",
    "build_tables",
    "fmt1",
    "latex_escape",
    "load_paper_results",
    "record_metric",
    "render_tables",
    "render_versus",
    "table_stats",
    "versus",
    "_dataset_spec",
    "_method_order",
]

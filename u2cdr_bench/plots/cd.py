"""Critical-difference diagrams (Demšar 2006, §3.2.2 and Fig. 1): one per (dataset, setting) table.

A diagram places each ranked row of a table at its average rank over the table's pairs (1 = best, on the
left) and joins by a thick bar the rows the Nemenyi post-hoc test does not separate at α = 0.05; a bar of
the critical difference :math:`CD = q_\\alpha\\sqrt{k(k+1)/(6N)}` (k rows, N pairs) is drawn above the
axis. The numbers are those of ``u2cdr-bench table --stats`` (:func:`u2cdr_bench.tables.build_stats`):
the ranks of :func:`u2cdr_bench.tables.stats.average_ranks` and the p-values of
:func:`u2cdr_bench.tables.stats.nemenyi`; the drawing is ``scikit_posthocs.critical_difference_diagram``.

Assumption: as in the tables, a row lacking a pair is not ranked and not drawn, and a table without a
Friedman test (fewer than 3 ranked rows or too few pairs) gets no diagram.
"""

from __future__ import annotations

import re
from pathlib import Path

from matplotlib.figure import Figure

from ..tables import METRIC_LABELS, TableStats
from .common import new_figure

#: Width of a diagram (inches); the height grows with the number of rows (labels stack on both sides).
WIDTH = 8.0


def cd_figure(ts: TableStats) -> Figure:
    """The critical-difference diagram of one table's statistics; ``ValueError`` without a Friedman test."""
    import scikit_posthocs as sp

    if ts.nemenyi_p is None or ts.cd is None or ts.friedman is None:
        raise ValueError(f"{ts.table.dataset} {ts.table.setting}: no post-hoc test to draw")
    t = ts.table
    ranks = {label: ts.ranks[label] for label in ts.ranked}
    fig = new_figure(WIDTH, 1.8 + 0.25 * ((len(ranks) + 1) // 2))
    ax = fig.add_subplot()
    sp.critical_difference_diagram(
        ranks,
        ts.nemenyi_p,
        cd=ts.cd,
        ax=ax,
        label_fmt_left="{label} ({rank:.2f})",
        label_fmt_right="({rank:.2f}) {label}",
    )
    metric = "shared-set mAP@All" if t.paired else METRIC_LABELS.get(t.metric, t.metric)
    f = ts.friedman
    ax.set_title(
        f"{t.dataset} — {t.setting}: average rank over {f.n} pairs ({metric}); Friedman p = {f.p:.3g}, "
        f"Nemenyi CD = {ts.cd:.2f}",
        fontsize=9,
    )
    return fig


def cd_filename(ts: TableStats) -> str:
    """``<dataset>-<setting>.png``, characters other than letters, digits, ``.`` and ``-`` as ``_``."""
    stem = f"{ts.table.dataset}-{ts.table.setting}"
    return re.sub(r"[^A-Za-z0-9.-]", "_", stem) + ".png"


def write_cd_diagrams(all_stats: list[TableStats], folder: Path) -> list[Path]:
    """One PNG per table that has a post-hoc test, written to ``folder`` (:func:`cd_filename`); the paths.

    The PNGs carry no software-version metadata, so the bytes depend only on the numbers and the
    matplotlib/freetype build.
    """
    written = []
    for ts in all_stats:
        if ts.nemenyi_p is None or ts.cd is None:
            continue
        fig = cd_figure(ts)
        path = Path(folder) / cd_filename(ts)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=fig.dpi, format="png", metadata={"Software": None})
        written.append(path)
    return written


__all__ = ["cd_figure", "cd_filename", "write_cd_diagrams"]

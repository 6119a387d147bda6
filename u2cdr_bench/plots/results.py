"""``plot results``: per setting, each method's average over pairs with its spread over seeds.

The numbers are those of ``u2cdr-bench table`` (:func:`u2cdr_bench.tables.build_tables`, never re-derived):
a bar is a row's ``Avg`` -- the mean over the table's pairs of the per-pair means over seeds -- and its error
bar the population std over seeds of the per-seed averages (drawn when at least two seeds have every pair;
one seed gives a bar without error bar). Rows lacking a pair have no ``Avg`` and are left out (named in the
panel's footnote).

UEM's bar is orange with a dashed line at its value across the panel. Where the dataset has tables in the
paper (Office-31, Office-Home, DomainNet; ``u2cdr_bench/paper/results.yaml``) the paper's Avg of each method
is a black diamond on that method's row (the paper's Avg over the shown pairs, recomputed by the table code
when only some pairs were run); paper methods without runs get a row of their own, ``NAME (paper)``.
Open-set panels show the shared-set mAP@All (``--metric map_all``), as the paper's tables.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from ..errors import UserError
from ..tables import AVG, METRIC_LABELS, build_tables
from .common import new_figure, record_seeds

UEM_COLOUR = "#e66101"
RUN_COLOUR = "#5e81ac"
PAPER_MARKER = "D"


def _is_uem(method: str) -> bool:
    return method.lower() == "uem"


def plot_results(
    records: Sequence[dict[str, Any]],
    dataset: str | None = None,
    metric: str = "map_all",
    methods: Sequence[str] | None = None,
    paper: bool = True,
    source: str = "",
) -> tuple[Figure, dict]:
    """The figure (one panel per setting) and the plotted values.

    Returns ``(fig, {"dataset", "settings", "bars": {setting: {row: (mean, std)}}, "paper": {setting: {method:
    mean}}})``.
    """
    present = sorted({r["config"]["dataset"] for r in records})
    if dataset is None:
        if len(present) > 1:
            raise UserError(
                f"The records hold several datasets ({', '.join(present)}); pick one with --dataset."
            )
        dataset = present[0] if present else None
    tables = build_tables(records, dataset=dataset, metric=metric, paper=paper, methods=methods)
    if not tables:
        raise UserError(f"No table can be built for dataset {dataset}.")
    used = [r for r in records if r["config"]["dataset"] == dataset]
    seeds = record_seeds(used)
    bars: dict[str, dict[str, tuple[float, float | None]]] = {}
    paper_vals: dict[str, dict[str, float]] = {}
    panel_rows: list[list[tuple[str, float | None, float | None, float | None, bool]]] = []
    notes: list[str] = []
    for t in tables:
        run_rows = [r for r in t.rows if r.source == "run"]
        paper_rows = {r.method.lower(): r for r in t.rows if r.source == "paper"}
        rows, missing = [], []
        for r in run_rows:
            stat = r.cells.get(AVG)
            if stat is None:
                missing.append(r.label)
                continue
            p = paper_rows.pop(r.method.lower(), None)
            p_stat = p.cells.get(AVG) if p is not None else None
            rows.append((r.label, stat.mean, stat.std, p_stat.mean if p_stat else None, _is_uem(r.method)))
        for name, p in paper_rows.items():
            p_stat = p.cells.get(AVG)
            if p_stat is not None:
                rows.append((f"{p.method} (paper)", None, None, p_stat.mean, _is_uem(name)))
        bars[t.setting] = {label: (m, s) for label, m, s, _, _ in rows if m is not None}
        paper_vals[t.setting] = {
            label.removesuffix(" (paper)"): pm for label, _, _, pm, _ in rows if pm is not None
        }
        panel_rows.append(rows)
        notes.append(f"no Avg (a pair missing): {', '.join(missing)}" if missing else "")

    n_rows = max(len(r) for r in panel_rows)
    fig = new_figure(4.4 * len(tables) + 1.2, 0.32 * n_rows + 1.9)
    label = METRIC_LABELS.get(metric, metric)
    if len(seeds) == 1:
        seed_text = f"one seed ({seeds[0]}): no error bars"
    else:
        seed_text = f"error bars: population std over seeds {', '.join(map(str, seeds))}"
    any_paper = any(p is not None for rows in panel_rows for *_, p, _ in rows)
    second = [source] if source else []
    if paper and not any_paper:
        second.append(f"the paper reports no {dataset} numbers")
    lines = [f"{dataset}: {label}, average over pairs ({seed_text})"] + (
        [" · ".join(second)] if second else []
    )
    fig.suptitle("\n".join(lines), fontsize=11)
    ends = [m + (s or 0.0) for rows in panel_rows for _, m, s, _, _ in rows if m is not None]
    ends += [p for rows in panel_rows for *_, p, _ in rows if p is not None]
    top = max(ends or [100.0])
    xmax = min(100.0, top * 1.12 + 2.0) if top <= 100 else top * 1.12
    for i, (t, rows, note) in enumerate(zip(tables, panel_rows, notes, strict=True)):
        ax = fig.add_subplot(1, len(tables), i + 1)
        ys = list(range(len(rows)))[::-1]
        for y, (_, mean, std, pm, uem) in zip(ys, rows, strict=True):
            if mean is not None:
                colour = UEM_COLOUR if uem else RUN_COLOUR
                ax.barh(
                    y,
                    mean,
                    height=0.7,
                    color=colour,
                    xerr=std if std else None,
                    error_kw={"ecolor": "black", "capsize": 3, "elinewidth": 1},
                )
                text = f"{mean:.1f}" + (f"±{std:.1f}" if std else "")
                inside = mean > 0.16 * xmax  # value at the bar's start, clear of error bar and paper marker
                ax.text(
                    xmax * 0.01 if inside else mean + (std or 0.0) + xmax * 0.01,
                    y,
                    text,
                    va="center",
                    fontsize=7,
                    color="white" if inside else "black",
                )
                if uem:
                    ax.axvline(mean, color=UEM_COLOUR, linestyle="--", linewidth=1, zorder=0)
            if pm is not None:
                ax.plot([pm], [y], marker=PAPER_MARKER, color="black", markersize=5, linestyle="")
        ax.set_yticks(ys)
        ax.set_yticklabels([r[0] for r in rows], fontsize=8)
        ax.set_xlim(0, xmax)
        ax.set_ylim(-0.7, len(rows) - 0.3)
        pairs = len(t.columns) - 1
        ax.set_title(f"{t.setting} ({pairs} pair{'s' if pairs != 1 else ''})", fontsize=10)
        xl = "shared-set mAP@All" if t.setting == "open-set" and metric == "map_all" else label
        ax.set_xlabel(xl + (f"\n{note}" if note else ""), fontsize=8)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="#dddddd", linewidth=0.6)
        ax.set_axisbelow(True)
    handles = [Patch(color=RUN_COLOUR, label="run average"), Patch(color=UEM_COLOUR, label="UEM (run)")]
    if any_paper:
        handles.append(
            Line2D([], [], marker=PAPER_MARKER, color="black", linestyle="", label="paper's average")
        )
    fig.legend(handles=handles, loc="outside lower center", ncol=len(handles), fontsize=8, frameon=False)
    return fig, {
        "dataset": dataset,
        "settings": [t.setting for t in tables],
        "bars": bars,
        "paper": paper_vals,
    }


__all__ = ["plot_results"]

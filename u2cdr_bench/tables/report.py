"""Print :class:`~.summary.TableStats` as markdown or LaTeX (a table and its notes after each result table)
or as long CSV (one line per run row, the table's tests repeated on each line, columns :data:`STATS_COLUMNS`).

Numbers: averages, std and interval ends with one decimal (:func:`~.model.fmt1`), ranks with two,
p-values with three (``<0.001`` below), the rank-biserial r with two and its sign.
"""

from __future__ import annotations

import io
import math

import pandas as pd
from tabulate import tabulate

from . import stats as st
from .model import METRIC_LABELS, MISSING, fmt1, latex_escape
from .summary import RowStats, TableStats


def fmt_p(p: float) -> str:
    """A p-value as printed: three decimals, ``<0.001`` below 0.001, ``–`` when the test could not run."""
    if p is None or math.isnan(p):
        return MISSING
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def _p_is(p: float) -> str:
    """``"p = 0.012"`` or ``"p < 0.001"`` in a sentence."""
    text = fmt_p(p)
    return f"p {text[0]} {text[1:]}" if text.startswith("<") else f"p = {text}"


def _signed(x: float, digits: int = 1) -> str:
    if math.isnan(x):
        return MISSING
    text = fmt1(x) if digits == 1 else f"{x:.{digits}f}"
    return text if text.startswith("-") else f"+{text}"


def _headers(ts: TableStats) -> list[str]:
    head = ["Method", "Avg", "std (seeds)", "95 % CI", "avg rank"]
    if ts.ref is not None:
        head += [f"Δ ({ts.ref} − row)", f"{ts.ref} wins", "p (Wilcoxon)", "p (Holm)", "r (rank-biserial)"]
    return head


def _cells(ts: TableStats, r: RowStats) -> list[str]:
    line = [r.label]
    if r.avg is None:
        line += [MISSING, MISSING, MISSING]
    else:
        line += [fmt1(r.avg.mean), fmt1(r.avg.std) if r.avg.std is not None else MISSING]
        line.append(f"[{fmt1(r.ci[0])}, {fmt1(r.ci[1])}]" if r.ci else MISSING)
    line.append(f"{r.rank:.2f}" if r.rank is not None else MISSING)
    if ts.ref is not None:
        if r.is_ref:
            line += ["reference", "", "", "", ""]
        elif r.paired is None:
            line += [MISSING] * 5
        else:
            p = r.paired
            line += [
                _signed(p.diff),
                f"{p.wins}/{p.n}",
                fmt_p(p.test.p),
                fmt_p(p.p_holm),
                _signed(p.test.r, 2),
            ]
    return line


def _metric_text(ts: TableStats) -> str:
    t = ts.table
    if t.paired:
        return "shared-set mAP@All (open-set Acc not tested)"
    return METRIC_LABELS.get(t.metric, t.metric)


def _seed_text(ts: TableStats) -> str:
    n = len(ts.table.pairs)
    if len(ts.seeds) == 1:
        return (
            f"one seed ({ts.seeds[0]}): no std over seeds (–); the 95 % interval resamples the {n} pairs "
            f"only and the tests run over the {n} pairs only"
        )
    seeds = ", ".join(map(str, ts.seeds))
    return (
        f"seeds {seeds}: std is the population std over seeds of the per-seed averages; the 95 % interval "
        f"is a bootstrap over pairs and seeds ({st.N_BOOTSTRAP:,} resamples, seed {st.BOOTSTRAP_SEED}); "
        "the Wilcoxon test pairs single runs, one per (pair, seed)"
    )


def notes(ts: TableStats) -> list[str]:
    """The sentences under a statistics table: the Friedman / Nemenyi result, how to read the paired test."""
    out = []
    n = len(ts.table.pairs)
    if ts.ranked:
        what = "highest" if not ts.table.lower_is_better else "lowest"
        out.append(
            f"Average rank over the {n} pairs (1 = {what} cell mean over seeds; ties share the average rank) "
            f"of the {len(ts.ranked)} rows with every pair."
        )
    if ts.friedman is not None and ts.cd is not None and ts.nemenyi_p is not None:
        f = ts.friedman
        text = (
            f"Friedman test over these rows (blocks: the {n} pairs): χ²_F = {f.chi2:.2f} (tie-corrected, "
            f"{f.k - 1} d.f.), {_p_is(f.p)}; Iman–Davenport F_F = {f.f:.2f}, {_p_is(f.f_p)}. "
            f"Nemenyi post-hoc at α = {st.ALPHA}: critical difference {ts.cd:.2f} ranks"
        )
        differ = _nemenyi_pairs(ts)
        if ts.ref is not None and ts.ref in ts.ranked:
            mine = [b if a == ts.ref else a for a, b in differ if ts.ref in (a, b)]
            text += f"; {ts.ref} differs from {', '.join(mine) if mine else 'none of them'}"
        text += f" ({len(differ)} of {len(ts.ranked) * (len(ts.ranked) - 1) // 2} row pairs differ)."
        out.append(text)
    if ts.ref is not None:
        counts = sorted({r.paired.test.n_nonzero for r in ts.rows if r.paired is not None})
        text = (
            f"Wilcoxon signed-rank test (two-sided, zero differences dropped) of {ts.ref} against each row "
            f"over the runs both have; Δ: mean of {ts.ref} minus the row; p (Holm): adjusted over this "
            f"table's comparisons; r: matched-pairs rank-biserial correlation (T⁺ − T⁻)/(T⁺ + T⁻) of "
            f"{ts.ref} minus the row, +1 when {ts.ref} is higher in every run."
        )
        if counts and counts[-1] <= 25:
            text += (
                f" With n = {counts[-1]} non-zero differences the smallest two-sided p is "
                f"{fmt_p(2.0 / 2 ** counts[-1])}."
            )
        out.append(text)
    out += [f"{n[0].upper()}{n[1:]}." for n in ts.notes]
    return out


def _nemenyi_pairs(ts: TableStats) -> list[tuple[str, str]]:
    """Row pairs the Nemenyi test separates at :data:`.stats.ALPHA`, in rank order."""
    assert ts.nemenyi_p is not None
    labels = sorted(ts.ranked, key=lambda label: ts.ranks[label])
    return [
        (a, b)
        for i, a in enumerate(labels)
        for b in labels[i + 1 :]
        if float(ts.nemenyi_p.loc[a, b]) < st.ALPHA
    ]


def stats_markdown(ts: TableStats) -> str:
    t = ts.table
    title = f"**{t.dataset} — {t.setting}: statistics** ({_metric_text(ts)}; {_seed_text(ts)})"
    body = [_cells(ts, r) for r in ts.rows]
    head = _headers(ts)
    grid = tabulate(
        body,
        headers=head,
        tablefmt="pipe",
        colalign=("left",) + ("right",) * (len(head) - 1),
        disable_numparse=True,
    )
    return f"{title}\n\n{grid}\n\n" + "\n".join(notes(ts)) + "\n"


def stats_latex(ts: TableStats) -> str:
    t = ts.table
    head = _headers(ts)
    caption = f"{t.dataset} — {t.setting}: statistics ({_metric_text(ts)}; {_seed_text(ts)})"
    lines = [
        r"\begin{table}[ht]",
        r"\centering",
        rf"\caption{{{latex_escape(caption)}}}",
        r"\begin{tabular}{l" + "r" * (len(head) - 1) + "}",
        r"\toprule",
        " & ".join(latex_escape(h) for h in head) + r" \\",
        r"\midrule",
    ]
    lines += [" & ".join(latex_escape(c) for c in _cells(ts, r)) + r" \\" for r in ts.rows]
    lines += [r"\bottomrule", r"\end{tabular}"]
    lines += [r"\par\smallskip{\footnotesize " + latex_escape(" ".join(notes(ts))) + "}", r"\end{table}"]
    return "\n".join(lines) + "\n"


#: Columns of the statistics CSV (one line per run row; the Friedman / Nemenyi fields repeat per table).
STATS_COLUMNS = (
    "dataset", "setting", "metric", "method", "n_pairs", "seeds", "avg", "std", "ci_low", "ci_high",
    "ci_seeds", "rank", "ref", "n_paired", "diff", "wins", "losses", "wilcoxon_statistic", "p", "p_holm",
    "rank_biserial", "friedman_chi2", "friedman_p", "iman_davenport_f", "iman_davenport_p", "nemenyi_cd",
)  # fmt: skip


def stats_csv(all_stats: list[TableStats]) -> str:
    lines = []
    for ts in all_stats:
        t, f = ts.table, ts.friedman
        for r in ts.rows:
            p = r.paired
            lines.append(
                {
                    "dataset": t.dataset,
                    "setting": t.setting,
                    "metric": t.metric,
                    "method": r.label,
                    "n_pairs": len(t.pairs),
                    "seeds": " ".join(map(str, ts.seeds)),
                    "avg": r.avg.mean if r.avg else None,
                    "std": r.avg.std if r.avg else None,
                    "ci_low": r.ci[0] if r.ci else None,
                    "ci_high": r.ci[1] if r.ci else None,
                    "ci_seeds": r.ci_seeds if r.ci else None,
                    "rank": r.rank,
                    "ref": ts.ref,
                    "n_paired": p.n if p else None,
                    "diff": p.diff if p else None,
                    "wins": p.wins if p else None,
                    "losses": p.losses if p else None,
                    "wilcoxon_statistic": p.test.statistic if p else None,
                    "p": p.test.p if p else None,
                    "p_holm": p.p_holm if p else None,
                    "rank_biserial": p.test.r if p else None,
                    "friedman_chi2": f.chi2 if f else None,
                    "friedman_p": f.p if f else None,
                    "iman_davenport_f": f.f if f else None,
                    "iman_davenport_p": f.f_p if f else None,
                    "nemenyi_cd": ts.cd,
                }
            )
    df = pd.DataFrame(lines, columns=list(STATS_COLUMNS))
    for col in ("avg", "std", "ci_low", "ci_high", "rank", "diff", "rank_biserial", "friedman_chi2"):
        df[col] = pd.to_numeric(df[col]).round(4)
    for col in ("iman_davenport_f", "nemenyi_cd"):
        df[col] = pd.to_numeric(df[col]).round(4)
    for col in ("ci_seeds", "n_paired", "wins", "losses"):
        df[col] = pd.array(df[col], dtype="Int64")
    for col in ("p", "p_holm", "friedman_p", "iman_davenport_p"):
        df[col] = pd.to_numeric(df[col]).map(lambda x: f"{x:.6g}" if pd.notna(x) else "")
    buf = io.StringIO()
    df.to_csv(buf, index=False, lineterminator="\n")
    return buf.getvalue()

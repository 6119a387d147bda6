"""The local run loop of ``u2cdr-bench run``: reuse, lock, run, report (issue 12, items 5, 6 and 8).

For each config in order: a record made by the same code is reused ("done already"); a stale one (other
code fingerprint) is run again unless ``--reuse-stale``; otherwise the config's lock is taken without waiting.
A config whose lock another process holds is left to the end, then waited for: when the other process has
finished it its record is reused ("done by another process"), else (it died) this process runs it. Progress,
results and notes go to one :class:`~u2cdr_bench.cli_display.RunDisplay`.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table

from .cli_display import RunDisplay
from .runner import RunConfig, Runner

__all__ = ["run_all", "summary"]


def _label(i: int, n: int, cfg: RunConfig) -> str:
    return f"[{i}/{n}] {cfg.method} {cfg.dataset} {cfg.setting} {cfg.query}→{cfg.gallery} seed {cfg.seed}"


def _num(value: Any) -> str:
    """One decimal, or ``n/a`` for a metric the run could not score (``None``, e.g. no shared class)."""
    return "n/a" if value is None else f"{value:.1f}"


def _result_line(label: str, rec: dict) -> str:
    m = rec["metrics"]
    extra = f", open-set acc {_num(m['openset_accuracy'])}" if m.get("openset_accuracy") is not None else ""
    return f"{label}: mAP@All {_num(m.get('map_all'))}{extra} ({rec['timings']['total_s']:.1f} s)"


def _run_one(runner: Runner, cfg: RunConfig, label: str, display: RunDisplay, wait: bool) -> dict | None:
    """Reuse, skip (``None``: another process holds the config's lock and ``wait`` is off) or run."""
    state, reason = runner.status(cfg)
    if state == "done" and wait:  # it was deferred: the other process finished it
        display.line(f"{label}: done by another process")
        return runner.existing(cfg)
    if state == "done":
        kept = f" ({reason}; kept by --reuse-stale)" if reason else ""
        display.line(f"{label}: done already{kept} (use --force to re-run)")
        return runner.existing(cfg)
    with runner.lock(cfg, wait=wait) as held:
        if not held:
            return None
        state, reason = runner.status(cfg)  # another process may have finished it meanwhile
        if state == "done":
            display.line(f"{label}: done by another process")
            return runner.existing(cfg)
        if state == "stale":
            display.line(f"{label}: {reason}; running it again (--reuse-stale keeps such records)")
        display.start_run(label)
        try:
            rec = runner.run(cfg, progress=display.epoch)
        finally:
            display.end_run()
    display.line(_result_line(label, rec))
    return rec


def run_all(runner: Runner, configs: list[RunConfig], console: Console, quiet: bool) -> list[dict]:
    """Every config in order; a config another process is running is left to the end, then waited for."""
    records: list[dict | None] = [None] * len(configs)
    deferred: list[int] = []

    def warn_views(rec: dict | None) -> None:
        """A reused record's views warning (issue 18); the runner shows only the first of the run."""
        runner.views_warning_once((rec or {}).get("method_info", {}).get("views_warning"))

    with RunDisplay(console, len(configs), quiet=quiet) as display:
        runner.on_views_warning = lambda text: display.line(f"warning: {text}")
        for i, cfg in enumerate(configs):
            label = _label(i + 1, len(configs), cfg)
            records[i] = _run_one(runner, cfg, label, display, wait=False)
            warn_views(records[i])
            if records[i] is None:
                deferred.append(i)
                display.line(f"{label}: another u2cdr-bench process is running it; waiting for it at the end")
            else:
                display.advance_runs()
        for i in deferred:
            label = _label(i + 1, len(configs), configs[i])
            records[i] = _run_one(runner, configs[i], label, display, wait=True)
            warn_views(records[i])
            display.advance_runs()
    return [r for r in records if r is not None]


def _fmt(v: Any) -> str:
    return "–" if v is None else f"{v:.1f}"


def summary(records: list[dict], console: Console) -> None:
    if not records:
        return
    keys = ["map_all", "p@1", "p@5", "p@15", "map_at_r", "openset_accuracy", "false_rejection"]
    keys = [k for k in keys if any(r["metrics"].get(k) is not None for r in records)]
    table = Table(title="u2cdr-bench results", title_justify="left")
    for col in ["method", "setting", "pair", "seed", *keys, "time (s)"]:
        table.add_column(col, justify="right" if col not in ("method", "setting", "pair") else "left")
    for r in records:
        c = r["config"]
        table.add_row(
            c["method"],
            c["setting"],
            r["task"]["pair"],
            str(c["seed"]),
            *[_fmt(r["metrics"].get(k)) for k in keys],
            f"{r['timings']['total_s']:.1f}",
        )
    console.print(table)

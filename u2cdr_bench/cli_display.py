"""The progress display of ``u2cdr-bench run``: one display for the runs, the training and the extraction.

On a terminal it is one live rich display: a bar over the runs, the current run's stage (``idse 3/10``,
losses) and, while features are extracted, a bar per domain with images/s and the ETA (the display is the
active :mod:`u2cdr_bench.progress` reporter). When stderr is not a terminal (a log file, a pipe) the same
events become plain lines: each run's start and result, a training line at the first and last epoch of a
stage and whenever :data:`~u2cdr_bench.progress.LINE_EVERY_S` seconds have passed since the last line (so a
log never stays silent longer than that or one epoch), and the extraction lines of
:class:`~u2cdr_bench.progress.LineReporter`. ``--quiet`` keeps only notes.
"""

from __future__ import annotations

import contextlib
import time
from types import TracebackType
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
)
from rich.text import Text

from . import progress as _progress

__all__ = ["RunDisplay"]


class _RateColumn(ProgressColumn):
    """``12.3 img/s, ETA 4:05`` for tasks with a unit (extraction), empty otherwise."""

    def render(self, task: Any) -> Text:
        unit = task.fields.get("unit")
        if not unit:
            return Text("")
        speed = task.finished_speed or task.speed
        if not speed:
            return Text(f"? {unit}/s")
        return Text(f"{speed:.1f} {unit}/s, ETA {_progress.fmt_eta(task.time_remaining)}")


class _RichTask:
    def __init__(self, prog: Progress, task_id: TaskID) -> None:
        self.prog, self.task_id = prog, task_id

    def advance(self, n: int = 1) -> None:
        self.prog.advance(self.task_id, n)

    def close(self) -> None:
        with contextlib.suppress(KeyError):
            self.prog.remove_task(self.task_id)


class RunDisplay:
    """Context manager: the display of one ``run`` command (a :class:`~u2cdr_bench.progress.Reporter`)."""

    def __init__(self, console: Console, n_runs: int, quiet: bool = False) -> None:
        self.console = console
        self.quiet = quiet
        self.live = console.is_terminal and not quiet
        self._lines = _progress.LineReporter(out=console.file, quiet=quiet)
        self._prog: Progress | None = None
        self._runs: TaskID | None = None
        self._stage: TaskID | None = None
        self._label = ""
        self._last_line = 0.0
        self._n_runs = n_runs
        self._stack = contextlib.ExitStack()

    # ----- lifetime -----------------------------------------------------------------------------
    def __enter__(self) -> RunDisplay:
        if self.live:
            self._prog = Progress(
                TextColumn("{task.description}", markup=False),
                BarColumn(),
                MofNCompleteColumn(),
                _RateColumn(),
                TimeElapsedColumn(),
                console=self.console,
                transient=True,
            )
            self._stack.enter_context(self._prog)
            self._runs = self._prog.add_task("runs", total=self._n_runs)
        self._stack.enter_context(_progress.use(self))
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._stack.close()

    # ----- permanent lines -----------------------------------------------------------------------
    def line(self, text: str) -> None:
        """A line that stays (a run's result, "done already", notes)."""
        if self.quiet:
            return
        self._print(text)

    def _print(self, text: str) -> None:
        if self._prog is not None:
            self._prog.console.print(text, markup=False, highlight=False)
        else:
            print(text, file=self.console.file, flush=True)

    def note(self, message: str) -> None:
        self._print(f"note: {message}")

    # ----- runs and training -------------------------------------------------------------------
    def start_run(self, label: str) -> None:
        self._label = label
        self._last_line = time.monotonic()
        if self._prog is not None:
            self._stage = self._prog.add_task(label, total=None)
        elif not self.quiet:
            self._print(f"{label}: started")

    def epoch(self, stage: str, step: int, total: int, info: dict[str, float]) -> None:
        """The training callback (``FitContext.progress``): after each epoch of a stage."""
        loss = " ".join(f"{k}={v:.3f}" for k, v in list(info.items())[:4])
        text = f"{self._label} · {stage} {step}/{total} {loss}".rstrip()
        if self._prog is not None and self._stage is not None:
            self._prog.update(self._stage, description=text, total=total, completed=step)
            return
        if self.quiet:
            return
        now = time.monotonic()
        if step in (1, total) or now - self._last_line >= _progress.LINE_EVERY_S:
            self._print(text)
            self._last_line = now

    def end_run(self) -> None:
        if self._prog is not None and self._stage is not None:
            self._prog.remove_task(self._stage)
        self._stage = None

    def advance_runs(self) -> None:
        if self._prog is not None and self._runs is not None:
            self._prog.advance(self._runs)

    # ----- reporter (extraction) ----------------------------------------------------------------
    def task(self, description: str, total: int | None, unit: str = "it") -> _progress.Task:
        if self._prog is not None:
            return _RichTask(self._prog, self._prog.add_task(description, total=total, unit=unit))
        return self._lines.task(description, total, unit)

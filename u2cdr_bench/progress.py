"""Progress of long work (feature extraction, image loading) and notes, to whichever display is active.

Library code asks :func:`reporter` for the active :class:`Reporter` and opens a task::

    task = reporter().task("pacs/photo effnet-lite0 [clean]", total=1670, unit="img")
    task.advance(64)         # after each batch
    task.close()
    reporter().note("the digits cache was corrupt; rebuilt it")

The active reporter is a context variable, set with :func:`use`: the ``run`` command binds it to its rich
display (one live display for runs, training and extraction). Without one, a terminal gets a tqdm bar and
anything else (a log file, a pipe) a :class:`LineReporter` line at the start, at least every
:data:`LINE_EVERY_S` seconds and at the end: ``done/total unit, rate unit/s, ETA``. Notes go to stderr as
``note: ...`` lines in every case, ``--quiet`` included.
"""

from __future__ import annotations

import contextlib
import contextvars
import sys
import time
from collections.abc import Iterator
from typing import Protocol, TextIO

__all__ = ["LINE_EVERY_S", "LineReporter", "Reporter", "Task", "TqdmReporter", "fmt_eta", "reporter", "use"]

LINE_EVERY_S = 10.0
"""Longest silence of a non-terminal progress display, seconds."""


class Task(Protocol):
    def advance(self, n: int = 1) -> None: ...

    def close(self) -> None: ...


class Reporter(Protocol):
    """Where long work reports: tasks with a count, and one-line notes."""

    def task(self, description: str, total: int | None, unit: str = "it") -> Task: ...

    def note(self, message: str) -> None: ...


def fmt_eta(seconds: float | None) -> str:
    """``1:02:03``, ``4:05`` or ``?`` for an unknown time."""
    if seconds is None or seconds != seconds or seconds == float("inf"):
        return "?"
    s = int(round(seconds))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class _NullTask:
    def advance(self, n: int = 1) -> None:
        return None

    def close(self) -> None:
        return None


class _LineTask:
    def __init__(self, out: TextIO, description: str, total: int | None, unit: str, every: float) -> None:
        self.out, self.description, self.total, self.unit, self.every = out, description, total, unit, every
        self.done = 0
        self.t0 = self.last = time.monotonic()
        self._line()

    def _line(self) -> None:
        elapsed = time.monotonic() - self.t0
        rate = self.done / elapsed if elapsed > 0 and self.done else 0.0
        total = "?" if self.total is None else str(self.total)
        eta = (self.total - self.done) / rate if rate and self.total is not None else None
        text = f"{self.description}: {self.done}/{total} {self.unit}"
        if self.done:
            text += f", {rate:.1f} {self.unit}/s, ETA {fmt_eta(eta)}"
        print(text, file=self.out, flush=True)
        self.last = time.monotonic()

    def advance(self, n: int = 1) -> None:
        self.done += n
        if time.monotonic() - self.last >= self.every:
            self._line()

    def close(self) -> None:
        if self.done:
            self._line()


class LineReporter:
    """Plain lines for a log or a pipe: one per task start, at least every ``every`` s, one at the end."""

    def __init__(self, out: TextIO | None = None, every: float = LINE_EVERY_S, quiet: bool = False) -> None:
        self.out = out
        self.every = every
        self.quiet = quiet

    def task(self, description: str, total: int | None, unit: str = "it") -> Task:
        if self.quiet:
            return _NullTask()
        return _LineTask(self.out or sys.stderr, description, total, unit, self.every)

    def note(self, message: str) -> None:
        print(f"note: {message}", file=self.out or sys.stderr, flush=True)


class TqdmReporter:
    """A tqdm bar per task (a terminal outside ``run``'s display)."""

    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet

    def task(self, description: str, total: int | None, unit: str = "it") -> Task:
        if self.quiet:
            return _NullTask()
        from tqdm import tqdm

        bar = tqdm(total=total, desc=description, unit=unit)

        class _T:
            def advance(self, n: int = 1) -> None:
                bar.update(n)

            def close(self) -> None:
                bar.close()

        return _T()

    def note(self, message: str) -> None:
        print(f"note: {message}", file=sys.stderr, flush=True)


_ACTIVE: contextvars.ContextVar[Reporter | None] = contextvars.ContextVar("u2cdr_reporter", default=None)


class _QuietReporter:
    """No tasks; notes still go to ``inner`` (the active reporter) or stderr."""

    def __init__(self, inner: Reporter | None) -> None:
        self.inner = inner

    def task(self, description: str, total: int | None, unit: str = "it") -> Task:
        return _NullTask()

    def note(self, message: str) -> None:
        if self.inner is not None:
            self.inner.note(message)
        else:
            print(f"note: {message}", file=sys.stderr, flush=True)


def reporter(quiet: bool = False) -> Reporter:
    """The active reporter; without one a tqdm bar on a terminal, else plain lines.

    ``quiet``: tasks show nothing (notes are still shown).
    """
    active = _ACTIVE.get()
    if quiet:
        return _QuietReporter(active)
    if active is not None:
        return active
    if sys.stderr.isatty():
        return TqdmReporter()
    return LineReporter()


@contextlib.contextmanager
def use(rep: Reporter) -> Iterator[Reporter]:
    """Make ``rep`` the active reporter inside the ``with`` block."""
    token = _ACTIVE.set(rep)
    try:
        yield rep
    finally:
        _ACTIVE.reset(token)

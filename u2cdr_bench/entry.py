"""How the command line ends: one ``error: ...`` sentence and exit 2 for every user mistake, 130 on Ctrl-C.

:class:`ErrorGroup` is the click group of the ``u2cdr-bench`` app (``typer.Typer(cls=ErrorGroup)``). Its
``main`` runs the command with click's ``standalone_mode`` off and maps what comes out:

================================================  =============================================  =====
what                                              printed on stderr                              exit
================================================  =============================================  =====
:class:`~u2cdr_bench.errors.UserError`            ``error: <its sentence>``                      2
click usage errors (typer 0.29 bundles its own    ``error: <click's message>; see 'u2cdr-bench    2
click, ``typer._click``): unknown option or       CMD --help'.``; an unknown command lists the
command, bad value, extra or missing argument     commands
typer's ``Abort`` (end of input at a prompt)        ``error: aborted.``                            2
Ctrl-C (SIGINT)                                   ``interrupted; nothing was written.`` or how   130
                                                  many records were (they are kept)
no arguments (``u2cdr-bench``, ``... data``)      the help                                       0
================================================  =============================================  =====

The same mapping applies whether the app is called through :func:`u2cdr_bench.cli.main`, the console
script or typer's ``CliRunner`` (they all reach ``ErrorGroup.main``). Ctrl-C is turned into
:class:`Interrupted` by a SIGINT handler installed for the duration of ``main`` (in the main thread), so
click never sees a ``KeyboardInterrupt`` (it would print a blank line and hide what was written).
"""

from __future__ import annotations

import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import typer
from typer import _click
from typer.core import TyperArgument, TyperGroup
from typer.exceptions import TyperException

from .errors import UserError

__all__ = ["SESSION", "ErrorGroup", "Interrupted", "one_line"]


class Interrupted(BaseException):  # noqa: N818 - a signal, like KeyboardInterrupt
    """Raised by the SIGINT handler of :class:`ErrorGroup`."""


@dataclass
class Session:
    """What the current command has written (for the Ctrl-C message)."""

    records: list[Path] = field(default_factory=list)
    out_dir: Path | None = None

    def reset(self) -> None:
        self.records.clear()
        self.out_dir = None


SESSION = Session()


def one_line(text: str) -> str:
    """``text`` on one line (runs of white space collapsed), ending with a full stop."""
    line = " ".join(str(text).split())
    return line if line.endswith((".", "?", "!")) else line + "."


def _error(message: str) -> None:
    print(f"error: {one_line(message)}", file=sys.stderr, flush=True)


def _usage_message(err: _click.exceptions.UsageError, fallback_path: str) -> str:
    """Click's message on one line, the valid commands for an unknown one, and where the help is."""
    msg = one_line(err.format_message())
    ctx = err.ctx
    if ctx is not None and hasattr(ctx.command, "list_commands") and msg.startswith("No such command"):
        names = ", ".join(ctx.command.list_commands(ctx))
        msg = f"{msg[:-1]}; valid commands: {names}."
    path = ctx.command_path if ctx is not None else fallback_path
    return f"{msg[:-1]}; see '{path} --help'."


def _interrupted_message() -> str:
    n = len(SESSION.records)
    if not n:
        return "interrupted; nothing was written."
    where = SESSION.out_dir if SESSION.out_dir is not None else SESSION.records[0].parent
    return (
        f"interrupted; {n} finished run record(s) were written to {where} and are kept; "
        "the same command skips them and runs the rest."
    )


def _raise_interrupted(signum: int, frame: Any) -> None:
    raise Interrupted()


_SHOWN: set[str] = set()


def _show_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    file: Any = None,
    line: Any = None,
) -> None:
    """A Python warning raised while a command runs, as one ``warning: ...`` line on stderr, once per text
    (Python's own format adds the source file and line, which tell a user nothing)."""
    text = one_line(str(message))
    if text in _SHOWN:
        return
    _SHOWN.add(text)
    print(f"warning: {text}", file=sys.stderr, flush=True)


class ErrorGroup(TyperGroup):
    """The app's root group: every failure ends as one line and an exit code (see the module docstring)."""

    def main(  # type: ignore[override]
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        code = self._guarded(args, prog_name or "u2cdr-bench", complete_var, extra)
        if standalone_mode:
            sys.exit(code)
        return code

    @staticmethod
    def _untag_arguments(cmd: Any) -> None:
        """Drop typer's ``<str>`` tag after positional arguments in ``--help`` (options have metavars)."""
        for p in getattr(cmd, "params", []):
            if isinstance(p, TyperArgument):
                p.display_type_rich = lambda ctx: None  # type: ignore[method-assign]
        for sub in getattr(cmd, "commands", {}).values():
            ErrorGroup._untag_arguments(sub)

    def _guarded(
        self, args: Sequence[str] | None, prog_name: str, complete_var: str | None, extra: dict[str, Any]
    ) -> int:
        SESSION.reset()
        self._untag_arguments(self)
        in_main = threading.current_thread() is threading.main_thread()
        previous = signal.signal(signal.SIGINT, _raise_interrupted) if in_main else None
        # only where nobody else shows warnings (pytest and warnings.catch_warnings install their own)
        plain_warnings = warnings.showwarning is getattr(warnings, "_showwarning_orig", None)
        if plain_warnings:
            _SHOWN.clear()
            warnings.showwarning = _show_warning
        try:
            rv = super().main(
                args=args, prog_name=prog_name, complete_var=complete_var, standalone_mode=False, **extra
            )
            return rv if isinstance(rv, int) and not isinstance(rv, bool) else 0
        except UserError as e:
            _error(str(e))
            return e.exit_code
        except _click.exceptions.NoArgsIsHelpError as e:
            e.show()
            return 0
        except _click.exceptions.UsageError as e:
            words = list(args if args is not None else sys.argv[1:])
            sub = words[0] if words and words[0] in self.commands else ""
            _error(_usage_message(e, f"{prog_name} {sub}".strip()))
            return 2
        except TyperException as e:  # other click exceptions (e.g. FileError)
            _error(e.format_message())
            return 2
        except typer.Abort:
            _error("aborted.")
            return 2
        except typer.Exit as e:
            return int(e.exit_code or 0)
        except (Interrupted, KeyboardInterrupt):
            print(_interrupted_message(), file=sys.stderr, flush=True)
            return 130
        finally:  # a SystemExit (``data verify`` ends with SystemExit(1)) passes through unchanged
            if in_main and previous is not None:
                signal.signal(signal.SIGINT, previous)
            if plain_warnings:
                warnings.showwarning = warnings._showwarning_orig  # type: ignore[attr-defined]

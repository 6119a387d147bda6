"""User-facing errors.

Any mistake a user can make (unknown name, missing data, bad file) raises :class:`UserError` with one
clear sentence. The CLI prints the sentence and exits with code 2; nothing is written.
"""

from __future__ import annotations

from collections.abc import Iterable


class UserError(Exception):
    """A user's mistake, reported as one sentence and exit code 2 (never a traceback)."""

    exit_code = 2


def unknown_name(kind: str, name: str, valid: Iterable[str]) -> UserError:
    """Build the standard "unknown X" error listing the valid choices."""
    choices = ", ".join(sorted(valid))
    return UserError(f"Unknown {kind} '{name}'; valid choices: {choices}.")

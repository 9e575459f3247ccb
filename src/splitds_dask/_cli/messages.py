"""What the command line says: its name, usage errors, and any exception as one line."""

from __future__ import annotations

__all__ = ["PROG", "UsageError", "one_line"]

PROG = "splitds"


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


def one_line(exc: BaseException | str) -> str:
    """An exception's (or warning's) message on one line; its type's name if it has none."""
    return " ".join(str(exc).splitlines()) or type(exc).__name__

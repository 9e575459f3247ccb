"""What the command line says: its name, usage errors, and any exception as one line."""

from __future__ import annotations

__all__ = ["DEBUG_VARIABLE", "PROG", "UsageError", "one_line"]

PROG = "splitds"
# Set to 1 to let an unexpected error end the command with its traceback (for bug reports).
DEBUG_VARIABLE = "SPLITDS_DEBUG"
# A message is cut to this many characters: it may quote arbitrary input (a file's contents).
_MAX_CHARS = 2000


class UsageError(Exception):
    """Bad command-line input (exit code 2)."""


def one_line(exc: BaseException | str) -> str:
    """An exception's (or warning's) message on one line; its type's name if it has none.

    At most 2,000 characters: longer messages are cut, ending with ``...``.
    """
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a message that cannot be rendered still gives a line
        text = ""
    text = " ".join(text.splitlines()) or type(exc).__name__
    return text if len(text) <= _MAX_CHARS else text[: _MAX_CHARS - 3] + "..."

"""Byte sizes as people write and read them, and array shapes as text.

``parse_size("400MB")`` → bytes, ``format_bytes(1234567)`` → ``'1.2 MB'``,
``format_shape((8, 256, 256))`` → ``'8x256x256'``, and :func:`bytes_on_disk` totals the size of
files. Shared by the demo and the command line.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = ["bytes_on_disk", "format_bytes", "format_shape", "parse_size"]

_SIZE_UNITS = {
    "": 1,
    "b": 1,
    "kb": 10**3,
    "mb": 10**6,
    "gb": 10**9,
    "tb": 10**12,
    "k": 10**3,
    "m": 10**6,
    "g": 10**9,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_SIZE_RE = re.compile(r"^\s*(?P<number>[0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)\s*(?P<unit>[a-z]*)\s*$")


def parse_size(text: str) -> int:
    """Parse a size such as ``400MB``, ``1.5GB``, ``512KiB`` or ``1000000`` into bytes.

    ``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000; ``KiB``, ``MiB``, ``GiB``, ``TiB`` powers
    of 1024; a bare number is bytes. Case does not matter.

    Parameters
    ----------
    text : str
        The size.

    Returns
    -------
    int
        The size in bytes (rounded down).

    Raises
    ------
    ValueError
        ``text`` is not a positive size.
    """
    match = _SIZE_RE.match(text.lower())
    if match is None or match["unit"] not in _SIZE_UNITS:
        raise ValueError(f"invalid size {text!r} (examples: 400MB, 1.5GB, 512KiB)")
    size = int(float(match["number"]) * _SIZE_UNITS[match["unit"]])
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: must be positive")
    return size


def format_bytes(n: float) -> str:
    """``1234567`` → ``'1.2 MB'`` (powers of 1000, as the throughputs)."""
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_shape(shape: Sequence[int]) -> str:
    """``(8, 256, 256)`` → ``'8x256x256'``."""
    return "x".join(str(n) for n in shape)


def bytes_on_disk(files: Iterator[Path]) -> tuple[int, int]:
    """Total size of the files, and how many of them are missing."""
    total = missing = 0
    for path in files:
        try:
            total += os.stat(path).st_size
        except FileNotFoundError:
            missing += 1
    return total, missing

"""Byte sizes as people write and read them, and array shapes as text.

``parse_size("400MB")`` → bytes, ``format_bytes(1234567)`` → ``'1.2 MB'``,
``format_shape((8, 256, 256))`` → ``'8x256x256'``, and :func:`bytes_on_disk` totals the size of
files. Shared by the demo and the command line.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import NamedTuple

__all__ = ["DiskUsage", "bytes_on_disk", "format_bytes", "format_shape", "parse_size"]


def parse_size(text: str) -> int:
    """Parse a size such as ``400MB``, ``1.5GB``, ``512KiB`` or ``1000000`` into bytes.

    ``KB``, ``MB``, ``GB``, ``TB`` are powers of 1000; ``KiB``, ``MiB``, ``GiB``, ``TiB`` powers
    of 1024; a bare number is bytes. Case does not matter. The units are dask's
    (:func:`dask.utils.parse_bytes`, as in ``array.chunk-size``); a size must hold a number
    and be positive.

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
    from dask.utils import parse_bytes

    invalid = f"invalid size {text!r} (examples: 400MB, 1.5GB, 512KiB)"
    if not any(c.isdigit() for c in text):  # dask reads "MB" as 1 MB
        raise ValueError(invalid)
    try:
        size = parse_bytes(text)
    except (ValueError, OverflowError):
        raise ValueError(invalid) from None
    if size <= 0:
        raise ValueError(f"invalid size {text!r}: must be positive")
    return size


def format_bytes(n: float) -> str:
    """``1234567`` → ``'1.2 MB'`` (powers of 1000, as the throughputs).

    Not :func:`dask.utils.format_bytes`, which writes powers of 1024 (``'1.18 MiB'``): the demo
    reports sizes beside MB/s throughputs, in the same unit.
    """
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def format_shape(shape: Sequence[int]) -> str:
    """``(8, 256, 256)`` → ``'8x256x256'``."""
    return "x".join(str(n) for n in shape)


class DiskUsage(NamedTuple):
    """What :func:`bytes_on_disk` counted."""

    nbytes: int  # total size of the files present
    missing: int  # files that do not exist


def bytes_on_disk(files: Iterator[Path]) -> DiskUsage:
    """Total size of the files, and how many of them are missing."""
    total = missing = 0
    for path in files:
        try:
            total += os.stat(path).st_size
        except FileNotFoundError:
            missing += 1
    return DiskUsage(total, missing)

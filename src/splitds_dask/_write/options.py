"""Checks of the writers' options, made when they are given, not when the first block is written.

An option that would fail in the background writer thread, or at ``close()`` after an hour of
acquisition, or write a dataset this package cannot read back, is refused by the call that
received it, with a one-line ``ValueError`` or ``TypeError``.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["check_block_shape", "check_compression", "check_data_key", "check_positive_int"]


def check_compression(compression: object, level: object) -> None:
    """Refuse a compression name, compressor or level that no block file can be written with."""
    from splitds_dask._storage.block_file import compression_options

    # Parses the name and level (filters.parse_compression) and asks hdf5plugin for the
    # compressor; the dtype only matters for gzip's shuffle.
    compression_options(compression, level, np.dtype(np.uint8))  # type: ignore[arg-type]


def _is_int(value: object) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def check_positive_int(name: str, value: object) -> int:
    """``value`` as an int if it is a positive integer (numpy integers too), else refuse it."""
    if not _is_int(value):
        raise TypeError(f"{name} must be a positive integer, got {value!r}")
    if int(value) < 1:  # type: ignore[call-overload]
        raise ValueError(f"{name} must be a positive integer, got {value!r}")
    return int(value)  # type: ignore[call-overload]


def check_block_shape(
    block_shape: object,
) -> int | tuple[int | None, ...] | None:
    """A ``block_shape`` option as ints: None, a positive integer (blocks along axis 0), or a
    sequence of positive integers and Nones (None or a missing entry: the whole axis).

    A number that is not an integer (``2.0``, ``True``) is a ``ValueError``, as a zero is; what
    is neither a number nor a sequence is a ``TypeError``.
    """
    expected = "a positive integer or a sequence of positive integers (None: the whole axis)"
    if block_shape is None:
        return None
    if isinstance(block_shape, (str, bytes)) or not isinstance(
        block_shape, (numbers.Number, Sequence, np.ndarray)
    ):
        raise TypeError(f"block shape must be {expected}, got {block_shape!r}")
    entries: Any = block_shape if isinstance(block_shape, (Sequence, np.ndarray)) else [block_shape]
    out: list[int | None] = []
    for value in entries:
        if value is None:
            out.append(None)
        elif not _is_int(value) or int(value) < 1:
            raise ValueError(f"block shape must be {expected}, got {block_shape!r}")
        else:
            out.append(int(value))
    return out[0] if isinstance(block_shape, numbers.Number) else tuple(out)


def check_data_key(data_key: Any) -> str | None:
    """Refuse an array name that readers would not find in the block files.

    Readers find a block's array by name (``stack_{N}D``, ``stack``, else any top-level
    dataset whose name contains ``stack``), so a name without ``stack``, or inside a group,
    would write a dataset that cannot be opened.
    """
    if data_key is None:
        return None
    if not isinstance(data_key, str):
        raise TypeError(f"data_key must be a string, got {data_key!r}")
    if "stack" not in data_key or "/" in data_key:
        raise ValueError(
            f"data_key {data_key!r} would not be found by readers, which look for a top-level "
            "array whose name contains 'stack' (such as 'stack_4D', the default): use such a name"
        )
    return data_key

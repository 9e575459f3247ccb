"""Numpy indexing, reduced to what has to be read from disk. Pure: no I/O.

Any numpy index ``key`` on an array of ``shape`` is split into

* an *orthogonal selection*: for each axis, an ascending slice or a sorted array of unique
  indices; reading it gives an array ``part`` that holds exactly the elements the index touches,
  and no more;
* a *post index* that numpy applies to ``part``, so that ``part[post]`` is exactly
  ``array[key]``: integers become 0, reversed slices become ``::-1``, integer and boolean arrays
  become positions in the unique indices, ``None`` and scalar booleans stay as they are.

Applying numpy itself to the small array ``part`` keeps every rule of numpy's indexing (where
advanced-index dimensions go, broadcasting, scalar results) without re-implementing it.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["OrthogonalSelection", "normalize_index"]

AxisSelection = slice | np.ndarray

_VALID = (
    "only integers, slices (`:`), ellipsis (`...`), numpy.newaxis (`None`) and integer or "
    "boolean arrays are valid indices"
)


@dataclass(frozen=True)
class OrthogonalSelection:
    """The result of :func:`normalize_index`.

    Attributes
    ----------
    axes : tuple
        Per array axis, ``slice(start, stop, step)`` with ``step > 0`` and in-range bounds, or a
        sorted ``int64`` array of unique in-range indices.
    shape : tuple of int
        Shape of the orthogonal read.
    post : tuple or None
        Index to apply to the orthogonal read; None when the read is already the answer.
    """

    axes: tuple[AxisSelection, ...]
    shape: tuple[int, ...]
    post: tuple[Any, ...] | None


def _as_int(value: Any) -> int | None:
    if isinstance(value, (bool, np.bool_)):
        return None
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype.kind in "iu":
        return int(value)
    try:
        return operator.index(value)
    except TypeError:
        return None


def _expand(key: Any, ndim: int) -> list[Any]:
    """Split ``key`` into entries, expand Ellipsis and fill trailing axes with ``:``."""
    entries = list(key) if isinstance(key, tuple) else [key]
    consumed = 0
    ellipsis_at = None
    for i, entry in enumerate(entries):
        if entry is Ellipsis:
            if ellipsis_at is not None:
                raise IndexError("an index can only have a single ellipsis ('...')")
            ellipsis_at = i
        elif entry is None or isinstance(entry, (bool, np.bool_)):
            continue
        elif isinstance(entry, (slice, int, np.integer)):
            consumed += 1
        else:
            array = np.asarray(entry) if not isinstance(entry, np.ndarray) else entry
            consumed += array.ndim if array.dtype == bool else 1
    if consumed > ndim:
        raise IndexError(
            f"too many indices for array: array is {ndim}-dimensional, but {consumed} were indexed"
        )
    fill = [slice(None)] * (ndim - consumed)
    if ellipsis_at is None:
        return entries + fill
    return entries[:ellipsis_at] + fill + entries[ellipsis_at + 1 :]


def _slice_selection(entry: slice, n: int) -> tuple[slice, int, Any]:
    start, stop, step = entry.indices(n)
    count = len(range(start, stop, step))
    if count == 0:
        return slice(0, 0, 1), 0, slice(None)
    last = start + (count - 1) * step
    if step > 0:
        return slice(start, last + 1, step), count, slice(None)
    return slice(last, start + 1, -step), count, slice(None, None, -1)


def _array_selection(array: np.ndarray, axis: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    if array.dtype.kind not in "iu":
        if array.size == 0 and array.dtype.kind == "f":
            array = array.astype(np.intp)  # numpy accepts an empty list, which is float
        else:
            raise IndexError("arrays used as indices must be of integer (or boolean) type")
    values = array.astype(np.int64, copy=False)
    if values.size:
        low, high = int(values.min()), int(values.max())
        if low < -n or high >= n:
            bad = low if low < -n else high
            raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
        values = np.where(values < 0, values + n, values)
    unique = np.unique(values)
    return unique, np.searchsorted(unique, values)


def normalize_index(key: Any, shape: Sequence[int]) -> OrthogonalSelection:
    """Split a numpy index into an orthogonal read and a post index (see the module docstring).

    Raises exactly the exceptions numpy raises for invalid or out-of-range indices.
    """
    shape = tuple(int(n) for n in shape)
    entries = _expand(key, len(shape))
    axes: list[AxisSelection] = []
    sizes: list[int] = []
    post: list[Any] = []
    trivial = True
    axis = 0
    for entry in entries:
        if entry is None or isinstance(entry, (bool, np.bool_)):
            post.append(entry)
            trivial = False
            continue
        if isinstance(entry, slice):
            selection, size, after = _slice_selection(entry, shape[axis])
            axes.append(selection)
            sizes.append(size)
            post.append(after)
            trivial &= after == slice(None)
            axis += 1
            continue
        integer = _as_int(entry) if not isinstance(entry, (list, tuple)) else None
        if integer is not None:
            n = shape[axis]
            if not -n <= integer < n:
                raise IndexError(f"index {integer} is out of bounds for axis {axis} with size {n}")
            integer += n if integer < 0 else 0
            axes.append(slice(integer, integer + 1, 1))
            sizes.append(1)
            post.append(0)
            trivial = False
            axis += 1
            continue
        if isinstance(entry, (float, complex, str, bytes, dict, set)) or entry is Ellipsis:
            raise IndexError(_VALID)
        array = entry if isinstance(entry, np.ndarray) else np.asarray(entry)
        if array.dtype == object:
            raise IndexError(_VALID)
        trivial = False
        if array.dtype == bool:
            for dim, length in enumerate(array.shape):
                if length != shape[axis + dim]:
                    raise IndexError(
                        f"boolean index did not match indexed array along axis {axis + dim}; "
                        f"size of axis is {shape[axis + dim]} but size of corresponding boolean "
                        f"axis is {length}"
                    )
            for coordinates in np.nonzero(array):
                unique, positions = _array_selection(coordinates, axis, shape[axis])
                axes.append(unique)
                sizes.append(len(unique))
                post.append(positions)
                axis += 1
            continue
        unique, positions = _array_selection(array, axis, shape[axis])
        axes.append(unique)
        sizes.append(len(unique))
        post.append(positions)
        axis += 1
    return OrthogonalSelection(tuple(axes), tuple(sizes), None if trivial else tuple(post))

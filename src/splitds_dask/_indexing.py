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

import math
import operator
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

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


def _is_bool_scalar(value: Any) -> bool:
    return isinstance(value, (bool, np.bool_)) or (
        isinstance(value, np.ndarray) and value.ndim == 0 and value.dtype == bool
    )


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
    fill: list[Any] = [slice(None)] * (ndim - consumed)
    if ellipsis_at is None:
        return entries + fill
    # An Ellipsis that stands for no axis is kept: it still separates advanced indexes, which
    # moves their dimensions to the front of the result.
    return entries[:ellipsis_at] + (fill or [Ellipsis]) + entries[ellipsis_at + 1 :]


class _SliceRead(NamedTuple):
    """How a slice of one axis is read: ascending, then reversed by the post index if needed."""

    read: slice  # ascending, in range
    length: int  # elements selected
    post: slice  # ``:`` or ``::-1``


def _slice_selection(entry: slice, n: int) -> _SliceRead:
    start, stop, step = entry.indices(n)
    count = len(range(start, stop, step))
    if count == 0:
        return _SliceRead(slice(0, 0, 1), 0, slice(None))
    last = start + (count - 1) * step
    if step > 0:
        return _SliceRead(slice(start, last + 1, step), count, slice(None))
    return _SliceRead(slice(last, start + 1, -step), count, slice(None, None, -1))


def _index_array(array: np.ndarray) -> np.ndarray:
    """Check that ``array`` is usable as an integer index array (numpy's parse-time check)."""
    if array.dtype.kind not in "iu":
        if array.size == 0 and array.dtype.kind == "f":
            return array.astype(np.intp)  # numpy accepts an empty list, which is float
        raise IndexError("arrays used as indices must be of integer (or boolean) type")
    return array


def _array_selection(array: np.ndarray, axis: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    # Like numpy, which casts index arrays to intp: uint64 values beyond int64 wrap around.
    values = array.astype(np.int64, copy=False)
    if values.size:
        low, high = int(values.min()), int(values.max())
        if low < -n or high >= n:
            bad = low if low < -n else high
            raise IndexError(f"index {bad} is out of bounds for axis {axis} with size {n}")
        values = np.where(values < 0, values + n, values)
    unique = np.unique(values)
    return unique, np.searchsorted(unique, values)


class _Entry(NamedTuple):
    """One parsed entry of an index."""

    kind: Literal["ellipsis", "new", "slice", "int", "array"]
    value: Any  # the entry (an int for "int", an index array for "array")
    axis: int  # the array axis it applies to (the next one, for "ellipsis" and "new")


def normalize_index(key: Any, shape: Sequence[int]) -> OrthogonalSelection:
    """Split a numpy index into an orthogonal read and a post index (see the module docstring).

    Raises exactly the exceptions numpy raises for invalid or out-of-range indices, in numpy's
    order: first what is wrong with the index itself (types, boolean shapes), then integers and
    slices from left to right, then index arrays (broadcasting, then bounds; numpy checks no
    bounds when the index arrays broadcast to an empty result).
    """
    shape = tuple(int(n) for n in shape)
    parsed = _parse(_expand(key, len(shape)), shape)
    _check_ints_and_slices(parsed, shape)
    empty = _index_arrays_select_nothing(parsed)
    return _orthogonal_selection(parsed, shape, empty=empty)


def _parse(entries: list[Any], shape: tuple[int, ...]) -> list[_Entry]:
    """One record per entry; a boolean mask becomes one index array per axis it covers."""
    parsed: list[_Entry] = []
    axis = 0
    for entry in entries:
        if entry is Ellipsis:
            parsed.append(_Entry("ellipsis", entry, axis))
            continue
        if entry is None or _is_bool_scalar(entry):
            # numpy treats a scalar boolean, 0-d arrays included, as a 0-d mask: a new axis.
            parsed.append(_Entry("new", entry, axis))
            continue
        if isinstance(entry, slice):
            parsed.append(_Entry("slice", entry, axis))
            axis += 1
            continue
        integer = _as_int(entry) if not isinstance(entry, (list, tuple)) else None
        if integer is not None:
            if not -(2**63) <= integer < 2**63:
                if isinstance(entry, int):
                    raise IndexError(_VALID)  # numpy: a Python int beyond intp is no index
                raise OverflowError("Python int too large to convert to C long")  # as numpy
            parsed.append(_Entry("int", integer, axis))
            axis += 1
            continue
        if isinstance(entry, (float, complex, str, bytes, dict, set)):
            raise IndexError(_VALID)
        array = entry if isinstance(entry, np.ndarray) else np.asarray(entry)
        if array.dtype == object:
            raise IndexError(_VALID)
        if array.dtype == bool:
            masks = _mask_entries(array, axis, shape)
            parsed += masks
            axis += len(masks)
            continue
        parsed.append(_Entry("array", _index_array(array), axis))
        axis += 1
    return parsed


def _mask_entries(mask: np.ndarray, axis: int, shape: tuple[int, ...]) -> list[_Entry]:
    """The boolean ``mask`` applied from ``axis`` on, as one index array per axis it covers."""
    for dim, length in enumerate(mask.shape):
        # numpy does not check boolean axes of length 0.
        if length != shape[axis + dim] and length != 0:
            raise IndexError(
                f"boolean index did not match indexed array along axis {axis + dim}; "
                f"size of axis is {shape[axis + dim]} but size of corresponding boolean "
                f"axis is {length}"
            )
    return [
        _Entry("array", coordinates, axis + dim) for dim, coordinates in enumerate(np.nonzero(mask))
    ]


def _check_ints_and_slices(parsed: list[_Entry], shape: tuple[int, ...]) -> None:
    """Raise numpy's error for the first integer out of range or invalid slice, left to right."""
    for kind, value, axis in parsed:
        if kind == "int":
            n = shape[axis]
            if not -n <= value < n:
                raise IndexError(f"index {value} is out of bounds for axis {axis} with size {n}")
        elif kind == "slice":
            value.indices(shape[axis])  # raises numpy's ValueError / TypeError


def _index_arrays_select_nothing(parsed: list[_Entry]) -> bool:
    """Whether the index arrays broadcast to an empty result (then none is checked for bounds).

    Raises numpy's IndexError when they do not broadcast together.
    """
    fancy = [value.shape for kind, value, _ in parsed if kind == "array"]
    if not fancy:
        return False
    fancy += [
        (int(bool(value)),) for kind, value, _ in parsed if kind == "new" and value is not None
    ]
    try:
        return math.prod(np.broadcast_shapes(*fancy)) == 0
    except ValueError:
        raise IndexError(
            "shape mismatch: indexing arrays could not be broadcast together with shapes "
            + " ".join(str(s) for s in fancy)
        ) from None


def _orthogonal_selection(
    parsed: list[_Entry], shape: tuple[int, ...], *, empty: bool
) -> OrthogonalSelection:
    """The read of each axis and the post index that turns it into the indexed result."""
    axes: list[AxisSelection] = []
    sizes: list[int] = []
    post: list[Any] = []
    trivial = True
    for kind, value, axis in parsed:
        if kind == "ellipsis":
            post.append(value)
        elif kind == "new":
            post.append(value)
            trivial = False
        elif kind == "slice":
            selection, size, after = _slice_selection(value, shape[axis])
            axes.append(selection)
            sizes.append(size)
            post.append(after)
            trivial &= after == slice(None)
        elif kind == "int":
            integer = value + (shape[axis] if value < 0 else 0)
            axes.append(slice(integer, integer + 1, 1))
            sizes.append(1)
            post.append(0)
            trivial = False
        else:
            if empty:
                # Nothing is selected: read nothing on this axis, keep the index's shape.
                unique = np.empty(0, dtype=np.int64)
                positions = np.zeros(value.shape, dtype=np.intp)
            else:
                unique, positions = _array_selection(value, axis, shape[axis])
            axes.append(unique)
            sizes.append(len(unique))
            post.append(positions)
            trivial = False
    return OrthogonalSelection(tuple(axes), tuple(sizes), None if trivial else tuple(post))

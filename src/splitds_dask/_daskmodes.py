"""What dask's default graph mode and its opt-in array-expr mode do differently, in one place.

dask's array-expr mode (``DASK_ARRAY__QUERY_PLANNING=True``, fixed when ``dask.array`` is first
imported) returns another ``Array`` class, which lacks some of the default class's API. The
package's own code goes through the functions here, which give the same answer in both modes:

- ``dask.array.store`` raises NotImplementedError: :func:`store_chunks` writes every chunk to
  the target with one task per chunk instead;
- the array has no ``nbytes``: :func:`array_nbytes`;
- the array has no ``__array__``, so ``numpy.asarray`` wraps it in a 0-d object array instead of
  computing it: :func:`to_numpy`;
- for the same reason napari cannot show it: :func:`numpy_convertible`;
- ``std`` and ``var`` without a ``dtype`` call ``numpy.iscomplexobj`` on the array, which its
  ``__array_function__`` refuses (NotImplementedError): :func:`std`;
- no slice is fused into ``from_array``'s reads: ``x[5, :4]`` reads the whole chunk, then slices
  it (a block declaring terabytes fails, and a napari plane costs a block).
  :func:`from_reader` builds an expression that, sliced by integers and forward slices, becomes a
  read of just that window (:class:`~splitds_dask._reader.ReaderWindow`).
"""

from __future__ import annotations

import functools
import math
from typing import Any, cast

import dask.array as da
import numpy as np
from dask.base import is_dask_collection

from splitds_dask._reader import BlockReader, ReaderWindow

__all__ = [
    "array_expr_enabled",
    "from_reader",
    "array_nbytes",
    "numpy_convertible",
    "std",
    "store_chunks",
    "to_numpy",
]


def array_expr_enabled() -> bool:
    """Whether ``dask.array`` runs in its array-expr mode (False for dask versions without it)."""
    enabled = getattr(da, "array_expr_enabled", None)
    return bool(enabled()) if enabled is not None else False


def array_nbytes(array: Any) -> int:
    """Bytes of ``array``'s data, from its shape and dtype (computes nothing)."""
    return math.prod(int(n) for n in array.shape) * np.dtype(array.dtype).itemsize


def to_numpy(data: Any) -> np.ndarray:
    """``data`` as a numpy array, computing it first if it is a dask collection."""
    if is_dask_collection(data):
        data = data.compute()
    return np.asarray(data)


if array_expr_enabled():
    # In this mode da.Array is the array-expr collection (built from an expression), not the
    # graph-based class the type checker knows by that name.
    from dask.array._array_expr._collection import Array as _ExprArray

    class _ConvertibleArray(_ExprArray):
        """dask's array-expr Array plus ``__array__``, kept by indexing."""

        def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
            out = np.asarray(self.compute())
            return out if dtype is None else out.astype(dtype, copy=False)

        def __getitem__(self, key: Any) -> Any:
            return _ConvertibleArray(super().__getitem__(key).expr)


def numpy_convertible(array: da.Array) -> da.Array:
    """``array``, made such that ``numpy.asarray(array[key])`` computes the selection.

    For consumers that index a dask array and convert what they get with numpy (napari does).
    Default dask arrays already do. dask's array-expr Array has no ``__array__``, so there the
    array is one of a subclass that adds it (and keeps it through indexing); it is still a
    ``dask.array.Array``, with the same graph and name.
    """
    if not array_expr_enabled():
        return array
    # The type checker knows da.Array as the graph-based class; here both are array-expr ones.
    return cast("da.Array", _ConvertibleArray(cast(Any, array).expr))


def std(array: da.Array, axis: int | tuple[int, ...] | None = None) -> da.Array:
    """``array.std(axis=axis)`` with numpy's result dtype, in both dask modes.

    The dtype is given, as numpy would choose it, so dask need not ask numpy whether the array
    is complex. A complex array's deviation is that of its real and imaginary parts together.
    """
    if np.dtype(array.dtype).kind == "c":
        real = np.empty(0, array.dtype).real.dtype
        return da.sqrt(
            array.real.var(axis=axis, dtype=real) + array.imag.var(axis=axis, dtype=real)
        )
    dtype = np.std(np.ones(1, dtype=array.dtype)).dtype
    return array.std(axis=axis, dtype=dtype)


def _store_chunk(
    chunk: np.ndarray, target: Any, block_info: dict[Any, Any] | None = None
) -> np.ndarray:
    assert block_info is not None
    location = block_info[0]["array-location"]  # the input chunk's place in the array
    target[tuple(slice(start, stop) for start, stop in location)] = chunk
    return np.zeros((1,) * chunk.ndim, dtype=np.uint8)


def store_chunks(array: da.Array, target: Any) -> Any:
    """A dask collection whose computation writes each chunk of ``array`` to ``target``.

    Each task runs ``target[region] = chunk`` for one chunk, its region in ``array``'s
    coordinates, without a lock (targets here write each region to a file, or a part of a file,
    of its own). In the default mode this is ``dask.array.store(..., compute=False)``; dask's
    array-expr mode has no ``store``, so there the same tasks come from ``map_blocks``, and the
    collection is an array of one ``uint8`` per chunk.
    """
    if not array_expr_enabled():
        return da.store(array, target, lock=False, compute=False)
    return da.map_blocks(
        _store_chunk,
        array,
        target=target,
        chunks=tuple((1,) * len(c) for c in array.chunks),
        dtype=np.uint8,
        meta=np.empty((0,) * array.ndim, dtype=np.uint8),
    )


def from_reader(
    reader: BlockReader, *, chunks: Any, name: str, meta: np.ndarray, inline_array: bool
) -> da.Array:
    """``dask.array.from_array`` over a :class:`BlockReader`, any slice fused into the reads.

    The default mode fuses slices itself (``fancy=True``: the reader takes any numpy index). In
    array-expr mode the array is built from :class:`_ReaderArray`, which moves a slice by
    integers and forward slices into a window of the reader.
    """
    if not array_expr_enabled():
        return da.from_array(
            reader,
            chunks=chunks,
            name=name,
            meta=meta,
            fancy=True,
            asarray=False,
            inline_array=inline_array,
            lock=False,
        )
    from dask.array._array_expr._collection import new_collection

    return cast(
        "da.Array",
        new_collection(
            _ReaderArray(
                reader,
                chunks,
                lock=False,
                meta=meta,
                asarray=False,
                fancy=True,
                inline_array=inline_array,
            )
        ),
    )


if array_expr_enabled():
    from dask.array._array_expr._io import FromArray
    from dask.array._array_expr._slicing import SliceSlicesIntegers

    class _ReaderArray(FromArray):
        """``from_array`` of a block reader or a window of one; a slice of it is a window."""

        @functools.cached_property
        def _name(self) -> str:
            # dask's from_array ignores name= in this mode: the operands' token, our prefix.
            return f"splitds-{self.deterministic_token}"

        def _simplify_up(self, parent: Any, dependents: Any) -> Any:
            # Exactly this class: its subclasses also insert new axes.
            if type(parent) is not SliceSlicesIntegers:
                return None
            source = self.array
            if isinstance(source, ReaderWindow):
                return None  # a window of a window: left to dask (rare; still correct)
            window = ReaderWindow.of(source, tuple(parent.index))
            if window is None:
                return None
            return _ReaderArray(
                window,
                parent.chunks,
                lock=False,
                meta=parent._meta,
                asarray=False,
                fancy=True,
                inline_array=self.operand("inline_array"),
            )

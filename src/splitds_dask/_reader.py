"""Reading any numpy selection of a split dataset from its block files.

:class:`BlockReader` is what every read goes through: :meth:`SplitDataset.__getitem__` and each
task of the dask graph. It is small and picklable, and its size does not grow with the number of
blocks when the block files are named by a rule (:class:`BlockNames`), which every writer of the
format does; so a dask task that carries it costs the same at 100 or 1,000,000 blocks.
"""

from __future__ import annotations

import os
from itertools import product
from typing import Any, NamedTuple

import numpy as np

from splitds_dask._errors import damaged_block
from splitds_dask._format.files import BlockNames
from splitds_dask._format.geometry import BlockGrid, split_slice
from splitds_dask._indexing import OrthogonalSelection, normalize_index
from splitds_dask._storage.block_file import read_block_region
from splitds_dask._storage.containment import check_folder
from splitds_dask._threads import in_pool, map_in_pool

__all__ = ["BlockReader", "ReaderWindow"]


class _AxisPiece(NamedTuple):
    """One block's share of one axis of a selection."""

    block: int
    """The block's position along the axis."""
    source: slice
    """What to read, in the block file's coordinates."""
    dest: slice
    """Where it goes in the orthogonal read."""
    take: np.ndarray | None
    """For index arrays: the positions to keep from ``source`` (which is their bounding box)."""


class BlockReader:
    """Reads numpy selections of a split dataset; picklable, holds no open file.

    ``reader[key]`` is exactly ``numpy.asarray(dataset)[key]``, reading only the block files, and
    the parts of them, that hold the selection. ``from_array`` hands every chunk's task, with any
    slice of it fused in, to this method.
    """

    __slots__ = (
        "allow_external",
        "data_key",
        "dtype",
        "folder",
        "grid",
        "locking",
        "names",
        "root",
        "token",
    )

    # Whether a block read mostly waits on a store (then blocks are read on the wider I/O pool).
    io_bound = False

    def __init__(
        self,
        *,
        root: str,
        names: BlockNames,
        grid: BlockGrid,
        dtype: np.dtype,
        data_key: str,
        locking: bool | str | None,
        token: str | None = None,
        folder: tuple[int, int] | None = None,
        allow_external: bool = False,
    ) -> None:
        self.root = root
        self.names = names
        self.grid = grid
        self.dtype = dtype
        self.data_key = data_key
        self.locking = locking
        self.token = token
        # (st_dev, st_ino) of the folder when the dataset was opened: every read checks the
        # folder is still that one, so a computation never mixes two versions of a dataset
        # replaced by a writer (which swaps whole folders).
        self.folder = folder
        # Whether reads may follow links and external storage out of the folder.
        self.allow_external = allow_external

    def __getstate__(self) -> tuple[Any, ...]:
        # Plain values only: every read task carries the reader, and pickling the grid, the
        # names and the dtype as objects (their classes named in full) doubles its size.
        names, grid, dtype = self.names, self.grid, self.dtype
        return (
            self.root,
            (names.stem, names.first, names.width, names.count, names.explicit),
            (grid.shape, grid.block_shape, grid.padding),
            dtype.str if dtype.fields is None and dtype.subdtype is None else dtype,
            self.data_key,
            self.locking,
            self.token,
            self.folder,
            self.allow_external,
        )

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        root, names, grid, dtype, self.data_key, self.locking, self.token = state[:7]
        self.folder, self.allow_external = state[7:]
        stem, first, width, count, explicit = names
        shape, block_shape, padding = grid
        self.root = root
        self.names = BlockNames(stem=stem, first=first, width=width, count=count, explicit=explicit)
        self.grid = BlockGrid(shape=shape, block_shape=block_shape, padding=padding)
        self.dtype = np.dtype(dtype)

    def __dask_tokenize__(self) -> Any:
        # With a token (folder, metadata, names and file times: splitds_dask._graph), dask's
        # names change when a block file does; array-expr mode names arrays from this alone.
        if self.token is not None:
            return self.token
        return (
            self.root,
            self.names,
            self.grid,
            str(self.dtype),
            self.data_key,
            self.locking,
            self.folder,
            self.allow_external,
        )

    def stamped(self, token: str) -> BlockReader:
        """A copy of the same class carrying ``token`` (see :meth:`__dask_tokenize__`)."""
        copy = self.__class__.__new__(self.__class__)
        copy.__setstate__(self.__getstate__())
        copy.token = token
        return copy

    @property
    def shape(self) -> tuple[int, ...]:
        return self.grid.shape

    @property
    def ndim(self) -> int:
        return self.grid.ndim

    def block_path(self, index: int) -> str:
        """Absolute path of the file of block number ``index``."""
        return os.path.join(self.root, self.names[index])

    def __getitem__(self, key: Any) -> Any:
        selection = normalize_index(key, self.grid.shape)
        data = self.read_orthogonal(selection)
        return data if selection.post is None else data[selection.post]

    def read_orthogonal(self, selection: OrthogonalSelection) -> np.ndarray:
        """Read an orthogonal selection (see :func:`normalize_index`) into a new array."""
        out = np.empty(selection.shape, dtype=self.dtype)
        if out.size == 0:
            return out
        per_axis = [self._axis_pieces(axis, s) for axis, s in enumerate(selection.axes)]
        jobs = list(product(*per_axis))
        # The folder before the first file opens and after the last read: the same folder both
        # times means every block came from the version of the dataset that was opened.
        self._check_folder()
        try:
            if len(jobs) == 1 or in_pool():
                for pieces in jobs:
                    self._read_pieces(pieces, out)
            else:
                # Blocks fill disjoint parts of ``out``; Blosc blocks decompress in parallel.
                map_in_pool(self._read_pieces, jobs, [out] * len(jobs), io=self.io_bound)
        except Exception:
            self._check_folder()  # a file of a replaced folder failing: say what happened
            raise
        self._check_folder()
        return out

    def _check_folder(self) -> None:
        if self.folder is not None:
            check_folder(self.root, self.folder)

    def _read_pieces(self, pieces: tuple[_AxisPiece, ...], out: np.ndarray) -> None:
        """Read one block's share of a selection into ``out``."""
        block = tuple(p.block for p in pieces)
        source = tuple(p.source for p in pieces)
        dest = tuple(p.dest for p in pieces)
        extent = tuple(
            stop - start
            for start, stop in (self.grid.file_extent(a, k) for a, k in enumerate(block))
        )
        takes = [p.take for p in pieces]
        if all(t is None for t in takes):
            target, target_dest = out, dest
        else:
            # Index arrays: read the bounding box of this block's indices, then keep what was
            # asked for.
            target = np.empty(
                tuple(len(range(s.start, s.stop, s.step)) for s in source), self.dtype
            )
            target_dest = tuple(slice(0, n) for n in target.shape)
        self._read_block(
            self.grid.cartesian_to_linear(block),
            block=block,
            extent=extent,
            source=source,
            out=target,
            dest=target_dest,
        )
        if target is not out:
            for axis, take in enumerate(takes):
                if take is not None:
                    target = np.take(target, take, axis=axis)
            out[dest] = target

    def _read_block(
        self,
        index: int,
        *,
        block: tuple[int, ...],
        extent: tuple[int, ...],
        source: tuple[slice, ...],
        out: np.ndarray,
        dest: tuple[slice, ...],
    ) -> None:
        """Read ``source`` of block file number ``index`` (at ``block``) into ``out[dest]``."""
        path = self.block_path(index)
        with damaged_block(path, block):
            read_block_region(
                path,
                key=self.data_key,
                block=block,
                dtype=self.dtype,
                extent=extent,
                source=source,
                out=out,
                dest=dest,
                locking=self.locking,
                allow_external=self.allow_external,
            )

    def _axis_pieces(self, axis: int, selection: slice | np.ndarray) -> list[_AxisPiece]:
        """Split one axis' selection by the blocks that own its elements."""
        grid = self.grid
        if isinstance(selection, slice):
            return [
                _AxisPiece(k, local, dest, None)
                for k, local, dest in split_slice(
                    selection.start,
                    selection.stop,
                    selection.step,
                    grid.block_shape[axis],
                    cells=grid.grid[axis],
                )
            ]
        pieces: list[_AxisPiece] = []
        if selection.size == 0:
            return pieces
        owners = np.minimum(selection // max(grid.block_shape[axis], 1), grid.grid[axis] - 1)
        bounds = np.flatnonzero(np.diff(owners)) + 1
        for p0, p1 in zip(np.r_[0, bounds], np.r_[bounds, selection.size], strict=True):
            k = int(owners[p0])
            lo = grid.owned_extent(axis, k).start
            local = selection[p0:p1] - lo
            box = slice(int(local[0]), int(local[-1]) + 1, 1)
            pieces.append(_AxisPiece(k, box, slice(int(p0), int(p1)), local - local[0]))
        return pieces


class _WindowAxis(NamedTuple):
    """What a window keeps of one axis of the array it views."""

    start: int
    step: int  # positive
    length: int


class ReaderWindow:
    """A strided box of a :class:`BlockReader`'s array, itself indexable like an array.

    ``ReaderWindow(reader, index)`` is ``reader[index]`` for ``index`` made of integers and
    slices with positive steps, without reading anything: indexing the window reads only what
    it selects. dask's array-expr mode slices a ``from_array`` array after reading whole chunks;
    a slice moved into the read as a window reads only the sliced part (see
    :mod:`splitds_dask._daskmodes`). Picklable, and its size does not grow with the dataset.
    """

    __slots__ = ("axes", "reader")

    def __init__(self, reader: BlockReader, axes: tuple[int | _WindowAxis, ...]) -> None:
        self.reader = reader
        self.axes = axes

    @classmethod
    def of(cls, reader: BlockReader, index: tuple[Any, ...]) -> ReaderWindow | None:
        """The window ``reader[index]``, or None unless ``index`` is one integer or slice with
        a positive (or no) step per axis."""
        if len(index) != reader.ndim:
            return None
        axes: list[int | _WindowAxis] = []
        for entry, n in zip(index, reader.shape, strict=True):
            if isinstance(entry, (int, np.integer)) and not isinstance(entry, bool):
                position = int(entry) + n if entry < 0 else int(entry)
                if not 0 <= position < n:
                    return None
                axes.append(position)
            elif isinstance(entry, slice) and (entry.step is None or entry.step > 0):
                start, stop, step = entry.indices(n)
                axes.append(_WindowAxis(start, step, len(range(start, stop, step))))
            else:
                return None
        return cls(reader, tuple(axes))

    def __dask_tokenize__(self) -> Any:
        from dask.base import tokenize

        return ("splitds-window", tokenize(self.reader), self.axes)

    def __getstate__(self) -> tuple[Any, ...]:
        return (self.reader, tuple(a if isinstance(a, int) else tuple(a) for a in self.axes))

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        self.reader = state[0]
        self.axes = tuple(a if isinstance(a, int) else _WindowAxis(*a) for a in state[1])

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(a.length for a in self.axes if not isinstance(a, int))

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> np.dtype:
        return self.reader.dtype

    def __getitem__(self, key: Any) -> Any:
        key = key if isinstance(key, tuple) else (key,)
        kept = [a for a in self.axes if not isinstance(a, int)]
        if len(key) != len(kept) or not all(isinstance(k, slice) for k in key):
            # Anything but one slice per axis: the window first, then numpy's own indexing.
            return self._read(tuple(slice(None) for _ in kept))[key]
        return self._read(key)

    def _read(self, key: tuple[slice, ...]) -> Any:
        base: list[int | slice] = []
        slices = iter(key)
        for axis in self.axes:
            if isinstance(axis, int):
                base.append(axis)
                continue
            start, stop, step = next(slices).indices(axis.length)
            if step < 0:  # reversed: read forwards, then reverse
                return self._read(tuple(slice(None) for _ in key))[key]
            first = axis.start + start * axis.step
            base.append(slice(first, first + max(0, stop - start) * axis.step, step * axis.step))
        return self.reader[tuple(base)]

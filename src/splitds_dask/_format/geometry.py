"""Block geometry: how an N-d array is cut into blocks. Pure arithmetic, no I/O.

Conventions (those of every writer of the format):

* ``b = min(block_shape, shape)`` per axis; the grid has ``ceil((n - pad) / b)`` blocks.
* Block ``k`` of an axis starts at ``k * b``. Its *file extent* (what the block file holds) ends at
  ``min(n, (k + 1) * b + pad)``, so padded blocks overlap their successor; the last block always
  ends at ``n``.
* Its *owned extent* (the part it contributes to the array, without overlap) is
  ``[k * b, (k + 1) * b)`` for every block but the last, which owns ``[k * b, n)``.
* Blocks are numbered in C order: file number ``i`` is block ``np.unravel_index(i, grid)``.
"""

from __future__ import annotations

import functools
import math
import numbers
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from typing import Any, NamedTuple

__all__ = ["BlockGrid", "Extent", "SlicePiece", "normalize_block_shape", "split_slice"]


class Extent(NamedTuple):
    """``[start, stop)`` in array coordinates along one axis."""

    start: int
    stop: int


class SlicePiece(NamedTuple):
    """The positions of a strided selection that fall in one cell (see :func:`split_slice`)."""

    cell: int  # the cell's number
    local: slice  # the selected positions, in the cell's coordinates
    dest: slice  # where they fall in the selection


def normalize_block_shape(
    block_shape: int | Sequence[int | None] | None, shape: Sequence[int]
) -> tuple[int, ...]:
    """Expand a possibly partial block shape to one entry per axis, clamped to ``shape``.

    ``None`` (or a missing trailing entry) means "the whole axis"; an int applies to axis 0 only,
    as in the original package where a prefix tuple splits the leading axes.
    """
    ndim = len(shape)
    if block_shape is None:
        entries: list[Any] = [None] * ndim
    elif isinstance(block_shape, (int, numbers.Integral)):  # also numpy integer scalars
        entries = [block_shape] + [None] * (ndim - 1)
    else:
        entries = list(block_shape)
        if len(entries) > ndim:
            raise ValueError(
                f"block shape {tuple(entries)} has more axes than the array shape {tuple(shape)}"
            )
        entries += [None] * (ndim - len(entries))
    out = []
    for axis, (b, n) in enumerate(zip(entries, shape, strict=True)):
        if b is None:
            out.append(int(n))
            continue
        if isinstance(b, bool) or int(b) != b or b < 1:
            raise ValueError(
                f"block shape entry for axis {axis} must be a positive integer, got {b!r}"
            )
        out.append(min(int(b), int(n)))
    return tuple(out)


def split_slice(
    start: int, stop: int, step: int, size: int, *, cells: int | None = None
) -> list[SlicePiece]:
    """Cut the positions ``range(start, stop, step)`` (``step > 0``) by cells of length ``size``.

    Cell ``k`` covers ``[k * size, (k + 1) * size)``; with ``cells`` given, the last cell
    (``cells - 1``) reaches to the end, as a split dataset's last block does.

    Returns
    -------
    list of SlicePiece
        For each cell holding selected positions, in order: the cell number, the selected
        positions in cell coordinates, and where they fall in the selection (``j0:j1``).
    """
    if stop <= start:
        return []
    last = start + ((stop - 1 - start) // step) * step

    def cell(i: int) -> int:
        return i // size if cells is None else min(i // size, cells - 1)

    pieces: list[SlicePiece] = []
    for k in range(cell(start), cell(last) + 1):
        lo = k * size
        hi = last + 1 if k == cell(last) else lo + size
        j0 = -(-(max(lo, start) - start) // step)
        j1 = -(-(hi - start) // step)
        if j1 <= j0:
            continue
        first = start + j0 * step - lo
        local = slice(first, first + (j1 - j0 - 1) * step + 1, step)
        pieces.append(SlicePiece(k, local, slice(j0, j1)))
    return pieces


@dataclass(frozen=True)
class BlockGrid:
    """The cutting of an array of ``shape`` into blocks of ``block_shape`` with ``padding``.

    ``block_shape`` must already be normalized (one positive entry per axis, at most the axis
    length; see :func:`normalize_block_shape`). A zero-length axis has one empty block.
    """

    shape: tuple[int, ...]
    block_shape: tuple[int, ...]
    padding: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.shape) == len(self.block_shape) == len(self.padding)):
            raise ValueError(
                f"shape {self.shape}, block shape {self.block_shape} and padding {self.padding} "
                "must have the same number of axes"
            )

    @classmethod
    def from_spec(
        cls,
        shape: Sequence[int],
        block_shape: int | Sequence[int | None] | None,
        padding: int | Sequence[int] = 0,
    ) -> BlockGrid:
        """Build a grid from user-style arguments (partial block shape, scalar padding)."""
        shape = tuple(int(n) for n in shape)
        pads = (padding,) * len(shape) if isinstance(padding, int) else tuple(padding)
        pads = tuple(int(p) for p in pads) + (0,) * (len(shape) - len(pads))
        if len(pads) != len(shape) or any(p < 0 for p in pads):
            raise ValueError(f"padding {padding!r} does not fit shape {shape}")
        return cls(shape, normalize_block_shape(block_shape, shape), pads)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @functools.cached_property
    def grid(self) -> tuple[int, ...]:
        """Number of blocks along each axis (computed once: every read of a block asks)."""
        return tuple(
            1 if b == 0 or n - p <= 0 else math.ceil((n - p) / b)
            for n, b, p in zip(self.shape, self.block_shape, self.padding, strict=True)
        )

    @property
    def n_blocks(self) -> int:
        return math.prod(self.grid)

    def owned_lengths(self, axis: int) -> tuple[int, ...]:
        """Length of the owned (non-overlapping) extent of every block along ``axis``."""
        n, b, g = self.shape[axis], self.block_shape[axis], self.grid[axis]
        return (*(b for _ in range(g - 1)), n - (g - 1) * b)

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Dask chunks: the owned extents of the blocks along each axis."""
        return tuple(self.owned_lengths(axis) for axis in range(self.ndim))

    def file_extent(self, axis: int, k: int) -> Extent:
        """``(start, stop)`` in array coordinates of what block ``k``'s file holds on ``axis``."""
        n, b, p, g = self.shape[axis], self.block_shape[axis], self.padding[axis], self.grid[axis]
        start = k * b
        return Extent(start, n if k == g - 1 else min(n, start + b + p))

    @property
    def file_shape(self) -> tuple[int, ...]:
        """The shape of the largest block file, block 0's (no later block's file is longer)."""
        return tuple(self.file_extent(axis, 0).stop for axis in range(self.ndim))

    def owned_extent(self, axis: int, k: int) -> Extent:
        """``(start, stop)`` in array coordinates of the part of the array block ``k`` supplies."""
        n, b, g = self.shape[axis], self.block_shape[axis], self.grid[axis]
        start = k * b
        return Extent(start, n if k == g - 1 else start + b)

    def block_containing(self, axis: int, i: int) -> int:
        """The block owning array index ``i`` (``0 <= i < n``) along ``axis``."""
        b = self.block_shape[axis]
        return 0 if b == 0 else min(i // b, self.grid[axis] - 1)

    def file_slices(self, block: Sequence[int]) -> tuple[slice, ...]:
        """Array-coordinate slices of what the file of ``block`` holds."""
        return tuple(slice(*self.file_extent(a, k)) for a, k in enumerate(block))

    def owned_slices(self, block: Sequence[int]) -> tuple[slice, ...]:
        """Array-coordinate slices of the region ``block`` supplies (no overlap)."""
        return tuple(slice(*self.owned_extent(a, k)) for a, k in enumerate(block))

    def linear_to_cartesian(self, index: int) -> tuple[int, ...]:
        """Block position of file number ``index`` (C order)."""
        if not 0 <= index < self.n_blocks:
            raise IndexError(f"block {index} is out of range for {self.n_blocks} blocks")
        out = []
        for g in reversed(self.grid):
            index, r = divmod(index, g)
            out.append(r)
        return tuple(reversed(out))

    def cartesian_to_linear(self, block: Sequence[int]) -> int:
        """File number of the block at position ``block`` (C order)."""
        index = 0
        for k, g in zip(block, self.grid, strict=True):
            if not 0 <= k < g:
                raise IndexError(f"block {tuple(block)} is out of range for grid {self.grid}")
            index = index * g + int(k)
        return index

    def blocks(self) -> Iterator[tuple[int, ...]]:
        """Every block position in C order."""
        return product(*(range(g) for g in self.grid))

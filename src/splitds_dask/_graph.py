"""The dask graph of a split dataset: one chunk, and one read task, per block file by default.

The array is ``dask.array.from_array`` over the dataset's
:class:`~splitds_dask._reader.BlockReader`, whose ``__getitem__`` is the dataset's exact numpy
indexing. Each chunk's task reads its block; a slice of the array is handed to that same task
(by dask's slice fusion in its default mode, as a window of the reader in array-expr mode: see
:func:`splitds_dask._daskmodes.from_reader`), so ``x[5]`` reads one time point of one block
file.

What a task carries does not grow with the number of blocks: the reader names block files by
their numbering rule, so it is inlined into every task (a few hundred bytes); a folder whose
names follow no rule keeps its list of names in one shared graph key that every task refers to,
which distributed sends once per worker instead of once per task. No open file is ever in a
graph, so graphs pickle to distributed workers and processes; importing this package on a worker
registers hdf5plugin.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from typing import TYPE_CHECKING

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.utils import parse_bytes

from splitds_dask._daskmodes import from_reader
from splitds_dask._format.geometry import BlockGrid

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset

__all__ = ["dataset_to_dask", "dataset_token", "group_blocks", "grouped_chunks", "local_stamps"]

# Stat at most this many block files for the token: a few milliseconds, whatever the block count.
_STAMPED_FILES = 1024


def _stamp(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


def local_stamps(dataset: SplitDataset, root: str) -> list[tuple[int, int]]:
    """Modification time and size of the folder and of up to ``_STAMPED_FILES`` block files.

    Adding, removing or replacing (renaming over) a block file changes the folder's time, so
    every atomic writer changes the token. A block rewritten in place is caught when it is one of
    the stamped files: all of them up to ``_STAMPED_FILES`` blocks, evenly spread beyond.
    """
    names = dataset.block_naming
    count = len(names)
    picked = np.unique(np.linspace(0, count - 1, min(count, _STAMPED_FILES)).astype(int))
    return [_stamp(root)] + [_stamp(os.path.join(root, names[i])) for i in picked.tolist()]


def dataset_token(dataset: SplitDataset) -> str:
    """A deterministic token: the same for the same folder, metadata and block files.

    Block files are compared by their times and sizes (see :func:`local_stamps`), those of a
    remote dataset by the version of its metadata.
    """
    return tokenize(
        dataset._identity(),
        json.dumps(dataset.metadata, sort_keys=True, default=str),
        dataset.shape,
        dataset.shape_block,
        dataset.padding,
        str(dataset.dtype),
        dataset.data_key,
        dataset.block_naming,
    )


def group_blocks(
    grid: BlockGrid,
    itemsize: int,
    *,
    blocks_per_chunk: int | Sequence[int] | None = None,
    chunk_size: int | str | None = None,
) -> tuple[int, ...]:
    """How many neighbouring blocks each chunk holds along each axis (all 1 by default).

    See :meth:`SplitDataset.to_dask` for the two ways of asking for a grouping.
    """
    ndim = grid.ndim
    if blocks_per_chunk is not None and chunk_size is not None:
        raise ValueError("give blocks_per_chunk or chunk_size, not both")
    if chunk_size is not None:
        limit = parse_bytes(chunk_size) if isinstance(chunk_size, str) else int(chunk_size)
        if limit <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size!r}")
        group = [1] * ndim
        block_bytes = math.prod(grid.block_shape) * itemsize
        for axis in range(ndim):
            # Grow along this axis as far as the limit allows; go on to the next axis only
            # once this one is whole, so that chunks stay boxes of neighbouring blocks.
            room = limit // max(block_bytes, 1)
            group[axis] = max(1, min(grid.grid[axis], room))
            block_bytes *= group[axis]
            if group[axis] < grid.grid[axis]:
                break
        return tuple(group)
    if blocks_per_chunk is None:
        return (1,) * ndim
    entries = (
        list(blocks_per_chunk) if isinstance(blocks_per_chunk, Sequence) else [blocks_per_chunk]
    )
    if any(isinstance(g, bool) or not isinstance(g, (int, np.integer)) or g < 1 for g in entries):
        raise ValueError(
            f"blocks_per_chunk entries must be positive integers: {blocks_per_chunk!r}"
        )
    if len(entries) > ndim:
        raise ValueError(f"blocks_per_chunk {blocks_per_chunk!r} has more than {ndim} axes")
    entries += [1] * (ndim - len(entries))
    return tuple(int(g) for g in entries)


def grouped_chunks(grid: BlockGrid, group: Sequence[int]) -> tuple[tuple[int, ...], ...]:
    """Dask chunks holding ``group[axis]`` neighbouring blocks along each axis."""
    return tuple(
        tuple(sum(lengths[i : i + g]) for i in range(0, len(lengths), g))
        for lengths, g in zip(grid.chunks, group, strict=True)
    )


def dataset_to_dask(
    dataset: SplitDataset, chunks: tuple[tuple[int, ...], ...] | None = None
) -> da.Array:
    """Build the dask array of ``dataset`` (see the module docstring).

    ``chunks`` defaults to one chunk per block; any other chunking works too (a chunk spanning
    several blocks reads each of them, a chunk within a block reads only its part).
    """
    chunks = dataset.chunks if chunks is None else chunks
    token = dataset_token(dataset)
    reader = dataset.reader.stamped(token)
    return from_reader(
        reader,
        chunks=chunks,
        name=f"splitds-{token}"
        if chunks == dataset.chunks
        else f"splitds-{tokenize(token, chunks)}",
        meta=np.empty((0,) * dataset.ndim, dtype=dataset.dtype),
        inline_array=reader.names.is_rule,
    )

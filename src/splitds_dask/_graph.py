"""The dask graph of a split dataset: one chunk, and one read task, per block file.

The array is ``dask.array.from_array`` over a small picklable source whose ``__getitem__`` is the
dataset's exact numpy indexing. Each chunk's task reads its block; when the array is sliced,
dask's slice fusion hands the combined index to that same task, so ``x[5]`` reads one time point
of one block file. The source holds paths only, never an open file, so graphs pickle to
distributed workers and processes; importing this package on a worker registers hdf5plugin.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
from dask.base import tokenize

if TYPE_CHECKING:
    from ._dataset import SplitDataset

__all__ = ["dataset_to_dask", "dataset_token"]


class _BlockSource:
    """What ``from_array`` slices: forwards every index to :meth:`SplitDataset.__getitem__`."""

    __slots__ = ("dataset", "dtype", "ndim", "shape")

    def __init__(self, dataset: SplitDataset) -> None:
        self.dataset = dataset
        self.shape = dataset.shape
        self.dtype = dataset.dtype
        self.ndim = dataset.ndim

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.dataset[key])


# Stat at most this many block files for the token: a few milliseconds, whatever the block count.
_STAMPED_FILES = 1024


def _stamp(path: str) -> tuple[int, int]:
    try:
        stat = os.stat(path)
    except OSError:
        return (-1, -1)
    return (stat.st_mtime_ns, stat.st_size)


def _stamps(root: str, names: tuple[str, ...]) -> list[tuple[int, int]]:
    """Modification time and size of the folder and of up to ``_STAMPED_FILES`` block files.

    Adding, removing or replacing (renaming over) a block file changes the folder's time, so
    every atomic writer changes the token. A block rewritten in place is caught when it is one of
    the stamped files: all of them up to ``_STAMPED_FILES`` blocks, evenly spread beyond.
    """
    picked = np.unique(np.linspace(0, len(names) - 1, min(len(names), _STAMPED_FILES)).astype(int))
    return [_stamp(root)] + [_stamp(os.path.join(root, names[i])) for i in picked.tolist()]


def dataset_token(dataset: SplitDataset) -> str:
    """A deterministic token: same folder, metadata and block files (times, sizes) → same token."""
    root = os.path.realpath(dataset.root)
    names = hashlib.sha256("\n".join(dataset.block_names).encode()).hexdigest()
    return tokenize(
        root,
        json.dumps(dataset.metadata, sort_keys=True, default=str),
        dataset.shape,
        dataset.shape_block,
        dataset.padding,
        str(dataset.dtype),
        dataset.data_key,
        names,
        _stamps(root, dataset.block_names),
    )


def dataset_to_dask(dataset: SplitDataset) -> da.Array:
    """Build the dask array of ``dataset`` (see the module docstring)."""
    return da.from_array(
        _BlockSource(dataset),
        chunks=dataset.chunks,
        name=f"splitds-{dataset_token(dataset)}",
        meta=np.empty((0,) * dataset.ndim, dtype=dataset.dtype),
        # Our __getitem__ takes every numpy index, so dask may fuse any slice into the read.
        fancy=True,
        asarray=False,
        inline_array=True,
        lock=False,
    )

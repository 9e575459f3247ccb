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


def _file_stamps(root: str, names: tuple[str, ...]) -> bytes:
    """Modification time and size of every block file, packed (a missing file stamps -1)."""
    stamps = np.full((len(names), 2), -1, dtype=np.int64)
    for i, name in enumerate(names):
        try:
            stat = os.stat(os.path.join(root, name))
        except OSError:
            continue
        stamps[i] = stat.st_mtime_ns, stat.st_size
    return stamps.tobytes()


def dataset_token(dataset: SplitDataset) -> str:
    """A deterministic token: same folder, metadata and block files (times, sizes) → same token."""
    root = os.path.realpath(dataset.root)
    files = hashlib.sha256("\n".join(dataset.block_names).encode())
    files.update(_file_stamps(root, dataset.block_names))
    return tokenize(
        root,
        json.dumps(dataset.metadata, sort_keys=True, default=str),
        dataset.shape,
        dataset.shape_block,
        dataset.padding,
        str(dataset.dtype),
        dataset.data_key,
        files.hexdigest(),
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

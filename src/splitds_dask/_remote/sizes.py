"""The sizes of a remote dataset's block files, as the listing made at opening gave them.

The first read of a block file needs its size (to fetch its tail, where HDF5 writers put the
chunk index). A store that lists (S3, GCS) gave every file's size when the dataset was opened:
kept here, the process that opened the dataset reads a block's first bytes without asking the
store for its size first. Tasks never carry the sizes (a task's payload would grow with the
dataset); a process that did not open the dataset (a distributed worker) finds none here and
learns a size with its first request for the block (:mod:`splitds_dask._remote.file_ends`).

Sizes are kept per version of the dataset's metadata, as chunk maps are: a dataset committed
again (new or replaced blocks, then its metadata) is another key, so its new files are never
read with the old files' sizes. Only the sizes are kept, 8 bytes a block in one array indexed
by block number (800 KB for 100,000 blocks; the names are found again from their numbers), for
the most recently opened datasets, at most :data:`MAX_BLOCKS` blocks in all.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from splitds_dask._format.files import BlockNames
from splitds_dask._remote.location import FileVersion, StoredFile

__all__ = ["BLOCK_SIZES", "MAX_BLOCKS", "BlockSizeCache"]

# Blocks whose sizes are kept in all (8 bytes each: 16 MiB), over the datasets opened last.
MAX_BLOCKS = 1 << 21
_MAX_DATASETS = 64
_UNKNOWN = -1


class _Key(NamedTuple):
    url: str
    version: FileVersion
    stem: str
    """Two datasets of one folder (``fish1_0000.h5``, ``fish2_0000.h5``) are told apart."""
    first: int


class BlockSizeCache:
    """Block file sizes by dataset (folder URL and metadata version) and block number.

    Parameters
    ----------
    max_blocks : int
        Blocks kept at most, over all datasets; the least recently used datasets go first.
    """

    def __init__(self, max_blocks: int = MAX_BLOCKS) -> None:
        self._sizes: OrderedDict[_Key, np.ndarray] = OrderedDict()
        self._blocks = 0
        self._max_blocks = max_blocks
        self._lock = threading.Lock()

    def remember(
        self,
        url: str,
        version: FileVersion,
        names: BlockNames,
        listing: Mapping[str, StoredFile],
    ) -> None:
        """Keep the sizes ``listing`` gives of the files ``names`` (absent ones stay unknown).

        ``version`` must be the version of the metadata the listing saw (the caller checks it):
        a listing made before another writer committed would otherwise be kept under the new
        version.
        """
        if len(names) > self._max_blocks:
            return  # the first reads ask for sizes: nothing else would fit
        sizes = np.fromiter(
            (
                stored.size if (stored := listing.get(names[i])) is not None else _UNKNOWN
                for i in range(len(names))
            ),
            dtype=np.int64,
            count=len(names),
        )
        key = _Key(url, version, names.stem, names.first)
        with self._lock:
            old = self._sizes.pop(key, None)
            self._blocks -= 0 if old is None else len(old)
            self._sizes[key] = sizes
            self._blocks += len(sizes)
            while self._blocks > self._max_blocks or len(self._sizes) > _MAX_DATASETS:
                _, dropped = self._sizes.popitem(last=False)
                self._blocks -= len(dropped)

    def size(self, url: str, version: FileVersion, names: BlockNames, name: str) -> int | None:
        """The size of the block file ``name`` (one of ``names``), or None if it is not known."""
        number = name[len(names.stem) : -len(".h5")]
        if not (name.startswith(names.stem) and name.endswith(".h5") and number.isdecimal()):
            return None
        index = int(number) - names.first
        if not 0 <= index < len(names) or names[index] != name:
            return None  # not a name of this dataset (05.h5 where it has 0005.h5)
        key = _Key(url, version, names.stem, names.first)
        with self._lock:
            sizes = self._sizes.get(key)
            if sizes is None or index >= len(sizes):
                return None
            self._sizes.move_to_end(key)
            found = int(sizes[index])
        return None if found == _UNKNOWN else found

    def clear(self) -> None:
        """Forget every size (as a process that did not open the datasets)."""
        with self._lock:
            self._sizes.clear()
            self._blocks = 0


BLOCK_SIZES = BlockSizeCache()

"""Mapping the chunks of a remote dataset's block files, for its chunk-map sidecar.

Each block file is opened as a first read opens it (its head and tail fetched together, in one
round trip where its size is known) and its :class:`~splitds_dask._storage.blosc.ChunkMap`
taken from HDF5's index with every check of a read; the files are mapped a few at a time.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import h5py

from splitds_dask._remote.block_file import _open_with_ends
from splitds_dask._remote.location import RemoteFolder
from splitds_dask._storage.block_file import _checked, _dataset, stored_dtype
from splitds_dask._storage.blosc import ChunkMap
from splitds_dask._storage.chunkmap_file import BlockMap

__all__ = ["block_map", "map_remote_blocks"]

# Block files opened at once: each costs a round trip or two, mostly waiting.
_IN_FLIGHT = 16


def block_map(
    f: h5py.File, *, key: str, location: str, block: tuple[int, ...], ndim: int, size: int
) -> BlockMap | None:
    """The map of the array ``key`` of the open block file ``f`` of ``size`` bytes; None where
    its array is not Blosc alone (reads then use h5py)."""
    dset = _dataset(f, key, location, block, ndim, False).dataset
    chunk_map = _checked(ChunkMap.of, location, block, dset.name[1:], dset, stored_dtype(dset))
    return None if chunk_map is None else BlockMap(size, chunk_map)


def map_remote_blocks(
    folder: RemoteFolder,
    names: Sequence[str],
    blocks: Sequence[tuple[int, ...]],
    *,
    sizes: Mapping[str, int],
    key: str,
    ndim: int,
) -> dict[str, BlockMap]:
    """The maps of the block files ``names`` (of grid positions ``blocks``, of ``sizes``).

    Raises
    ------
    BlockError
        A file is missing, unreadable or damaged (naming it).
    """

    def one(name: str, block: tuple[int, ...]) -> BlockMap | None:
        size = sizes[name]
        with _open_with_ends(folder, name, block=block, size=size) as (f, _):
            return block_map(
                f, key=key, location=folder.file_url(name), block=block, ndim=ndim, size=size
            )

    with ThreadPoolExecutor(_IN_FLIGHT) as pool:
        found = list(pool.map(one, names, blocks))
    return {name: m for name, m in zip(names, found, strict=True) if m is not None}

"""Writing a dataset's chunk-map sidecar (``splitds index``, and the remote writer; see
:mod:`splitds_dask._storage.chunkmap_file`).

Each block file is mapped with every check of a read: a local folder's opened with h5py, a
remote dataset's as its first reads open them (its head and tail fetched together, in one round
trip where its size is known), several at a time on the I/O pool. The sidecar is bound to the
metadata's bytes as read before any block is mapped, so that a dataset committed again
meanwhile gets a sidecar its readers ignore rather than one that describes other files. A local
sidecar is written atomically; a remote one is uploaded as one object, replacing an older one
(bound to its own metadata).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from splitds_dask._format.geometry import BlockGrid
from splitds_dask._format.metadata import find_metadata_file
from splitds_dask._storage.atomic import atomic_file
from splitds_dask._storage.block_file import _checked, _dataset, stored_dtype
from splitds_dask._storage.blosc import ChunkMap
from splitds_dask._storage.chunkmap_file import (
    CHUNKMAPS_NAME,
    BlockMap,
    chunkmaps_json,
    metadata_digest,
)
from splitds_dask._threads import map_in_pool

if TYPE_CHECKING:
    import h5py

    from splitds_dask._dataset import SplitDataset
    from splitds_dask._remote.location import RemoteFolder

__all__ = [
    "IndexReport",
    "MappedBlocks",
    "block_map",
    "map_remote_blocks",
    "upload_chunkmaps",
    "write_chunkmaps",
]


class IndexReport(NamedTuple):
    """What :func:`write_chunkmaps` wrote."""

    location: str
    blocks: int
    """Block files mapped."""
    chunks: int
    skipped: int
    """Block files present but not mapped (not Blosc alone)."""
    missing: int
    bytes: int


class MappedBlocks(NamedTuple):
    """The maps of a dataset's block files, by file name."""

    maps: dict[str, BlockMap]
    skipped: int
    """Block files present but not mapped (not Blosc alone: reads use h5py)."""
    missing: int
    """Block files absent."""


def block_map(
    f: h5py.File, *, key: str, location: str, block: tuple[int, ...], ndim: int, size: int
) -> BlockMap | None:
    """The map of the array ``key`` of the open block file ``f`` of ``size`` bytes; None where
    its array is not Blosc alone (reads then use h5py)."""
    dset = _dataset(f, key, location, block, ndim, False).dataset
    chunk_map = _checked(ChunkMap.of, location, block, dset.name[1:], dset, stored_dtype(dset))
    return None if chunk_map is None else BlockMap(size, chunk_map)


def _mapped(
    names: Sequence[str], present: Sequence[int], found: Sequence[BlockMap | None]
) -> MappedBlocks:
    maps = {names[i]: m for i, m in zip(present, found, strict=True) if m is not None}
    return MappedBlocks(maps, len(present) - len(maps), len(names) - len(present))


def map_remote_blocks(
    folder: RemoteFolder,
    names: Sequence[str],
    grid: BlockGrid,
    *,
    sizes: Mapping[str, int],
    key: str,
) -> MappedBlocks:
    """The maps of the block files ``names`` (in block-number order) of ``folder`` that
    ``sizes`` lists.

    Raises
    ------
    BlockError
        A file is unreadable or damaged (naming it).
    """
    from splitds_dask._remote.block_file import _open_with_ends

    def one(index: int) -> BlockMap | None:
        name, block = names[index], grid.linear_to_cartesian(index)
        size = sizes[name]
        with _open_with_ends(folder, name, block=block, size=size) as (f, _):
            location = folder.file_url(name)
            return block_map(f, key=key, location=location, block=block, ndim=grid.ndim, size=size)

    present = [i for i, name in enumerate(names) if name in sizes]
    # Each file costs a round trip or two, mostly waiting: the I/O pool keeps several in flight.
    return _mapped(names, present, map_in_pool(one, present, io=True))


def upload_chunkmaps(folder: RemoteFolder, metadata: bytes, maps: Mapping[str, BlockMap]) -> bytes:
    """Upload the sidecar of ``maps``, bound to the metadata's bytes; its bytes."""
    data = chunkmaps_json(metadata_digest(metadata), maps)
    folder.filesystem.pipe_file(folder.path(CHUNKMAPS_NAME), data)
    return data


def _local(ds: SplitDataset) -> tuple[bytes, MappedBlocks]:
    root = Path(ds.root)
    metadata = find_metadata_file(root)
    if metadata is None:
        raise FileNotFoundError(f"{root}: no *stack_metadata.json to bind a sidecar to")
    text = metadata.read_bytes()
    names = ds.block_names
    present = [i for i, name in enumerate(names) if (root / name).is_file()]
    found = []
    for index in present:
        path, block = root / names[index], ds.grid.linear_to_cartesian(index)
        with ds._open_block_file(names[index], block) as f:
            found.append(
                block_map(
                    f,
                    key=ds.data_key,
                    location=os.fspath(path),
                    block=block,
                    ndim=ds.ndim,
                    size=path.stat().st_size,
                )
            )
    if metadata.read_bytes() != text:
        raise RuntimeError(f"{metadata}: changed while the blocks were mapped; index again")
    return text, _mapped(names, present, found)


def write_chunkmaps(ds: SplitDataset) -> IndexReport:
    """Map every block file of ``ds`` and write its chunk-map sidecar beside its metadata.

    Returns
    -------
    IndexReport
        Where it was written and what it holds.
    """
    from splitds_dask._remote.dataset import RemoteSplitDataset

    if isinstance(ds, RemoteSplitDataset):
        sizes = ds.stored_sizes()
        if sizes is None:
            raise ValueError(f"{ds.root}: cannot write here (the store cannot list its files)")
        mapped = map_remote_blocks(ds.remote, ds.block_names, ds.grid, sizes=sizes, key=ds.data_key)
        data = upload_chunkmaps(ds.remote, ds.metadata_bytes, mapped.maps)
        location = ds.remote.file_url(CHUNKMAPS_NAME)
    else:
        text, mapped = _local(ds)
        data = chunkmaps_json(metadata_digest(text), mapped.maps)
        path = Path(ds.root) / CHUNKMAPS_NAME
        with atomic_file(path) as tmp:
            tmp.write_bytes(data)
        location = os.fspath(path)
    chunks = sum(m.chunk_map.n_chunks for m in mapped.maps.values())
    return IndexReport(
        location, len(mapped.maps), chunks, mapped.skipped, mapped.missing, len(data)
    )

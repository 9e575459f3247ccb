"""Writing a dataset's chunk-map sidecar (``splitds index``; see
:mod:`splitds_dask._storage.chunkmap_file`).

A local folder's blocks are opened with h5py; a remote dataset's as its first reads open them
(:mod:`splitds_dask._remote.index`). The sidecar is bound to the metadata's bytes as read before
any block is mapped, so that a dataset committed again meanwhile gets a sidecar its readers
ignore rather than one that describes other files. A local sidecar is written atomically; a
remote one is uploaded as one object, replacing an older one (bound to its own metadata).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from splitds_dask._format.metadata import find_metadata_file
from splitds_dask._storage.atomic import atomic_file
from splitds_dask._storage.chunkmap_file import (
    CHUNKMAPS_NAME,
    BlockMap,
    chunkmaps_json,
    metadata_digest,
)

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset

__all__ = ["IndexReport", "write_chunkmaps"]


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


def _local(ds: SplitDataset) -> tuple[bytes, dict[str, BlockMap], int, int]:
    from splitds_dask._remote.index import block_map

    root = Path(ds.root)
    metadata = find_metadata_file(root)
    if metadata is None:
        raise FileNotFoundError(f"{root}: no *stack_metadata.json to bind a sidecar to")
    text = metadata.read_bytes()
    maps: dict[str, BlockMap] = {}
    skipped = missing = 0
    for index, name in enumerate(ds.block_names):
        path = root / name
        if not path.is_file():
            missing += 1
            continue
        block = ds.grid.linear_to_cartesian(index)
        with ds._open_block_file(name, block) as f:
            found = block_map(
                f,
                key=ds.data_key,
                location=os.fspath(path),
                block=block,
                ndim=ds.ndim,
                size=path.stat().st_size,
            )
        if found is None:
            skipped += 1
        else:
            maps[name] = found
    if metadata.read_bytes() != text:
        raise RuntimeError(f"{metadata}: changed while the blocks were mapped; index again")
    return text, maps, skipped, missing


def _remote(ds: SplitDataset) -> tuple[bytes, dict[str, BlockMap], int, int]:
    from splitds_dask._remote.dataset import RemoteSplitDataset
    from splitds_dask._remote.index import map_remote_blocks

    assert isinstance(ds, RemoteSplitDataset)
    sizes = ds.stored_sizes()
    if sizes is None:
        raise ValueError(f"{ds.root}: cannot write here (the store cannot list its files)")
    present = [(i, n) for i, n in enumerate(ds.block_names) if n in sizes]
    names = [n for _, n in present]
    blocks = [ds.grid.linear_to_cartesian(i) for i, _ in present]
    maps = map_remote_blocks(ds.remote, names, blocks, sizes=sizes, key=ds.data_key, ndim=ds.ndim)
    return ds.metadata_bytes, maps, len(names) - len(maps), len(ds.block_names) - len(names)


def write_chunkmaps(ds: SplitDataset) -> IndexReport:
    """Map every block file of ``ds`` and write its chunk-map sidecar beside its metadata.

    Returns
    -------
    IndexReport
        Where it was written and what it holds.
    """
    from splitds_dask._remote.dataset import RemoteSplitDataset

    remote = isinstance(ds, RemoteSplitDataset)
    text, maps, skipped, missing = _remote(ds) if remote else _local(ds)
    data = chunkmaps_json(metadata_digest(text), maps)
    chunks = sum(m.chunk_map.n_chunks for m in maps.values())
    if isinstance(ds, RemoteSplitDataset):
        folder = ds.remote
        folder.filesystem.pipe_file(folder.path(CHUNKMAPS_NAME), data)
        location = folder.file_url(CHUNKMAPS_NAME)
    else:
        path = Path(ds.root) / CHUNKMAPS_NAME
        with atomic_file(path) as tmp:
            tmp.write_bytes(data)
        location = os.fspath(path)
    return IndexReport(location, len(maps), chunks, skipped, missing, len(data))

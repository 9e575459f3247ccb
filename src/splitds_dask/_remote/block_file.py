"""Reading a region of a remote block file: its chunk map once, then byte ranges.

The first read of a block file (of one version of the dataset) takes its chunk map from the
dataset's chunk-map sidecar where there is a sound one (:mod:`splitds_dask._remote.chunkmaps`):
then it costs the data only. Else it opens the file with h5py over a file
object whose first requests fetch the head and the tail of the file together (where HDF5 writers
put the superblock, object headers and chunk index: one round trip instead of one per place),
and keeps its :class:`~splitds_dask._storage.blosc.ChunkMap` in the process's cache of chunk
maps; the chunks of that first read that lie in the bytes fetched (all of them, in a file of up
to twice the bytes fetched at each end) are not requested again. Every read after that costs
only the data: one range request per run of neighbouring chunks, all of a read's runs in flight
together, each chunk checked and decompressed by the same code as a local read (and checked
against its recorded CRC32C). Arrays the map cannot serve (other codecs, unwritten chunks) are
read by h5py over the fsspec file.

A remote block never reads outside itself: external links, virtual datasets and external
storage are refused whatever ``allow_external`` says for local folders (they would name files
on the reading machine).
"""

from __future__ import annotations

import io
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Any

import h5py
import numpy as np

from splitds_dask._errors import BlockError, damaged_block
from splitds_dask._format.files import BlockNames
from splitds_dask._remote.chunkmaps import SIDECARS
from splitds_dask._remote.file_ends import Part, fetch_file_ends
from splitds_dask._remote.location import FileVersion, RemoteFolder
from splitds_dask._remote.sizes import BLOCK_SIZES
from splitds_dask._storage.block_file import (
    _check_block,
    _checked,
    _dataset,
    _is_empty,
    _read_with_h5py,
    stored_dtype,
)
from splitds_dask._storage.blosc import CHUNK_MAPS, ByteRange, ChunkMap, read_chunks_by_ranges

__all__ = ["REMOTE_MAX_GAP", "REMOTE_MAX_RUN", "open_remote_block", "read_remote_region"]

# A request costs tens of milliseconds on object storage, in which 1 MiB more arrives: chunks
# closer than that are fetched by one request. Runs stop at 64 MiB, so that a read of a whole
# block still has several requests in flight.
REMOTE_MAX_GAP = 1 << 20
REMOTE_MAX_RUN = 1 << 26
# The file under h5py reads in blocks of this size, cached: the HDF5 superblock, object headers
# and chunk index of a block file take a few of them, at its head and its tail.
_INDEX_BLOCK_SIZE = 1 << 18
# Blocks read on demand (beyond the head and tail) kept at most: h5py's own reads of a codec the
# chunk map cannot serve go through the same file.
_INDEX_MAX_BLOCKS = 32


class _HeadAndTail(io.RawIOBase):
    """A read-only remote file for h5py: its head and tail fetched at once, the rest on demand.

    h5py's writers put the superblock and the first object headers at the head of a file, and
    the chunk index and the headers rewritten at close at its tail: fetching both at once costs
    one round trip where reading them as h5py asks costs one each. The file's ``size``, where
    it is known, spares a request for it (:func:`~splitds_dask._remote.file_ends.
    fetch_file_ends`). Other reads fetch the aligned blocks they cover (one request), kept in a
    small LRU cache.
    """

    def __init__(
        self, fs: Any, path: str, *, size: int | None = None, block_size: int = _INDEX_BLOCK_SIZE
    ) -> None:
        super().__init__()
        self._fs = fs
        self._path = path
        self._block = block_size
        ends = fetch_file_ends(fs, path, length=block_size, size=size)
        self.size = ends.size
        self._pos = 0
        self.ends = ends.parts  # kept for the life of the object
        self._recent: OrderedDict[int, bytes] = OrderedDict()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self.size}[whence]
        if base + offset < 0:
            raise OSError(f"{self._path}: seek to {base + offset}, before the start")
        self._pos = base + offset
        return self._pos

    def readinto(self, buffer: Any) -> int:
        view = memoryview(buffer).cast("B")
        n = max(0, min(len(view), self.size - self._pos))
        start, stop = self._pos, self._pos + n
        while start < stop:
            offset, data = self._part(start)
            piece = data[start - offset : stop - offset]
            if not piece:  # an end fetched at opening shorter than the size said (changed?)
                raise OSError(f"{self._path}: no byte at {start} of {self.size} (shrunk?)")
            view[start - self._pos : start - self._pos + len(piece)] = piece
            start += len(piece)
        self._pos = stop
        return n

    def _part(self, position: int) -> tuple[int, bytes]:
        """A cached part holding byte ``position`` (fetching its aligned block if none does)."""
        for offset, data in self.ends:
            if offset <= position < offset + len(data):
                return offset, data
        index = position // self._block
        cached = self._recent.get(index)
        if cached is None:
            start = index * self._block
            end = min(self.size, start + self._block)
            cached = bytes(self._fs.cat_file(self._path, start=start, end=end))
            if len(cached) <= position - start:
                raise OSError(f"{self._path}: no byte at {position} of {self.size} (shrunk?)")
            self._recent[index] = cached
            if len(self._recent) > _INDEX_MAX_BLOCKS:
                self._recent.popitem(last=False)
        self._recent.move_to_end(index)
        return index * self._block, cached


@contextmanager
def open_remote_block(
    folder: RemoteFolder, name: str, *, block: tuple[int, ...], size: int | None = None
) -> Iterator[h5py.File]:
    """Open the block file ``name`` of ``folder`` read-only, with h5py over fsspec.

    ``size`` is the file's size where it is known (see :mod:`splitds_dask._remote.sizes`). A
    missing or unreadable file is a :class:`BlockError` naming its URL.
    """
    with _open_with_ends(folder, name, block=block, size=size) as (f, _):
        yield f


@contextmanager
def _open_with_ends(
    folder: RemoteFolder, name: str, *, block: tuple[int, ...], size: int | None
) -> Iterator[tuple[h5py.File, list[Part]]]:
    """:func:`open_remote_block`, and the bytes fetched from the file's ends to open it."""
    url = folder.file_url(name)
    try:
        handle = _HeadAndTail(folder.filesystem, folder.path(name), size=size)
    except FileNotFoundError as exc:
        raise BlockError(f"block {block}: file {url} is missing", path=url, block=block) from exc
    except OSError as exc:
        raise BlockError(f"block {block}: cannot open {url}: {exc}", path=url, block=block) from exc
    try:
        with damaged_block(url, block):
            f = h5py.File(handle, "r")
        try:
            yield f, handle.ends
        finally:
            f.close()
    finally:
        handle.close()


def _fetch(
    folder: RemoteFolder, name: str, ranges: list[ByteRange], *, known: Sequence[Part] = ()
) -> Sequence[bytes]:
    """The bytes of ``ranges`` of the file ``name``, all requested at once, but for those that
    lie within the ``known`` bytes of the file (fetched to open it: a small file's chunks)."""
    found: list[bytes | None] = [_within(known, r) for r in ranges]
    wanted = [r for r, data in zip(ranges, found, strict=True) if data is None]
    if wanted:
        path = folder.path(name)
        fetched = iter(
            folder.filesystem.cat_ranges(
                [path] * len(wanted),
                [r.start for r in wanted],
                [r.stop for r in wanted],
                on_error="raise",
            )
        )
        found = [next(fetched) if data is None else data for data in found]
    return [data for data in found if data is not None]


def _within(parts: Sequence[Part], wanted: ByteRange) -> bytes | None:
    """The bytes of ``wanted`` if one of ``parts`` holds them all."""
    for part in parts:
        if part.offset <= wanted.start and wanted.stop <= part.offset + len(part.data):
            return part.data[wanted.start - part.offset : wanted.stop - part.offset]
    return None


def _from_sidecar(
    folder: RemoteFolder,
    name: str,
    names: BlockNames,
    version: FileVersion,
    digest: str,
    dtype: np.dtype,
    extent: Sequence[int],
) -> ChunkMap | None:
    """The block's map from the dataset's sidecar, if it fits the block as the dataset needs
    it and the file's size as listed at opening (where known); else None: its index serves."""
    found = SIDECARS.block(folder, version, digest, name)
    if found is None:
        return None
    listed = BLOCK_SIZES.size(folder.url, version, names, name)
    chunk_map = found.chunk_map
    if (
        (listed is not None and listed != found.size)
        or len(chunk_map.shape) != len(extent)
        or any(s < e for s, e in zip(chunk_map.shape, extent, strict=True))
        or chunk_map.values != dtype
    ):
        return None
    return chunk_map


def read_remote_region(
    folder: RemoteFolder,
    name: str,
    *,
    names: BlockNames,
    version: FileVersion,
    key: str,
    block: tuple[int, ...],
    dtype: np.dtype,
    extent: Sequence[int],
    source: tuple[slice, ...],
    out: np.ndarray,
    dest: tuple[slice, ...],
    chunkmaps: str | None = None,
) -> None:
    """Read ``source`` of the remote block file ``name`` into ``out[dest]``.

    As :func:`~splitds_dask._storage.block_file.read_block_region`, whatever h5py raises on a
    damaged file is left to the caller's :func:`~splitds_dask._errors.damaged_block`. Parameters
    as :func:`splitds_dask._storage.block_file.read_block_region`; ``names`` are the
    dataset's block names; ``version`` is the version of the dataset's metadata when it was
    opened, under which the block's chunk map (and, in the process that opened it, its size) is
    kept: a dataset committed again (new blocks, or replaced) is mapped afresh. ``chunkmaps`` is
    the SHA-256 of the metadata opened where a chunk-map sidecar was found for it: a block's
    first read then takes its map from there (:mod:`splitds_dask._remote.chunkmaps`).
    """
    url = folder.file_url(name)
    cache_key = ("remote", url, key, version)
    chunk_map = CHUNK_MAPS.get(cache_key)
    if chunk_map is None and chunkmaps is not None:
        chunk_map = _from_sidecar(folder, name, names, version, chunkmaps, dtype, extent)
        if chunk_map is not None:
            CHUNK_MAPS.put(cache_key, chunk_map)
    known: list[Part] = []  # the file's ends, where the first read fetched them
    if chunk_map is None:
        size = BLOCK_SIZES.size(folder.url, version, names, name)
        with _open_with_ends(folder, name, block=block, size=size) as (f, known):
            dset = _dataset(f, key, url, block, len(extent), False).dataset
            found = stored_dtype(dset)
            _check_block(dset.name[1:], dset.shape, found, extent, dtype, url, block)
            chunk_map = _checked(ChunkMap.of, url, block, dset.name[1:], dset, found)
            if chunk_map is None:  # not Blosc alone: h5py decodes it
                if not _is_empty(out, dest):
                    _read_with_h5py(dset, source, out, dest)
                return
            CHUNK_MAPS.put(cache_key, chunk_map)
    _check_block(chunk_map.name, chunk_map.shape, chunk_map.values, extent, dtype, url, block)
    if _is_empty(out, dest):
        return
    read = _checked(
        partial(read_chunks_by_ranges, max_gap=REMOTE_MAX_GAP, max_run=REMOTE_MAX_RUN),
        url,
        block,
        chunk_map.name,
        partial(_fetch, folder, name, known=known),
        chunk_map,
        source,
        out,
        dest,
    )
    if read:
        return
    # Unwritten chunks (the fill value), or a codec this Blosc lacks: every stored chunk of the
    # region was checked above, so HDF5's own filter only meets sound ones.
    with open_remote_block(
        folder, name, block=block, size=BLOCK_SIZES.size(folder.url, version, names, name)
    ) as f:
        dset = _dataset(f, chunk_map.name, url, block, len(extent), False).dataset
        _read_with_h5py(dset, source, out, dest)

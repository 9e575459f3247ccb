"""Blosc chunks of a block file, compressed and decompressed outside HDF5's lock.

h5py serialises every HDF5 call behind one process-wide lock, and HDF5 runs the Blosc filter
(id 32001) inside that lock, so threads reading or writing block files take turns even on
different files. For the common case, a chunked array whose only filter is Blosc, this module
does the filter's work itself:

- reading, it asks HDF5 once per file where each chunk lies (a :class:`ChunkMap`, kept per
  process for each version of a file), reads the compressed bytes with ``os.preadv`` and
  decompresses them with ``numcodecs``, both of which release the GIL, straight into the
  caller's output array where the chunk is contiguous there. A repeated small read of a known
  file needs no HDF5 call at all;
- writing, it compresses chunks with ``numcodecs`` and stores them with
  :meth:`h5py.h5d.DatasetID.write_direct_chunk`. The bytes are what the HDF5 filter would have
  stored, so every Blosc reader (h5py with hdf5plugin, PyTables, the original ``split_dataset``)
  reads them.

Anything else (other or more filters, byte-swapped or non-native types, unallocated chunks,
a Blosc build without the chunk's codec) is not handled here: :func:`read_chunks` returns
``False`` and the caller reads through h5py, which then also reports damaged data.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections import OrderedDict
from dataclasses import dataclass
from itertools import product
from typing import Any, NamedTuple

import h5py
import numpy as np
from numcodecs import blosc

from splitds_dask._format.geometry import split_slice
from splitds_dask._storage.checksums import (
    Checksums,
    checksum,
    expected_checksums,
    mismatch,
    verifying,
)
from splitds_dask._storage.filters import BLOSC_COMPRESSORS, BLOSC_FILTER
from splitds_dask._threads import map_in_pool

__all__ = [
    "BLOSC_FILTER",
    "CHUNK_MAPS",
    "BloscOptions",
    "ChunkError",
    "ChunkMap",
    "blosc_filter_options",
    "read_chunks",
    "write_blosc_chunks",
]

# Blosc 1 frame header: version, codec version, flags, typesize, then nbytes, blocksize and
# cbytes as little-endian int32.
_HEADER = struct.Struct("<BBBBiii")

# The compressors the fast path handles, by the code the filter options store: numcodecs' Blosc
# has no snappy.
_CNAMES = {code: name for code, name in enumerate(BLOSC_COMPRESSORS) if name != "snappy"}


class _NotHandled(Exception):
    """This chunk or dataset is for h5py's own filter pipeline."""


class ChunkError(Exception):
    """One stored chunk is inconsistent (its index entry, header or bytes): never read.

    Raised by the fast path, caught by the block-file reader, which reports it as a
    :class:`~splitds_dask.BlockError` naming the file and the block.
    """

    def __init__(self, *, number: int, offset: int, size: int, problem: str) -> None:
        super().__init__(f"chunk {number} ({size} bytes at offset {offset}): {problem}")
        self.number = number
        self.offset = offset
        self.size = size
        self.problem = problem


def _native_view(stored: np.dtype, out: np.ndarray) -> np.ndarray | None:
    """``out`` viewed with the in-file item layout ``stored``, or None if they differ."""
    if out.dtype == bool:
        return out.view(np.uint8) if stored.itemsize == 1 else None
    return out if stored == out.dtype else None


def _is_blosc_only(dset: h5py.Dataset) -> bool:
    if dset.chunks is None:
        return False
    plist = dset.id.get_create_plist()
    return plist.get_nfilters() == 1 and plist.get_filter(0)[0] == BLOSC_FILTER


def _decompress_chunk(raw: memoryview, mask: int, target: np.ndarray) -> None:
    """Decompress one stored chunk into the C-contiguous ``target`` (exactly one chunk)."""
    if mask & 1:  # Blosc skipped (an optional filter that could not shrink the chunk)
        if len(raw) != target.nbytes:
            raise _NotHandled
        target.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
        return
    if len(raw) < _HEADER.size:
        raise _NotHandled
    _, _, _, _, nbytes, _, cbytes = _HEADER.unpack_from(raw)
    if nbytes != target.nbytes or cbytes != len(raw):
        raise _NotHandled  # damaged or foreign: let HDF5 judge it
    try:
        blosc.decompress(raw, target)
    except RuntimeError:  # a codec this Blosc build lacks, or damaged data
        raise _NotHandled from None


@dataclass(frozen=True)
class ChunkMap:
    """Where the Blosc chunks of one block file's array lie: all a read needs from HDF5.

    ``offsets``, ``sizes`` and ``masks`` are indexed by chunk number (C order over the chunk
    grid); an offset of -1 is a chunk never written. ``checksums`` are the chunks' recorded
    CRC32C (see :mod:`splitds_dask._storage.checksums`), None for a block without any.
    """

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype  # the stored items as h5py reports them (a PyTables bool bitfield is uint8)
    values: np.dtype  # what they mean (bool for that bitfield)
    chunk_shape: tuple[int, ...]
    offsets: np.ndarray
    sizes: np.ndarray
    masks: np.ndarray
    checksums: Checksums | None = None

    @classmethod
    def of(cls, dset: h5py.Dataset, values: np.dtype) -> ChunkMap | None:
        """The map of a chunked, Blosc-only array of native byte order, else None."""
        if not _is_blosc_only(dset) or dset.dtype.newbyteorder("=") != dset.dtype:
            return None
        chunk_shape = tuple(dset.chunks)
        grid = tuple(-(-n // c) for n, c in zip(dset.shape, chunk_shape, strict=True))
        offsets = np.full(grid, -1, dtype=np.int64)
        sizes = np.zeros(grid, dtype=np.int64)
        masks = np.zeros(grid, dtype=np.uint32)

        def visit(info: Any) -> None:
            k = tuple(o // c for o, c in zip(info.chunk_offset, chunk_shape, strict=True))
            offsets[k], sizes[k], masks[k] = info.byte_offset, info.size, info.filter_mask

        dsid = dset.id
        if hasattr(dsid, "chunk_iter"):  # one walk of the chunk index (HDF5 >= 1.12.3)
            dsid.chunk_iter(visit)
        else:
            for i in range(dsid.get_num_chunks()):
                visit(dsid.get_chunk_info(i))
        return cls(
            dset.name.lstrip("/"),
            tuple(dset.shape),
            dset.dtype,
            np.dtype(values),
            chunk_shape,
            offsets.reshape(-1),
            sizes.reshape(-1),
            masks.reshape(-1),
            expected_checksums(dset),
        )

    @property
    def n_chunks(self) -> int:
        return len(self.offsets)

    @property
    def strides(self) -> tuple[int, ...]:
        """Chunk-number step of one chunk along each axis (C order)."""
        grid = [-(-n // c) for n, c in zip(self.shape, self.chunk_shape, strict=True)]
        return tuple(math.prod(grid[axis + 1 :]) for axis in range(len(grid)))


class _ChunkMapCache:
    """The chunk maps of recently read files, keyed by path, array name and file version.

    A version is the file's device, inode, modification time and size: a block replaced by
    rename or rewritten in place gets a new map. Bounded in files and in chunks.
    """

    def __init__(self, max_files: int = 1024, max_chunks: int = 1 << 22) -> None:
        self._maps: OrderedDict[tuple[Any, ...], ChunkMap] = OrderedDict()
        self._chunks = 0
        self._max_files = max_files
        self._max_chunks = max_chunks
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> ChunkMap | None:
        with self._lock:
            found = self._maps.get(key)
            if found is not None:
                self._maps.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], chunk_map: ChunkMap) -> None:
        with self._lock:
            if key in self._maps:
                return
            self._maps[key] = chunk_map
            self._chunks += chunk_map.n_chunks
            while len(self._maps) > self._max_files or self._chunks > self._max_chunks:
                _, dropped = self._maps.popitem(last=False)
                self._chunks -= dropped.n_chunks

    def clear(self) -> None:
        with self._lock:
            self._maps.clear()
            self._chunks = 0


CHUNK_MAPS = _ChunkMapCache()


def file_version(stat: os.stat_result) -> tuple[int, int, int, int]:
    return (stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)


class _AxisPart(NamedTuple):
    """What a selection takes from one chunk along one axis."""

    chunk: int  # the chunk's index along the axis
    region: slice  # where its selected items go in the output
    local: slice  # which of its items are selected
    whole: bool  # all of them, in order


class _Part(NamedTuple):
    """What a selection takes from one chunk."""

    axes: tuple[_AxisPart, ...]
    region: tuple[slice, ...]  # where it goes in the output
    local: tuple[slice, ...] | None  # what to keep of the chunk; None for all of it


class StoredChunk(NamedTuple):
    """Where one chunk of a read lies in the file, and which part of the read it serves."""

    offset: int
    size: int
    filter_mask: int  # bit 0 set: the Blosc filter was skipped for this chunk
    part: int  # the index of its _Part in the read's plan
    number: int  # the chunk's number in the chunk grid (C order)


def _plan(
    source: tuple[slice, ...], dest: tuple[slice, ...], chunk_shape: tuple[int, ...]
) -> list[_Part]:
    """The chunks ``source`` touches, where their selected parts go, and what to keep of them."""
    per_axis = []
    for s, d, c in zip(source, dest, chunk_shape, strict=True):
        per_axis.append(
            [
                _AxisPart(
                    k,
                    slice(d.start + j.start, d.start + j.stop),
                    local,
                    local.stop - local.start == c and local.step == 1,
                )
                for k, local, j in split_slice(s.start, s.stop, s.step, c)
            ]
        )
    return [
        _Part(
            axes,
            tuple(a.region for a in axes),
            None if all(a.whole for a in axes) else tuple(a.local for a in axes),
        )
        for axes in product(*per_axis)
    ]


# Chunks stored at most this far apart are fetched by one read, up to _MAX_RUN bytes at a time,
# into a buffer each thread keeps: a fresh buffer per read would page-fault on every use.
_MAX_GAP = 1 << 16
_MAX_RUN = 1 << 23
_buffers = threading.local()
_HAVE_PREADV = hasattr(os, "preadv")


def _read_run(fd: int, start: int, length: int) -> memoryview:
    """``length`` bytes of the file at ``start``, in this thread's reused buffer."""
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < length:
        buffer = _buffers.buffer = bytearray(max(length, _MAX_RUN))
    view = memoryview(buffer)[:length]
    if os.preadv(fd, [view], start) != length:
        raise _NotHandled  # the file is shorter than its chunk index says
    return view


def _runs(stored: list[StoredChunk]) -> list[list[StoredChunk]]:
    """Group the chunks by nearness in the file, in file order."""
    runs: list[list[StoredChunk]] = []
    for chunk in sorted(stored):
        if runs:
            first, last = runs[-1][0], runs[-1][-1]
            end = last.offset + last.size
            if (
                chunk.offset - end <= _MAX_GAP
                and chunk.offset + chunk.size - first.offset <= _MAX_RUN
            ):
                runs[-1].append(chunk)
                continue
        runs.append([chunk])
    return runs


def read_chunks(
    fd: int,
    chunk_map: ChunkMap,
    source: tuple[slice, ...],
    out: np.ndarray,
    dest: tuple[slice, ...],
) -> bool:
    """Read ``source`` of the mapped array, from the open file ``fd``, into ``out[dest]``.

    Returns
    -------
    bool
        Whether the region was read. ``False`` means one of its chunks is not plain Blosc or was
        never written, or this system has no ``os.preadv`` (Windows); ``out[dest]`` may then
        hold partial data and must be read through h5py.
    """
    target = _native_view(chunk_map.dtype, out)
    if target is None or not _HAVE_PREADV:
        return False
    chunk_shape = chunk_map.chunk_shape
    strides = chunk_map.strides
    stored = []
    plan = _plan(source, dest, chunk_shape)
    for i, part in enumerate(plan):
        number = sum(a.chunk * stride for a, stride in zip(part.axes, strides, strict=True))
        offset = int(chunk_map.offsets[number])
        if offset < 0:
            return False  # never written: HDF5 supplies the fill value
        stored.append(
            StoredChunk(
                offset, int(chunk_map.sizes[number]), int(chunk_map.masks[number]), i, number
            )
        )
    sums = chunk_map.checksums if chunk_map.checksums is not None and verifying() else None
    groups = _groups(stored)
    if len(groups) == 1:
        return _read_group(fd, groups[0], plan, target, chunk_shape, sums)
    n = len(groups)
    return all(
        map_in_pool(
            _read_group, [fd] * n, groups, [plan] * n, [target] * n, [chunk_shape] * n, [sums] * n
        )
    )


# A read of at least this many compressed bytes, made by the main thread, is shared among the
# pool's threads: ds[t] of one 6 MB time point took 1.3-1.7 ms instead of 2.0-2.2 ms. Other
# threads (dask's workers, the pool itself) run beside work that keeps the cores busy already,
# and a threaded mean was no faster for sharing their reads.
_PARALLEL_BYTES = 1 << 20


def _groups(stored: list[StoredChunk]) -> list[list[StoredChunk]]:
    """``stored`` cut into one group of neighbouring chunks per pool thread, if worth it."""
    workers = min(len(stored), os.cpu_count() or 1)
    total = sum(chunk.size for chunk in stored)
    if (
        workers < 2
        or total < _PARALLEL_BYTES
        or threading.current_thread() is not threading.main_thread()
    ):
        return [stored]
    ordered = sorted(stored)
    step = -(-len(ordered) // workers)
    return [ordered[i : i + step] for i in range(0, len(ordered), step)]


def _read_group(
    fd: int,
    stored: list[StoredChunk],
    plan: list[_Part],
    target: np.ndarray,
    chunk_shape: tuple[int, ...],
    sums: Checksums | None = None,
) -> bool:
    """Read and decompress the chunks of ``stored`` into their regions of ``target``.

    With ``sums``, each chunk's bytes are checked against its CRC32C before decompressing.
    """
    scratch: np.ndarray | None = None
    try:
        for run in _runs(stored):
            start = run[0].offset
            data = _read_run(fd, start, run[-1].offset + run[-1].size - start)
            for chunk in run:
                offset, size, mask, i, _ = chunk
                raw = data[offset - start : offset - start + size]
                if sums is not None:
                    _check_checksum(sums, chunk, raw)
                _, region, local = plan[i]
                view = target[region]
                if local is None and view.flags.c_contiguous:
                    _decompress_chunk(raw, mask, view)
                    continue
                if scratch is None:
                    scratch = np.empty(chunk_shape, dtype=target.dtype)
                _decompress_chunk(raw, mask, scratch)
                view[...] = scratch if local is None else scratch[local]
    except _NotHandled:
        return False
    return True


def _check_checksum(sums: Checksums, chunk: StoredChunk, raw: memoryview) -> None:
    """Raise :class:`ChunkError` if ``raw``, the stored bytes of ``chunk``, fail their CRC32C."""
    problem = mismatch(
        sums, number=chunk.number, offset=chunk.offset, size=chunk.size, found=checksum(raw)
    )
    if problem is not None:
        raise ChunkError(number=chunk.number, offset=chunk.offset, size=chunk.size, problem=problem)


class BloscOptions(NamedTuple):
    """The settings of a dataset's Blosc filter, as numcodecs' ``blosc.compress`` takes them."""

    cname: str
    clevel: int
    shuffle: int


def blosc_filter_options(dset: h5py.Dataset) -> BloscOptions | None:
    """The options of a dataset whose only filter is Blosc, else None."""
    if not _is_blosc_only(dset):
        return None
    values = dset.id.get_create_plist().get_filter(0)[2]
    # hdf5-blosc's cd_values: [version, version, typesize, chunk bytes, clevel, shuffle, codec]
    if len(values) < 7 or values[6] not in _CNAMES:
        return None
    return BloscOptions(_CNAMES[values[6]], int(values[4]), int(values[5]))


def write_blosc_chunks(
    dset: h5py.Dataset, data: np.ndarray, *, checksums: list[int] | None = None
) -> bool:
    """Write all of ``data`` into the Blosc dataset ``dset`` chunk by chunk, compressing here.

    ``checksums``, if given, receives the CRC32C of each stored chunk, in C order of the grid.

    Returns
    -------
    bool
        Whether it was written; ``False`` if ``dset`` is not a plain Blosc dataset of
        ``data``'s layout (write through h5py then).
    """
    options = blosc_filter_options(dset)
    values = data.view(np.uint8) if data.dtype == bool else data
    if options is None or dset.shape != data.shape or _native_view(dset.dtype, data) is None:
        return False
    chunk_shape = dset.chunks
    dsid = dset.id
    padded = np.zeros(chunk_shape, dtype=values.dtype)
    for origin in product(*(range(0, n, c) for n, c in zip(data.shape, chunk_shape, strict=True))):
        part = values[tuple(slice(o, o + c) for o, c in zip(origin, chunk_shape, strict=True))]
        if part.shape != chunk_shape:
            # HDF5 stores edge chunks whole; the part outside the array is never read.
            padded[...] = 0
            padded[tuple(slice(0, n) for n in part.shape)] = part
            part = padded
        stored = blosc.compress(
            np.ascontiguousarray(part), options.cname.encode(), options.clevel, options.shuffle
        )
        dsid.write_direct_chunk(origin, stored)
        if checksums is not None:
            checksums.append(checksum(stored))
    return True

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
``False`` and the caller reads through h5py.

Every chunk of a mapped array is checked before a byte of it is decompressed, and a chunk that
fails is a :class:`ChunkError`, never handed to h5py: HDF5's Blosc filter trusts the sizes in a
chunk's header and reads past its end, returning wrong data or crashing the process. The map
itself refuses an index whose entries lie outside the file, overlap, or carry a filter mask no
writer sets (:class:`ChunkIndexError` for an index too large for its file); the header of each
chunk read must describe exactly that chunk, as the dataset's Blosc options made it, with a
block table pointing inside it, before ``numcodecs`` sees it.
"""

from __future__ import annotations

import math
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import pairwise, product
from typing import Any, NamedTuple

import h5py
import numpy as np
from h5py._objects import phil
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
    "BloscCodec",
    "BloscOptions",
    "ChecksumMismatch",
    "ChunkError",
    "ChunkIndexError",
    "ByteRange",
    "ChunkMap",
    "check_chunk",
    "blosc_filter_options",
    "read_chunks",
    "read_chunks_by_ranges",
    "write_blosc_chunks",
]

# Blosc 1 frame header: version, codec version, flags, typesize, then nbytes, blocksize and
# cbytes as little-endian int32. Unless the chunk is stored raw (flag 0x2), a table of one int32
# start offset per block follows it.
_HEADER = struct.Struct("<BBBBiii")
_FLAG_SHUFFLE, _FLAG_MEMCPYED, _FLAG_BITSHUFFLE = 0x1, 0x2, 0x4
# The shuffle flags a chunk carries, by the shuffle setting of the filter options.
_SHUFFLE_FLAGS = {0: 0, 1: _FLAG_SHUFFLE, 2: _FLAG_BITSHUFFLE}
# Header versions Blosc 1 writes (1 before its 1.0 release).
_VERSIONS = (1, 2)
# The compressor formats of the flags' top 3 bits; the filter options store a compressor code
# (blosclz, lz4, lz4hc, snappy, zlib, zstd), lz4hc sharing lz4's format.
_FORMATS = {0: "blosclz", 1: "lz4", 2: "snappy", 3: "zlib", 4: "zstd"}
_FORMAT_OF_CODE = {0: 0, 1: 1, 2: 1, 3: 2, 4: 3, 5: 4}
_AVAILABLE = set(blosc.list_compressors())
# c-blosc never adds more than this to what it compresses.
_MAX_OVERHEAD = 16
# No chunk index entry is smaller than this (an 8-byte address at the least): a file of n bytes
# cannot hold more than n / 8 chunks, whatever its chunk grid declares.
_MIN_ENTRY_BYTES = 8
# Chunk numbers are int64; a grid of more cells is refused before anything is allocated.
_MAX_GRID_CELLS = 1 << 62

# The compressors the fast path handles, by the code the filter options store: numcodecs' Blosc
# has no snappy.
_CNAMES = {code: name for code, name in enumerate(BLOSC_COMPRESSORS) if name != "snappy"}


class _NotHandled(Exception):
    """This chunk or dataset is for h5py's own filter pipeline."""


class _Damaged(Exception):
    """What is wrong with a chunk, before its number and place are attached."""

    def __init__(self, problem: str) -> None:
        super().__init__(problem)
        self.problem = problem


class ChunkIndexError(Exception):
    """The chunk index of an array cannot describe its file (e.g. more chunks than it holds)."""

    def __init__(self, problem: str) -> None:
        super().__init__(f"chunk index: {problem}")
        self.problem = problem


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


class ChecksumMismatch(ChunkError):
    """A chunk whose stored bytes differ from their recorded CRC32C."""


class BloscCodec(NamedTuple):
    """What the dataset's Blosc options say every compressed chunk's header holds."""

    typesize: int  # the header's typesize: the item size, or 1 for items over 255 bytes
    shuffle_flags: int | None  # the header's shuffle flags; None if the options do not say
    compressor: int | None  # the header's compressor format; None if the options do not say


def _codec(dset: h5py.Dataset) -> BloscCodec:
    values = dset.id.get_create_plist().get_filter(0)[2]
    # hdf5-blosc's cd_values: [version, version, typesize, chunk bytes, clevel, shuffle, codec]
    shuffle = _SHUFFLE_FLAGS.get(int(values[5])) if len(values) > 5 else None
    compressor = _FORMAT_OF_CODE.get(int(values[6])) if len(values) > 6 else None
    itemsize = dset.dtype.itemsize
    return BloscCodec(itemsize if itemsize <= 255 else 1, shuffle, compressor)


def check_chunk(raw: bytes | memoryview, *, nbytes: int, codec: BloscCodec) -> None:
    """Check that ``raw`` is a Blosc 1 chunk of ``nbytes`` bytes that is safe to decompress.

    Everything Blosc reads before it trusts its input is checked: the header's version, flags,
    sizes and item size, and the table of block starts, which must lie inside ``raw``. Raises
    :class:`_Damaged` naming the first problem, or :class:`_NotHandled` for a compressor this
    Blosc build lacks (the chunk is otherwise sound: h5py's filter may read it).
    """
    size = len(raw)
    if size < _HEADER.size:
        raise _Damaged(f"{size} bytes cannot hold a Blosc header ({_HEADER.size} bytes)")
    version, _, flags, typesize, header_nbytes, blocksize, cbytes = _HEADER.unpack_from(raw)
    if version not in _VERSIONS:
        raise _Damaged(f"Blosc header version {version} (Blosc 1 writes {_VERSIONS})")
    if cbytes != size:
        raise _Damaged(f"the Blosc header says {cbytes} compressed bytes, the index {size}")
    if header_nbytes != nbytes:
        raise _Damaged(f"the Blosc header says {header_nbytes} bytes, the chunk holds {nbytes}")
    if typesize != codec.typesize:
        raise _Damaged(f"Blosc item size {typesize}, the array's is {codec.typesize}")
    if not 0 < blocksize <= nbytes:
        raise _Damaged(f"Blosc block size {blocksize} outside 1..{nbytes}")
    shuffle = flags & (_FLAG_SHUFFLE | _FLAG_BITSHUFFLE)
    if shuffle == _FLAG_SHUFFLE | _FLAG_BITSHUFFLE or (
        codec.shuffle_flags is not None and shuffle != codec.shuffle_flags
    ):
        raise _Damaged(f"Blosc flags {flags:#04x} name a shuffle the array's options do not")
    compressor = flags >> 5
    if compressor not in _FORMATS or (
        codec.compressor is not None and compressor != codec.compressor
    ):
        raise _Damaged(f"Blosc flags {flags:#04x} name a compressor the array's options do not")
    if flags & _FLAG_MEMCPYED:
        if cbytes != nbytes + _MAX_OVERHEAD:
            raise _Damaged(f"a raw Blosc chunk of {nbytes} bytes stored in {cbytes}")
        return
    if cbytes > nbytes + _MAX_OVERHEAD:
        raise _Damaged(f"{cbytes} compressed bytes for {nbytes} (Blosc adds at most 16)")
    if _FORMATS[compressor] not in _AVAILABLE:
        raise _NotHandled
    nblocks = -(-nbytes // blocksize)
    table_end = _HEADER.size + 4 * nblocks
    if table_end > cbytes:
        raise _Damaged(f"{nblocks} Blosc block starts do not fit in {cbytes} bytes")
    starts = np.frombuffer(raw, "<i4", count=nblocks, offset=_HEADER.size)
    if starts.min() < table_end or starts.max() > cbytes - 4:
        raise _Damaged(f"a Blosc block starts outside {table_end}..{cbytes - 4}")
    if nblocks > 1 and len(np.unique(starts)) != nblocks:
        raise _Damaged("two Blosc blocks start at the same byte")


def _decompress_chunk(
    raw: memoryview,
    mask: int,
    target: np.ndarray,
    codec: BloscCodec,
    check_sum: Callable[[], None] | None = None,
) -> None:
    """Decompress one stored chunk into the C-contiguous ``target`` (exactly one chunk).

    The index entry was checked when the map was made: a chunk with the filter skipped holds
    exactly ``target.nbytes`` bytes. ``check_sum`` runs after the header's checks, so that a
    damaged header is reported as such rather than as a checksum mismatch.
    """
    if mask & 1:  # Blosc skipped (an optional filter that could not shrink the chunk)
        if check_sum is not None:
            check_sum()
        target.reshape(-1).view(np.uint8)[:] = np.frombuffer(raw, np.uint8)
        return
    check_chunk(raw, nbytes=target.nbytes, codec=codec)
    if check_sum is not None:
        check_sum()
    try:
        blosc.decompress(raw, target)
    except (RuntimeError, ValueError) as exc:
        raise _Damaged(f"does not decompress ({exc})") from None


class _Entry(NamedTuple):
    """One chunk as the index lists it."""

    number: int
    offset: int
    size: int
    mask: int


@dataclass(frozen=True)
class ChunkMap:
    """Where the Blosc chunks of one block file's array lie: all a read needs from HDF5.

    ``offsets``, ``sizes`` and ``masks`` describe the stored chunks; ``numbers`` holds their
    chunk numbers (C order over the chunk grid), ascending, or is None when every chunk is
    stored and the arrays are indexed by chunk number. ``checksums`` are the chunks' recorded
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
    numbers: np.ndarray | None = None
    codec: BloscCodec | None = None
    checksums: Checksums | None = None

    @classmethod
    def of(cls, dset: h5py.Dataset, values: np.dtype) -> ChunkMap | None:
        """The map of a chunked, Blosc-only array of native byte order, else None.

        Raises
        ------
        ChunkIndexError
            The index lists more chunks than the file could hold.
        ChunkError
            An entry lies outside the array or the file, overlaps another, or is inconsistent
            with its filter mask.
        """
        if not _is_blosc_only(dset) or dset.dtype.newbyteorder("=") != dset.dtype:
            return None
        if dset.file.userblock_size:  # chunk addresses would count from the user block's end
            return None
        chunk_shape = tuple(dset.chunks)
        grid = tuple(-(-n // c) for n, c in zip(dset.shape, chunk_shape, strict=True))
        cells = math.prod(grid)
        if cells > _MAX_GRID_CELLS:
            raise ChunkIndexError(f"a grid of {cells} chunks is more than this reader handles")
        file_size = _file_size(dset)
        dsid = dset.id
        count = dsid.get_num_chunks()
        if count * _MIN_ENTRY_BYTES > file_size:
            raise ChunkIndexError(f"{count} chunks listed in a file of {file_size} bytes")
        strides = _grid_strides(grid)
        entries: list[_Entry] = []
        outside: list[_Entry] = []

        def visit(info: Any) -> None:
            where = tuple(info.chunk_offset)
            number = sum(o // c * s for o, c, s in zip(where, chunk_shape, strides, strict=True))
            entry = _Entry(number, int(info.byte_offset), int(info.size), int(info.filter_mask))
            entries.append(entry)
            if any(
                o % c or not 0 <= o < n
                for o, c, n in zip(where, chunk_shape, dset.shape, strict=True)
            ):
                outside.append(entry)

        if hasattr(dsid, "chunk_iter"):  # one walk of the chunk index (HDF5 >= 1.12.3)
            dsid.chunk_iter(visit)
        else:
            for i in range(count):
                visit(dsid.get_chunk_info(i))
        if outside:
            raise _error(outside[0], "lies outside the array's chunk grid")
        entries.sort()
        chunk_bytes = math.prod(chunk_shape) * dset.dtype.itemsize
        _check_entries(entries, file_size, chunk_bytes)
        numbers = np.array([e.number for e in entries], np.int64)
        dense = len(entries) == cells  # no duplicates (checked): every chunk, in number order
        return cls(
            dset.name.lstrip("/"),
            tuple(dset.shape),
            dset.dtype,
            np.dtype(values),
            chunk_shape,
            np.array([e.offset for e in entries], np.int64),
            np.array([e.size for e in entries], np.int64),
            np.array([e.mask for e in entries], np.uint32),
            None if dense else numbers,
            _codec(dset),
            expected_checksums(dset),
        )

    @classmethod
    def checked(
        cls,
        *,
        name: str,
        shape: tuple[int, ...],
        dtype: np.dtype,
        values: np.dtype,
        chunk_shape: tuple[int, ...],
        offsets: np.ndarray,
        sizes: np.ndarray,
        masks: np.ndarray,
        numbers: np.ndarray | None,
        codec: BloscCodec,
        checksums: Checksums | None,
        file_size: int,
    ) -> ChunkMap:
        """A map from its parts (as a stored index of chunk maps holds them), checked as
        :meth:`of` checks what HDF5 lists: chunks inside the grid, unique, apart, inside a file
        of ``file_size`` bytes, with a filter mask and size a writer makes; the codec and the
        types those of a Blosc array of native byte order.

        Raises
        ------
        ChunkIndexError, ChunkError, ValueError
            What is wrong with the parts.
        """
        if dtype.kind not in "biufc" or dtype.fields is not None or dtype.subdtype is not None:
            raise ValueError(f"dtype {dtype} is not one of a Blosc array's fixed-size numbers")
        if dtype.newbyteorder("=") != dtype:
            raise ValueError(f"dtype {dtype} is not of native byte order")
        if values != dtype and not (values == np.dtype(bool) and dtype.itemsize == 1):
            raise ValueError(f"values of dtype {values} stored as {dtype}")
        if len(shape) != len(chunk_shape) or not shape:
            raise ValueError(f"chunk shape {chunk_shape} for shape {shape}")
        if any(n < 0 for n in shape) or any(c <= 0 for c in chunk_shape):
            raise ValueError(f"chunk shape {chunk_shape} for shape {shape}")
        expected = BloscCodec(dtype.itemsize if dtype.itemsize <= 255 else 1, None, None)
        if (
            codec.typesize != expected.typesize
            or codec.shuffle_flags not in (None, *_SHUFFLE_FLAGS.values())
            or (codec.compressor is not None and codec.compressor not in _FORMATS)
        ):
            raise ValueError(f"Blosc options {codec} do not fit dtype {dtype}")
        grid = tuple(-(-n // c) for n, c in zip(shape, chunk_shape, strict=True))
        cells = math.prod(grid)
        if cells > _MAX_GRID_CELLS:
            raise ChunkIndexError(f"a grid of {cells} chunks is more than this reader handles")
        count = len(offsets)
        if not len(sizes) == len(masks) == count or (numbers is not None and len(numbers) != count):
            raise ValueError("the chunk arrays differ in length")
        if count * _MIN_ENTRY_BYTES > file_size:
            raise ChunkIndexError(f"{count} chunks listed in a file of {file_size} bytes")
        listed = np.arange(count, dtype=np.int64) if numbers is None else numbers
        if numbers is None and count != cells:
            raise ValueError(f"{count} chunks listed without numbers in a grid of {cells}")
        if count and (int(listed.min()) < 0 or int(listed.max()) >= cells):
            raise ValueError(f"a chunk number lies outside the grid of {cells} chunks")
        if count > 1 and not bool(np.all(np.diff(listed) > 0)):
            raise ValueError("the chunk numbers are not strictly ascending")
        if numbers is not None and count == cells:
            numbers = None  # every chunk, in number order (as :meth:`of` keeps it)
        entries = [
            _Entry(int(n), int(o), int(s), int(m))
            for n, o, s, m in zip(listed, offsets, sizes, masks, strict=True)
        ]
        _check_entries(entries, file_size, math.prod(chunk_shape) * dtype.itemsize)
        if checksums is not None and checksums.damaged is None and len(checksums.crc32c) != cells:
            raise ValueError(f"{len(checksums.crc32c)} checksums for {cells} chunks")
        return cls(
            name,
            tuple(shape),
            dtype,
            values,
            tuple(chunk_shape),
            np.asarray(offsets, np.int64),
            np.asarray(sizes, np.int64),
            np.asarray(masks, np.uint32),
            None if numbers is None else np.asarray(numbers, np.int64),
            codec,
            checksums,
        )

    @property
    def n_chunks(self) -> int:
        """The number of stored chunks."""
        return len(self.offsets)

    @property
    def strides(self) -> tuple[int, ...]:
        """Chunk-number step of one chunk along each axis (C order)."""
        return _grid_strides(
            [-(-n // c) for n, c in zip(self.shape, self.chunk_shape, strict=True)]
        )

    def find(self, number: int) -> int:
        """Where chunk ``number`` is in ``offsets``, ``sizes`` and ``masks``; -1 if not stored."""
        if self.numbers is None:
            return number
        i = int(np.searchsorted(self.numbers, number))
        return i if i < len(self.numbers) and self.numbers[i] == number else -1


def _grid_strides(grid: Sequence[int]) -> tuple[int, ...]:
    return tuple(math.prod(grid[axis + 1 :]) for axis in range(len(grid)))


def _file_size(dset: h5py.Dataset) -> int:
    try:
        return os.fstat(dset.file.id.get_vfd_handle()).st_size
    except (OSError, RuntimeError, TypeError, ValueError):  # a driver without a descriptor
        return int(dset.file.id.get_filesize())


def _error(entry: _Entry | StoredChunk, problem: str) -> ChunkError:
    return ChunkError(number=entry.number, offset=entry.offset, size=entry.size, problem=problem)


def _check_entries(entries: list[_Entry], file_size: int, chunk_bytes: int) -> None:
    """Raise a :class:`ChunkError` for the first index entry no sound file holds.

    ``entries`` are sorted by chunk number. Each must lie inside the file, after its 8-byte
    signature, and apart from every other; its mask must be 0 (Blosc applied: room for at least
    a header and at most what Blosc ever makes of ``chunk_bytes``) or 1 (Blosc skipped: exactly
    the chunk's bytes).
    """
    for previous, entry in pairwise(entries):
        if previous.number == entry.number:
            raise _error(entry, f"is listed twice (also at offset {previous.offset})")
    for entry in entries:
        offset, size, mask = entry.offset, entry.size, entry.mask
        if size <= 0:
            raise _error(entry, "is empty")
        if offset < 8 or size > file_size - offset:
            raise _error(entry, f"lies outside the file ({file_size} bytes)")
        if mask == 1:
            if size != chunk_bytes:
                raise _error(entry, f"stored without Blosc but not in {chunk_bytes} bytes")
        elif mask != 0:
            raise _error(entry, f"filter mask {mask:#x} (only the Blosc filter's bit may be set)")
        elif not _HEADER.size <= size <= chunk_bytes + _MAX_OVERHEAD:
            raise _error(
                entry,
                f"Blosc makes {_HEADER.size}..{chunk_bytes + _MAX_OVERHEAD} bytes of a "
                f"{chunk_bytes}-byte chunk",
            )
    by_offset = sorted(entries, key=lambda e: e.offset)
    for previous, entry in pairwise(by_offset):
        if entry.offset < previous.offset + previous.size:
            raise _error(entry, f"overlaps chunk {previous.number}")


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


def _read_run(fd: int, run: list[StoredChunk]) -> memoryview:
    """The bytes of ``run``'s chunks, in this thread's reused buffer."""
    start = run[0].offset
    length = run[-1].offset + run[-1].size - start
    buffer = getattr(_buffers, "buffer", None)
    if buffer is None or len(buffer) < length:
        buffer = _buffers.buffer = bytearray(max(length, _MAX_RUN))
    view = memoryview(buffer)[:length]
    if os.preadv(fd, [view], start) != length:
        raise _error(run[-1], "the file ends before the chunk does")
    return view


def _runs(
    stored: list[StoredChunk], *, max_gap: int = _MAX_GAP, max_run: int = _MAX_RUN
) -> list[list[StoredChunk]]:
    """Group the chunks by nearness in the file, in file order."""
    runs: list[list[StoredChunk]] = []
    for chunk in sorted(stored):
        if runs:
            first, last = runs[-1][0], runs[-1][-1]
            end = last.offset + last.size
            if (
                chunk.offset - end <= max_gap
                and chunk.offset + chunk.size - first.offset <= max_run
            ):
                runs[-1].append(chunk)
                continue
        runs.append([chunk])
    return runs


class _Planned(NamedTuple):
    """What a read needs: the chunks' parts of the output, and the stored ones among them."""

    plan: list[_Part]
    stored: list[StoredChunk]
    complete: bool  # every chunk of the region is stored
    target: np.ndarray  # the output, viewed as the stored items
    codec: BloscCodec
    sums: Checksums | None


def _planned(
    chunk_map: ChunkMap, source: tuple[slice, ...], out: np.ndarray, dest: tuple[slice, ...]
) -> _Planned | None:
    """The plan of reading ``source`` into ``out[dest]``; None where the map cannot serve it."""
    target = _native_view(chunk_map.dtype, out)
    if target is None:
        return None
    strides = chunk_map.strides
    stored = []
    complete = True
    plan = _plan(source, dest, chunk_map.chunk_shape)
    for i, part in enumerate(plan):
        number = sum(a.chunk * stride for a, stride in zip(part.axes, strides, strict=True))
        index = chunk_map.find(number)
        if index < 0:
            # Never written: HDF5 supplies the fill value. The stored chunks are still read
            # here, so that h5py never meets one that is damaged.
            complete = False
            continue
        stored.append(
            StoredChunk(
                int(chunk_map.offsets[index]),
                int(chunk_map.sizes[index]),
                int(chunk_map.masks[index]),
                i,
                number,
            )
        )
    codec = chunk_map.codec or BloscCodec(chunk_map.dtype.itemsize, None, None)
    sums = chunk_map.checksums if chunk_map.checksums is not None and verifying() else None
    return _Planned(plan, stored, complete, target, codec, sums)


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
        Whether the region was read. ``False`` means one of its chunks was never written or
        uses a codec this Blosc lacks, or this system has no ``os.preadv`` (Windows);
        ``out[dest]`` may then hold partial data and must be read through h5py. Every stored
        chunk of the region was checked (and decompressed) first.

    Raises
    ------
    ChunkError
        A chunk of the region is inconsistent: nothing may read it.
    """
    planned = _planned(chunk_map, source, out, dest) if _HAVE_PREADV else None
    if planned is None:
        return False
    if not planned.stored:
        return planned.complete
    groups = _groups(planned.stored)
    n = len(groups)
    if n == 1:
        done = [_read_group(fd, groups[0], planned, chunk_map.chunk_shape)]
    else:
        done = map_in_pool(
            _read_group, [fd] * n, groups, [planned] * n, [chunk_map.chunk_shape] * n
        )
    return all(done) and planned.complete


class ByteRange(NamedTuple):
    """Bytes ``start`` to ``stop`` (excluded) of a file."""

    start: int
    stop: int


def read_chunks_by_ranges(
    fetch: Callable[[list[ByteRange]], Sequence[bytes]],
    chunk_map: ChunkMap,
    source: tuple[slice, ...],
    out: np.ndarray,
    dest: tuple[slice, ...],
    *,
    max_gap: int,
    max_run: int,
) -> bool:
    """:func:`read_chunks` for a file read by byte ranges (object storage, HTTP).

    The chunks are grouped into runs of neighbours (at most ``max_gap`` bytes apart, at most
    ``max_run`` bytes long), and ``fetch`` is called once with every run's range, so that it can
    have them all in flight at once; it returns their bytes in the same order.
    """
    planned = _planned(chunk_map, source, out, dest)
    if planned is None:
        return False
    if not planned.stored:
        return planned.complete
    runs = _runs(planned.stored, max_gap=max_gap, max_run=max_run)
    fetched = fetch([ByteRange(run[0].offset, run[-1].offset + run[-1].size) for run in runs])
    complete = planned.complete
    scratch = _Scratch(chunk_map.chunk_shape, planned.target.dtype)
    for run, data in zip(runs, fetched, strict=True):
        length = run[-1].offset + run[-1].size - run[0].offset
        if len(data) != length:
            raise _error(run[-1], "the file ends before the chunk does")
        complete &= _decode_run(memoryview(data), run, planned, scratch)
    return complete


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


class _Scratch:
    """A chunk-sized buffer, allocated when a chunk first needs one (not C-contiguous where it
    goes, or only partly selected)."""

    def __init__(self, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self._shape, self._dtype = shape, dtype
        self._array: np.ndarray | None = None

    def get(self) -> np.ndarray:
        if self._array is None:
            self._array = np.empty(self._shape, dtype=self._dtype)
        return self._array


def _read_group(
    fd: int, stored: list[StoredChunk], planned: _Planned, chunk_shape: tuple[int, ...]
) -> bool:
    """Read and decompress the chunks of ``stored`` into their regions of the output.

    Returns whether all were; every one is checked (against its CRC32C first, when recorded),
    so that h5py, reading what was not, never meets a damaged chunk.
    """
    scratch = _Scratch(chunk_shape, planned.target.dtype)
    complete = True
    for run in _runs(stored):
        complete &= _decode_run(_read_run(fd, run), run, planned, scratch)
    return complete


def _decode_run(
    data: memoryview, run: list[StoredChunk], planned: _Planned, scratch: _Scratch
) -> bool:
    """Decompress the chunks of ``run``, whose bytes are ``data``, into the output."""
    complete = True
    start = run[0].offset
    for chunk in run:
        raw = data[chunk.offset - start : chunk.offset - start + chunk.size]
        sums = planned.sums
        check_sum = None if sums is None else partial(_check_checksum, sums, chunk, raw)
        _, region, local = planned.plan[chunk.part]
        view = planned.target[region]
        try:
            if local is None and view.flags.c_contiguous:
                _decompress_chunk(raw, chunk.filter_mask, view, planned.codec, check_sum)
                continue
            buffer = scratch.get()
            _decompress_chunk(raw, chunk.filter_mask, buffer, planned.codec, check_sum)
        except _NotHandled:
            complete = False
            continue
        except _Damaged as exc:
            raise _error(chunk, exc.problem) from None
        view[...] = buffer if local is None else buffer[local]
    return complete


def _check_checksum(sums: Checksums, chunk: StoredChunk, raw: memoryview) -> None:
    """Raise :class:`ChunkError` if ``raw``, the stored bytes of ``chunk``, fail their CRC32C."""
    problem = mismatch(
        sums, number=chunk.number, offset=chunk.offset, size=chunk.size, found=checksum(raw)
    )
    if problem is not None:
        raise ChecksumMismatch(
            number=chunk.number, offset=chunk.offset, size=chunk.size, problem=problem
        )


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
        # Older h5py (3.8 to 3.11 seen) does not take its global lock here: two threads writing
        # at once crash HDF5 or fail in H5DOwrite_chunk. The lock is reentrant.
        with phil:
            dsid.write_direct_chunk(origin, stored)
        if checksums is not None:
            checksums.append(checksum(stored))
    return True

"""End-to-end checksums of block files: CRC32C of every stored chunk, recorded and checked.

Neither HDF5 nor Blosc checks what it reads here: a flipped byte inside a compressed chunk
usually decompresses into different values without any error. So every chunk is checksummed
*as stored* (the compressed bytes that ``os.preadv`` or :meth:`h5py.h5d.DatasetID.read_direct_chunk`
return) and the sum is checked before the bytes are decompressed.

Where the checksums live
------------------------
- Blocks written by this package carry them in the attribute :data:`ATTRIBUTE` of their array:
  one little-endian uint32 per chunk, in C order of the chunk grid (a contiguous array: one sum
  of its raw bytes). The attribute is written in the same atomic file as the block, so a block
  and its checksums are published together. An unknown attribute is ignored by other readers
  (PyTables, the original ``split_dataset``). An array of more than :data:`MAX_RECORDED_CHUNKS`
  chunks gets no attribute (HDF5 keeps attributes below 64 KiB in the object header); a block
  file holds about 1 MiB per chunk, so that is a block of more than 16 GB.
- Blocks written by other programs (sashimi, fimpy) have no attribute; ``splitds seal`` records
  their checksums in the sidecar :data:`MANIFEST_NAME` in the dataset folder, never touching
  the block files. The name matches neither ``*.h5`` nor ``*stack_metadata.json``, so neither
  the original package nor block discovery sees it. Per block file name it holds the file's
  size and ``mtime_ns`` when sealed, the array's name, and each chunk's byte offset, size and
  CRC32C (as base64 of little-endian arrays, to keep the file small). Readers load it lazily,
  once per process and manifest version (:func:`sealed_block`), so no dask task carries it.

What a read checks
------------------
Every chunk read with a recorded checksum is checked (the Blosc fast path checks every read:
a CRC32C runs at several GB/s, far faster than decompression; the h5py path checks each chunk
once per process and file version, as its bytes are read a second time). A mismatch is a
:class:`~splitds_dask.BlockError` naming the file, the block and the chunk. A block without
checksums reads as before.

A sealed block that changed since sealing is judged chunk by chunk, not by its ``mtime``: a
copy of a dataset gets new modification times but keeps every chunk where it was, and its
chunks still check. A chunk now stored at another offset or size than when sealed is an error
("changed since it was sealed"), as is a checksum mismatch; its message says whether the file's
size or modification time changed since sealing (re-run ``splitds seal`` after a deliberate
change). A process learns of a seal when it first reads a block (what it found is cached per
file version): one that read a block before it was sealed checks it from the block's next
version on, or in a new process.

Turning checks off
------------------
The dask configuration key :data:`CONFIG_KEY` (``splitds.checksums``) is ``"verify"`` (the
default) or ``"ignore"``; set it with ``dask.config.set({"splitds.checksums": "ignore"})`` or the
environment variable ``DASK_SPLITDS__CHECKSUMS=ignore`` (which also reaches the workers of a
distributed cluster started from that environment; ``dask.config.set`` in the client does not).
Writers always record checksums, and ``splitds verify`` always checks them.
"""

from __future__ import annotations

import base64
import json
import math
import os
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from itertools import product
from pathlib import Path
from typing import Any, NamedTuple

import crc32c as _crc32c
import dask.config
import h5py
import numpy as np
from h5py._objects import phil

from splitds_dask._errors import BlockError, SplitDatasetError

__all__ = [
    "ATTRIBUTE",
    "CONFIG_KEY",
    "MANIFEST_NAME",
    "MAX_RECORDED_CHUNKS",
    "Checksums",
    "Mismatch",
    "SealReport",
    "SealedBlock",
    "checksum",
    "expected_checksums",
    "mismatch",
    "record_checksums",
    "region_mismatch",
    "seal",
    "sealed_block",
    "stored_chunks",
    "verifying",
]

#: The array attribute holding one CRC32C per stored chunk.
ATTRIBUTE = "splitds_crc32c"
#: The sidecar file of ``splitds seal``, in the dataset folder.
MANIFEST_NAME = "splitds-checksums.json"
#: The dask configuration key: ``"verify"`` (default) or ``"ignore"``.
CONFIG_KEY = "splitds.checksums"
#: Arrays of more chunks than this get no checksum attribute (HDF5's 64 KiB attribute limit).
MAX_RECORDED_CHUNKS = 16_000

_MANIFEST_FORMAT = "splitds-checksums"
_MANIFEST_VERSION = 1
# Bytes read at a time when summing a contiguous array.
_PIECE = 16 << 20


# Buffers below this size are summed holding the GIL: for a chunk (tens of microseconds of
# work) giving the GIL up and taking it back among the threads that decompress cost more than
# the sum itself; a full read of 1 GB took 30% more CPU time than with checks off, against none.
_RELEASE_GIL_BYTES = 8 << 20


def checksum(data: Any, value: int = 0) -> int:
    """CRC32C of a bytes-like object (continuing from ``value``)."""
    size = data.nbytes if hasattr(data, "nbytes") else len(data)
    return int(_crc32c.crc32c(data, value, 1 if size >= _RELEASE_GIL_BYTES else 0))


def verifying() -> bool:
    """Whether reads check checksums (the dask configuration key :data:`CONFIG_KEY`)."""
    mode = dask.config.get(CONFIG_KEY, "verify")
    if mode == "verify":
        return True
    if mode == "ignore":
        return False
    raise ValueError(f"dask config {CONFIG_KEY!r} must be 'verify' or 'ignore', not {mode!r}")


@dataclass(frozen=True)
class Checksums:
    """The recorded checksums of one array, indexed by chunk number (C order of the grid).

    ``offsets`` and ``sizes`` are where each chunk lay when sealed (None for the attribute,
    which travels with the chunks); ``changed`` tells that the file's size or modification time
    differs from when it was sealed; ``damaged`` is why the checksums could not be read.
    """

    crc32c: np.ndarray
    offsets: np.ndarray | None = None
    sizes: np.ndarray | None = None
    changed: bool = False
    damaged: str | None = None


class Mismatch(NamedTuple):
    """A chunk whose stored bytes do not match its recorded checksum."""

    number: int
    offset: int
    size: int
    problem: str


def mismatch(
    checksums: Checksums, *, number: int, offset: int, size: int, found: int
) -> str | None:
    """What is wrong with chunk ``number``, stored at ``offset`` with CRC32C ``found``, or None."""
    if checksums.damaged is not None:
        return checksums.damaged
    if not 0 <= number < len(checksums.crc32c):
        return f"no checksum recorded for it ({len(checksums.crc32c)} recorded)"
    since = " (the file changed since it was sealed)" if checksums.changed else ""
    if checksums.offsets is not None and checksums.sizes is not None:
        sealed = (int(checksums.offsets[number]), int(checksums.sizes[number]))
        if sealed != (offset, size):
            return f"changed since it was sealed: sealed as {sealed[1]} bytes at offset {sealed[0]}"
    expected = int(checksums.crc32c[number])
    if found != expected:
        return f"CRC32C mismatch: stored 0x{expected:08x}, read 0x{found:08x}{since}"
    return None


def _n_chunks(dset: h5py.Dataset) -> int:
    if dset.chunks is None:
        return 1
    return math.prod(-(-n // c) for n, c in zip(dset.shape, dset.chunks, strict=True))


def _stat(dset: h5py.Dataset) -> os.stat_result | None:
    try:
        return os.fstat(dset.file.id.get_vfd_handle())
    except (OSError, ValueError, TypeError):
        return None


def expected_checksums(dset: h5py.Dataset) -> Checksums | None:
    """The checksums recorded for ``dset`` (its attribute, else the folder's seal), or None."""
    if ATTRIBUTE in dset.attrs:
        # Its type and shape first: a hostile file's attribute is never read unless it fits.
        attr = h5py.h5a.open(dset.id, ATTRIBUTE.encode())
        n = _n_chunks(dset)
        if attr.dtype.kind != "u" or attr.dtype.itemsize > 8 or attr.shape != (n,):
            return Checksums(
                np.zeros(0, np.uint32),
                damaged=f"the '{ATTRIBUTE}' attribute is damaged ({attr.dtype}, "
                f"shape {attr.shape}, for {n} chunks)",
            )
        return Checksums(np.asarray(dset.attrs[ATTRIBUTE]).astype(np.uint32))
    if dset.file.driver == "fileobj":  # a remote file: its name is no path to look beside
        return None
    path = Path(dset.file.filename)
    try:
        sealed = sealed_block(path)
    except ValueError as exc:
        return Checksums(np.zeros(0, np.uint32), damaged=str(exc))
    if sealed is None or sealed.key != dset.name.lstrip("/"):
        return None
    stat = _stat(dset)
    changed = stat is None or (stat.st_size, stat.st_mtime_ns) != (sealed.size, sealed.mtime_ns)
    return Checksums(sealed.crc32c, sealed.offsets, sealed.sizes, changed)


class StoredChunk(NamedTuple):
    """One stored chunk: its number (C order of the grid), place in the file and CRC32C."""

    number: int
    offset: int
    size: int
    crc32c: int


def _chunk_offsets(dset: h5py.Dataset) -> Iterator[tuple[tuple[int, ...], int, int]]:
    """(logical offset, byte offset, size) of every allocated chunk of ``dset``."""
    dsid = dset.id
    found: list[tuple[tuple[int, ...], int, int]] = []
    if hasattr(dsid, "chunk_iter"):
        dsid.chunk_iter(lambda i: found.append((tuple(i.chunk_offset), i.byte_offset, i.size)))
    else:
        for k in range(dsid.get_num_chunks()):
            i = dsid.get_chunk_info(k)
            found.append((tuple(i.chunk_offset), i.byte_offset, i.size))
    return iter(found)


def stored_chunks(dset: h5py.Dataset) -> Iterator[StoredChunk]:
    """Every allocated chunk of ``dset`` with the CRC32C of its stored bytes.

    A contiguous array is one chunk, summed in pieces (it may be larger than memory).

    Chunk bytes come from :meth:`~h5py.h5d.DatasetID.read_direct_chunk`, which also sees chunks
    of a file being written that HDF5 has not flushed yet.
    """
    dsid = dset.id
    if dset.chunks is None:
        offset = dsid.get_offset()
        size = dsid.get_storage_size()
        if offset is None or size == 0:
            return
        fd = dset.file.id.get_vfd_handle()
        value = 0
        for start in range(0, size, _PIECE):
            piece = os.pread(fd, min(_PIECE, size - start), offset + start)
            value = checksum(piece, value)
        yield StoredChunk(0, offset, size, value)
        return
    chunk_shape = dset.chunks
    grid = [-(-n // c) for n, c in zip(dset.shape, chunk_shape, strict=True)]
    strides = [math.prod(grid[axis + 1 :]) for axis in range(len(grid))]
    for origin, offset, size in _chunk_offsets(dset):
        number = sum(o // c * s for o, c, s in zip(origin, chunk_shape, strides, strict=True))
        with phil:  # older h5py does not take its global lock in read_direct_chunk
            _, data = dsid.read_direct_chunk(origin)
        yield StoredChunk(number, offset, size, checksum(data))


class _Table(NamedTuple):
    """Every chunk's place and checksum, by chunk number (offset -1: never written)."""

    offsets: np.ndarray
    sizes: np.ndarray
    crc32c: np.ndarray


def _table(dset: h5py.Dataset) -> _Table:
    n = _n_chunks(dset)
    offsets = np.full(n, -1, np.int64)
    sizes = np.zeros(n, np.int64)
    sums = np.zeros(n, np.uint32)
    for chunk in stored_chunks(dset):
        if 0 <= chunk.number < n:
            offsets[chunk.number] = chunk.offset
            sizes[chunk.number] = chunk.size
            sums[chunk.number] = chunk.crc32c
    return _Table(offsets, sizes, sums)


def record_checksums(dset: h5py.Dataset, data: np.ndarray, sums: Sequence[int] | None) -> None:
    """Store the checksums of the just-written array ``dset`` in its attribute.

    ``sums`` are the checksums of the chunks in C order, where the writer computed them (the
    Blosc writer does); otherwise they are computed from what HDF5 stored (``data``'s bytes for
    a contiguous array, each chunk's stored bytes after a flush for a chunked one).
    """
    if data.size == 0 or _n_chunks(dset) > MAX_RECORDED_CHUNKS:
        return
    if sums is None:
        if dset.chunks is None:
            sums = [checksum(np.ascontiguousarray(data).reshape(-1).view(np.uint8))]
        else:
            dset.file.flush()
            sums = _table(dset).crc32c.tolist()
    dset.attrs[ATTRIBUTE] = np.asarray(sums, dtype="<u4")


# ---------------------------------------------------------------------------------------------
# Checking reads made through h5py


class _Verified:
    """Per file version: the checksums found and the chunks already checked in this process."""

    def __init__(self, max_files: int = 1024) -> None:
        self._files: OrderedDict[tuple[Any, ...], tuple[Checksums | None, set[int]]] = OrderedDict()
        self._max_files = max_files
        self._lock = threading.Lock()

    def get(self, key: tuple[Any, ...]) -> tuple[Checksums | None, set[int]] | None:
        with self._lock:
            found = self._files.get(key)
            if found is not None:
                self._files.move_to_end(key)
            return found

    def put(self, key: tuple[Any, ...], value: tuple[Checksums | None, set[int]]) -> None:
        with self._lock:
            self._files[key] = value
            while len(self._files) > self._max_files:
                self._files.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._files.clear()


VERIFIED = _Verified()


def _touched(s: slice, c: int) -> Sequence[int]:
    """The chunk indices (chunks of ``c`` items) a positive-step slice touches."""
    step = s.step or 1
    if s.stop <= s.start:
        return ()
    last = s.start + (s.stop - s.start - 1) // step * step
    if step <= c:
        return range(s.start // c, last // c + 1)
    return sorted({i // c for i in range(s.start, last + 1, step)})


def region_mismatch(
    dset: h5py.Dataset, fd: int, version: tuple[Any, ...], source: tuple[slice, ...]
) -> Mismatch | None:
    """Check the chunks of ``dset`` that ``source`` touches, before h5py decodes them.

    Each chunk is checked once per process and file ``version`` (its bytes are read twice:
    here and by h5py). Returns the first chunk that fails, or None.
    """
    if not verifying():
        return None
    key = (dset.file.filename, dset.name, version)
    state = VERIFIED.get(key)
    if state is None:
        state = (expected_checksums(dset), set())
        VERIFIED.put(key, state)
    checksums, done = state
    if checksums is None:
        return None
    dsid = dset.id
    if dset.chunks is None:
        if 0 in done:
            return None
        chunk = next(stored_chunks(dset), None)
        if chunk is not None:
            problem = mismatch(
                checksums, number=0, offset=chunk.offset, size=chunk.size, found=chunk.crc32c
            )
            if problem is not None:
                return Mismatch(0, chunk.offset, chunk.size, problem)
        done.add(0)
        return None
    chunk_shape = dset.chunks
    grid = [-(-n // c) for n, c in zip(dset.shape, chunk_shape, strict=True)]
    strides = [math.prod(grid[axis + 1 :]) for axis in range(len(grid))]
    per_axis = [_touched(s, c) for s, c in zip(source, chunk_shape, strict=True)]
    for index in product(*per_axis):
        number = sum(k * s for k, s in zip(index, strides, strict=True))
        if number in done:
            continue
        origin = tuple(k * c for k, c in zip(index, chunk_shape, strict=True))
        info = dsid.get_chunk_info_by_coord(origin)
        if info.byte_offset is None:
            continue  # never written: HDF5 supplies the fill value
        data = os.pread(fd, info.size, info.byte_offset)
        problem = mismatch(
            checksums,
            number=number,
            offset=info.byte_offset,
            size=info.size,
            found=checksum(data),
        )
        if problem is not None:
            return Mismatch(number, info.byte_offset, info.size, problem)
        done.add(number)
    return None


def check_all(dset: h5py.Dataset) -> tuple[Checksums | None, int, list[Mismatch]]:
    """Check every stored chunk of ``dset``: (its checksums, chunks checked, mismatches)."""
    checksums = expected_checksums(dset)
    if checksums is None:
        return None, 0, []
    bad = []
    count = 0
    for chunk in stored_chunks(dset):
        count += 1
        problem = mismatch(
            checksums,
            number=chunk.number,
            offset=chunk.offset,
            size=chunk.size,
            found=chunk.crc32c,
        )
        if problem is not None:
            bad.append(Mismatch(chunk.number, chunk.offset, chunk.size, problem))
    return checksums, count, bad


# ---------------------------------------------------------------------------------------------
# The seal manifest


@dataclass(frozen=True)
class SealedBlock:
    """What ``splitds seal`` recorded about one block file."""

    key: str
    size: int
    mtime_ns: int
    offsets: np.ndarray
    sizes: np.ndarray
    crc32c: np.ndarray


def _encode(values: np.ndarray, dtype: str) -> str:
    return base64.b64encode(np.ascontiguousarray(values, dtype=dtype).tobytes()).decode("ascii")


def _decode(text: Any, dtype: str, n: int, where: str) -> np.ndarray:
    if not isinstance(text, str):
        raise ValueError(f"{where}: not a base64 string")  # noqa: TRY004 - one error for damage
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (ValueError, UnicodeEncodeError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    values = np.frombuffer(raw, dtype=dtype) if len(raw) % np.dtype(dtype).itemsize == 0 else None
    if values is None or len(values) != n:
        raise ValueError(f"{where}: expected {n} values")
    return values.astype(dtype[1:])


def _parse_manifest(path: Path, text: bytes) -> dict[str, SealedBlock]:
    try:
        doc = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ValueError(f"checksum manifest {path} is damaged: {exc}") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != _MANIFEST_FORMAT
        or doc.get("version") != _MANIFEST_VERSION
        or not isinstance(doc.get("blocks"), dict)
    ):
        raise ValueError(
            f"checksum manifest {path} is damaged: not a {_MANIFEST_FORMAT} "
            f"version {_MANIFEST_VERSION} file"
        )
    blocks = {}
    for name, entry in doc["blocks"].items():
        where = f"checksum manifest {path} is damaged: block {name!r}"
        try:
            n = int(entry["chunks"])
            blocks[name] = SealedBlock(
                str(entry["key"]),
                int(entry["size"]),
                int(entry["mtime_ns"]),
                _decode(entry["offsets"], "<i8", n, where),
                _decode(entry["sizes"], "<i8", n, where),
                _decode(entry["crc32c"], "<u4", n, where),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ValueError) and str(exc).startswith(where):
                raise
            raise ValueError(f"{where}: {type(exc).__name__}: {exc}") from None
    return blocks


_MANIFESTS: OrderedDict[tuple[Any, ...], dict[str, SealedBlock]] = OrderedDict()
_MANIFESTS_LOCK = threading.Lock()
_MAX_MANIFESTS = 16


def _load_manifest(folder: Path) -> dict[str, SealedBlock] | None:
    """The folder's manifest, parsed once per process and manifest version; None if absent."""
    path = folder / MANIFEST_NAME
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(f"checksum manifest {path} cannot be read: {exc}") from None
    try:
        stat = os.fstat(fd)
        key = (os.fspath(path), stat.st_dev, stat.st_ino, stat.st_mtime_ns, stat.st_size)
        # Parsing under the lock: the threads of one scheduler all start by reading blocks of
        # the same folder, and each would otherwise parse the manifest itself.
        with _MANIFESTS_LOCK:
            found = _MANIFESTS.get(key)
            if found is not None:
                return found
            with os.fdopen(os.dup(fd), "rb") as f:
                blocks = _parse_manifest(path, f.read())
            _MANIFESTS[key] = blocks
            while len(_MANIFESTS) > _MAX_MANIFESTS:
                _MANIFESTS.popitem(last=False)
    finally:
        os.close(fd)
    return blocks


def sealed_block(path: str | os.PathLike[str]) -> SealedBlock | None:
    """What the seal manifest beside the block file ``path`` records for it, or None.

    Raises
    ------
    ValueError
        The manifest exists but cannot be read or parsed.
    """
    path = Path(path)
    blocks = _load_manifest(path.parent)
    return None if blocks is None else blocks.get(path.name)


class SealReport(NamedTuple):
    """What :func:`seal` did, in block files."""

    sealed: int  # newly sealed (or re-sealed after a change)
    unchanged: int  # already sealed, unchanged since
    with_attribute: int  # written by this package: their checksums are in the file
    chunks: int  # chunks summed now
    manifest: Path | None  # the manifest written, or None if nothing changed


def _entry(sealed: SealedBlock) -> dict[str, Any]:
    return {
        "key": sealed.key,
        "size": sealed.size,
        "mtime_ns": sealed.mtime_ns,
        "chunks": len(sealed.crc32c),
        "offsets": _encode(sealed.offsets, "<i8"),
        "sizes": _encode(sealed.sizes, "<i8"),
        "crc32c": _encode(sealed.crc32c, "<u4"),
    }


def seal(
    folder: str | os.PathLike[str],
    names: Sequence[str],
    *,
    key: str | None,
    find_key: Callable[[h5py.File], str | None],
    locking: bool | str | None = None,
) -> SealReport:
    """Record the checksums of the block files ``names`` of ``folder`` that have none.

    Block files are only read (opened read-only by HDF5), never modified. Blocks already sealed
    and unchanged since (same size and modification time) are kept; the manifest is replaced
    atomically, and only when something changed.

    Parameters
    ----------
    folder, names
        The dataset folder and its block file names.
    key
        The array's name in the block files (None: ``find_key(file)`` finds it).
    find_key
        A function of an open :class:`h5py.File` giving its array's name, or None.
    locking
        Passed to :class:`h5py.File`.
    """
    from splitds_dask._storage.atomic import atomic_file, fsync_dir

    root = Path(folder)
    try:
        old = _load_manifest(root) or {}
    except ValueError as exc:
        raise SplitDatasetError(f"{exc} (delete it to seal again)") from None
    blocks: dict[str, SealedBlock] = {}
    sealed = unchanged = with_attribute = chunks = 0
    for name in names:
        path = root / name
        before = path.stat()
        previous = old.get(name)
        if previous is not None and (previous.size, previous.mtime_ns) == (
            before.st_size,
            before.st_mtime_ns,
        ):
            blocks[name] = previous
            unchanged += 1
            continue
        with h5py.File(path, "r", locking=locking) as f:
            array = key if key is not None and isinstance(f.get(key), h5py.Dataset) else None
            array = array or find_key(f)
            dset = f.get(array) if array is not None else None
            if not isinstance(dset, h5py.Dataset):
                keys = ", ".join(sorted(f.keys())) or "nothing"
                raise BlockError(f"{path}: no array to seal (the file holds: {keys})", path=path)
            if ATTRIBUTE in dset.attrs:
                with_attribute += 1
                continue
            table = _table(dset)
            name_in_file = dset.name.lstrip("/")
            after = os.fstat(f.id.get_vfd_handle())
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns):
            raise BlockError(f"{path} changed while it was being sealed", path=path)
        blocks[name] = SealedBlock(
            name_in_file,
            before.st_size,
            before.st_mtime_ns,
            table.offsets,
            table.sizes,
            table.crc32c,
        )
        chunks += int((table.offsets >= 0).sum())
        sealed += 1
    if set(blocks) == set(old) and sealed == 0:
        return SealReport(sealed, unchanged, with_attribute, chunks, None)
    doc = {
        "format": _MANIFEST_FORMAT,
        "version": _MANIFEST_VERSION,
        "blocks": {name: _entry(blocks[name]) for name in sorted(blocks)},
    }
    target = root / MANIFEST_NAME
    with atomic_file(target, durable=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=0) + "\n")
    fsync_dir(root)
    return SealReport(sealed, unchanged, with_attribute, chunks, target)

"""Reading and writing one block file. Everything here takes paths, never open handles.

Importing this module registers the HDF5 compression filters of ``hdf5plugin`` (Blosc, Blosc2,
BZip2, Zstd, LZ4, ...), so any process that reads a block, dask workers included, can decompress
what every known writer produced. Blocks whose only filter is Blosc, the usual case, are read
and written chunk by chunk by :mod:`splitds_dask._storage.blosc`, outside HDF5's global lock;
everything else goes through h5py. Nothing stored in the files is ever unpickled.
"""

from __future__ import annotations

import functools
import math
import os
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar, cast

import h5py
import hdf5plugin
import numpy as np

from splitds_dask._errors import BlockError
from splitds_dask._storage.atomic import atomic_file
from splitds_dask._storage.blosc import (
    CHUNK_MAPS,
    ChunkError,
    ChunkIndexError,
    ChunkMap,
    file_version,
    read_chunks,
    write_blosc_chunks,
)
from splitds_dask._storage.checksums import record_checksums, region_mismatch
from splitds_dask._storage.containment import (
    Checked,
    check_block_file,
    check_dataset,
    require_regular,
    resolve_in_file,
)
from splitds_dask._storage.filters import (
    CompressionLevelError,
    missing_filters,
    parse_compression,
)

__all__ = [
    "COMPRESSIONS",
    "H5_SUFFIXES",
    "block_chunk_shape",
    "checked_dataset",
    "chunk_shape_for",
    "compression_options",
    "find_data_key",
    "open_block",
    "open_h5",
    "read_block_region",
    "stored_dtype",
    "write_block",
]

_T = TypeVar("_T")

#: The file name suffixes of HDF5 files (lower case).
H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")

# Bytes per HDF5 chunk inside a block file: small enough that reading one time point of a block
# does not decompress the whole block, large enough to keep per-chunk overhead low.
_CHUNK_BYTES = 1 << 20
# Block chunks may shrink to _CHUNK_BYTES // _MIN_CHUNK_FRACTION (4 KiB) to divide the block
# length; below that, per-chunk costs would dominate (see block_chunk_shape).
_MIN_CHUNK_FRACTION = 256

COMPRESSIONS = (
    "blosc",
    "blosc:lz4",
    "blosc:lz4hc",
    "blosc:blosclz",
    "blosc:zstd",
    "blosc:zlib",
    "blosc2",
    "blosc2:lz4",
    "blosc2:zstd",
    "gzip",
    "zlib",
    "bzip2",
    "zstd",
    None,
)


@contextmanager
def open_h5(
    path: str | os.PathLike[str], *, locking: bool | str | None = None
) -> Iterator[h5py.File]:
    """Open an HDF5 file read-only; ``locking`` is passed through to :class:`h5py.File`.

    Anything but a regular file (a FIFO would block the open forever) raises
    :class:`~splitds_dask._storage.containment.NotARegularFile`, an :class:`OSError`.
    """
    require_regular(path)
    f = h5py.File(path, "r", locking=locking)
    try:
        yield f
    finally:
        f.close()


def open_block(
    path: str | os.PathLike[str], *, block: tuple[int, ...], locking: bool | str | None = None
) -> h5py.File:
    """Open a block file read-only; a missing or unreadable file is a :class:`BlockError`.

    So is anything but a regular file, refused before it is opened.
    """
    try:
        require_regular(path)
        return h5py.File(path, "r", locking=locking)
    except FileNotFoundError as exc:
        raise BlockError(f"block {block}: file {path} is missing", path=path, block=block) from exc
    except OSError as exc:
        raise BlockError(
            f"block {block}: cannot open {path}: {exc}", path=path, block=block
        ) from exc


def stored_dtype(dset: h5py.Dataset) -> np.dtype:
    """The numpy dtype a block's values have: a 1-byte HDF5 bitfield is a bool (PyTables' bool)."""
    if isinstance(dset.id.get_type(), h5py.h5t.TypeBitfieldID) and dset.dtype.itemsize == 1:
        return np.dtype(bool)
    dtype = dset.dtype
    return dtype.newbyteorder("=") if dtype.byteorder not in ("=", "|") else dtype


def find_data_key(f: h5py.File, ndim: int | None = None) -> str | None:
    """The name of the array dataset in a block file.

    Writers use ``stack_{N}D`` or ``stack``; other datasets (``shifts``, ``position``, a legacy
    ``stack_metadata`` group) may sit beside it. Preference: ``stack_{ndim}D``, ``stack``, then
    the first dataset (in name order) whose name contains ``stack`` and has ``ndim`` axes, then
    any dataset whose name contains ``stack``. A name that is an external link counts as a
    dataset without being followed (opening another file is for the reader to allow or refuse:
    :func:`checked_dataset`).
    """
    inside: dict[str, h5py.Dataset] = {}
    stacks = []
    for name in sorted(f.keys()):
        located = resolve_in_file(f, name)
        if located.external is not None:
            if "stack" in name:
                stacks.append(name)
            continue
        node = f.get(located.path) if located.path is not None else None
        if isinstance(node, h5py.Dataset) and "stack" in name:
            inside[name] = node
            stacks.append(name)
    preferred = ([f"stack_{ndim}D"] if ndim is not None else []) + ["stack"]
    for name in preferred:
        if name in stacks:
            return name
    if ndim is not None:
        for name in stacks:
            if name in inside and inside[name].ndim == ndim:
                return name
    return stacks[0] if stacks else None


def checked_dataset(
    f: h5py.File,
    key: str,
    *,
    path: str | os.PathLike[str],
    block: tuple[int, ...],
    allow_external: bool = False,
) -> Checked | None:
    """The dataset ``key`` of a block file, refused (:class:`BlockError`) if its data lies
    outside the file, unless ``allow_external``; None if ``key`` is no dataset.

    See :mod:`splitds_dask._storage.containment` for what is refused.
    """
    return check_dataset(f, key, path=path, block=block, allow_external=allow_external)


def _dataset(
    f: h5py.File,
    key: str,
    path: str | os.PathLike[str],
    block: tuple[int, ...],
    ndim: int,
    allow_external: bool,
) -> Checked:
    checked = checked_dataset(f, key, path=path, block=block, allow_external=allow_external)
    if checked is None:
        # A block written by another program may name its array differently.
        other = find_data_key(f, ndim)
        if other is not None:
            checked = checked_dataset(
                f, other, path=path, block=block, allow_external=allow_external
            )
    if checked is None:
        keys = ", ".join(sorted(f.keys())) or "nothing"
        raise BlockError(
            f"block {block} ({path}): no array '{key}' in the file (it holds: {keys})",
            path=path,
            block=block,
        )
    return checked


def read_block_region(
    path: str | os.PathLike[str],
    *,
    key: str,
    block: tuple[int, ...],
    dtype: np.dtype,
    extent: Sequence[int],
    source: tuple[slice, ...],
    out: np.ndarray,
    dest: tuple[slice, ...],
    locking: bool | str | None = None,
    allow_external: bool = False,
) -> None:
    """Read ``source`` of a block file into ``out[dest]``.

    Parameters
    ----------
    path, key
        The block file and the name of its array.
    block
        The block's grid position, for error messages.
    dtype
        The dataset's dtype; a block of another dtype is an error, never silently cast.
    extent
        The shape the file must hold at least (the block's file extent).
    source
        File-coordinate slices with positive steps.
    out, dest
        A C-contiguous output array and the slices of it to fill.
    allow_external
        Read data outside the dataset folder (links, virtual datasets, external storage; see
        :mod:`splitds_dask._storage.containment`), through h5py only.
    """
    # Before anything opens it: a FIFO would block, a link may lead anywhere.
    check_block_file(path, block=block, allow_external=allow_external, missing_ok=True)
    try:
        version = file_version(os.stat(path))
    except OSError:
        version = None  # open_block below names the problem
    chunk_map = CHUNK_MAPS.get((os.fspath(path), key, version)) if version is not None else None
    if chunk_map is not None and version is not None:
        # A file read before, unchanged since: no HDF5 call at all.
        _check_block(chunk_map.name, chunk_map.shape, chunk_map.values, extent, dtype, path, block)
        if _is_empty(out, dest) or _checked(
            _read_mapped, path, block, chunk_map.name, path, version, chunk_map, source, out, dest
        ):
            return
    with open_block(path, block=block, locking=locking) as f:
        checked = _dataset(f, key, path, block, len(extent), allow_external)
        dset = checked.dataset
        found = stored_dtype(dset)
        _check_block(dset.name[1:], dset.shape, found, extent, dtype, path, block)
        if _is_empty(out, dest):
            return
        try:
            # Chunk offsets are byte positions in the file holding the array: only ever map an
            # array stored in the block file itself.
            chunk_map = (
                _checked(ChunkMap.of, path, block, dset.name[1:], dset, found)
                if checked.in_file
                else None
            )
            fd = f.id.get_vfd_handle()
            if chunk_map is not None:
                # Keyed by the file opened, which may be newer than the one stat()ed above.
                opened = file_version(os.fstat(fd))
                CHUNK_MAPS.put((os.fspath(path), key, opened), chunk_map)
            if chunk_map is None or not _checked(
                read_chunks, path, block, chunk_map.name, fd, chunk_map, source, out, dest
            ):
                # The file that holds the array (another one, for an allowed external link).
                holder = dset.file.id.get_vfd_handle()
                _checked(_verify_region, path, block, dset.name[1:], dset, holder, source)
                _read_with_h5py(dset, source, out, dest)
        except OSError as exc:
            raise BlockError(
                f"block {block} ({path}): cannot read '{dset.name[1:]}': {exc}{_filter_hint(dset)}",
                path=path,
                block=block,
            ) from exc


def _checked(
    read: Callable[..., _T],
    path: str | os.PathLike[str],
    block: tuple[int, ...],
    name: str,
    *args: Any,
) -> _T:
    """``read(*args)``, with a damaged chunk reported as a :class:`BlockError` naming the file."""
    try:
        return read(*args)
    except (ChunkError, ChunkIndexError) as exc:
        raise BlockError(f"block {block} ({path}): '{name}' {exc}", path=path, block=block) from exc


def _verify_region(dset: h5py.Dataset, fd: int, source: tuple[slice, ...]) -> bool:
    """Check the recorded checksums of the chunks h5py is about to decode for ``source``."""
    bad = region_mismatch(dset, fd, file_version(os.fstat(fd)), source)
    if bad is not None:
        raise ChunkError(number=bad.number, offset=bad.offset, size=bad.size, problem=bad.problem)
    return True


# Below this many bytes, h5py's getitem (a few microseconds of set-up) plus a copy beats
# read_direct, whose selection set-up alone costs tens of microseconds: what decides the cost of
# the tiny blocks of a dataset of very many blocks.
_SMALL_READ_BYTES = 1 << 16


def _read_with_h5py(
    dset: h5py.Dataset, source: tuple[slice, ...], out: np.ndarray, dest: tuple[slice, ...]
) -> None:
    if out.dtype == bool:  # stored as a 1-byte bitfield, which h5py reads as raw bytes
        dset.read_direct(out.view(np.uint8), source, dest)
    elif out[dest].nbytes <= _SMALL_READ_BYTES:
        out[dest] = dset[source]
    else:
        dset.read_direct(out, source, dest)


def _check_block(
    name: str,
    shape: Sequence[int],
    found: np.dtype,
    extent: Sequence[int],
    dtype: np.dtype,
    path: str | os.PathLike[str],
    block: tuple[int, ...],
) -> None:
    if len(shape) != len(extent) or any(s < e for s, e in zip(shape, extent, strict=True)):
        raise BlockError(
            f"block {block} ({path}): '{name}' has shape {tuple(shape)}, but the block needs at "
            f"least {tuple(extent)}",
            path=path,
            block=block,
        )
    if found != dtype:
        raise BlockError(
            f"block {block} ({path}): dtype {found} differs from the dataset's {dtype}",
            path=path,
            block=block,
        )


def _is_empty(out: np.ndarray, dest: tuple[slice, ...]) -> bool:
    return out.size == 0 or math.prod(s.stop - s.start for s in dest) == 0


def _read_mapped(
    path: str | os.PathLike[str],
    version: tuple[int, ...],
    chunk_map: ChunkMap,
    source: tuple[slice, ...],
    out: np.ndarray,
    dest: tuple[slice, ...],
) -> bool:
    """Read through a cached chunk map, if the file opened is still the version it maps."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))  # a FIFO never blocks
    except OSError:
        return False
    try:
        return file_version(os.fstat(fd)) == version and read_chunks(
            fd, chunk_map, source, out, dest
        )
    finally:
        os.close(fd)


def _filter_hint(dset: h5py.Dataset) -> str:
    try:
        missing = missing_filters(dset)
    except Exception:  # noqa: BLE001 - only decorating an error message
        return ""
    if not missing:
        return ""
    return f" ({'; '.join(missing)}; this process has hdf5plugin {hdf5plugin.version})"


def compression_options(
    compression: str | None, level: int | None, dtype: np.dtype
) -> dict[str, Any]:
    """``h5py.create_dataset`` keyword arguments for a compression name (see ``COMPRESSIONS``)."""
    try:
        choice = parse_compression(compression, level)
    except CompressionLevelError:
        raise
    except ValueError:
        raise ValueError(
            f"unknown compression {compression!r}; choose one of {COMPRESSIONS}"
        ) from None
    if choice is None:
        return {}
    try:
        if choice.family == "blosc":
            return dict(
                hdf5plugin.Blosc(
                    cname=cast(Any, choice.compressor),  # hdf5plugin checks the name
                    clevel=choice.level,
                    shuffle=hdf5plugin.Blosc.SHUFFLE,
                )
            )
        if choice.family == "blosc2":
            return dict(
                hdf5plugin.Blosc2(
                    cname=cast(Any, choice.compressor),  # hdf5plugin checks the name
                    clevel=choice.level,
                    filters=hdf5plugin.Blosc2.SHUFFLE,
                )
            )
    except KeyError:  # hdf5plugin's answer to an unknown compressor name
        raise ValueError(
            f"unknown compression {compression!r}: no {choice.family} compressor "
            f"{choice.compressor!r}"
        ) from None
    if choice.family == "gzip":
        return {
            "compression": "gzip",
            "compression_opts": choice.level,
            "shuffle": dtype.itemsize > 1,
        }
    if choice.family == "bzip2":
        return dict(hdf5plugin.BZip2(blocksize=choice.level))
    return dict(hdf5plugin.Zstd(clevel=choice.level))


def chunk_shape_for(shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """HDF5 chunk shape for one array: whole trailing axes, leading axes cut to about 1 MiB.

    For a lone HDF5 file; block files use :func:`block_chunk_shape`, whose chunks tile blocks.
    """
    chunk = [max(1, int(n)) for n in shape]
    for axis in range(len(chunk)):
        inner = math.prod(chunk[axis + 1 :]) * itemsize
        if inner * chunk[axis] <= _CHUNK_BYTES:
            break
        chunk[axis] = max(1, min(chunk[axis], _CHUNK_BYTES // inner))
    return tuple(chunk)


def block_chunk_shape(block_shape: Sequence[int], itemsize: int) -> tuple[int, ...]:
    """HDF5 chunk shape of every block file of a dataset whose full blocks have ``block_shape``.

    As :func:`chunk_shape_for` (whole trailing axes, the leading ones cut to at most 1 MiB),
    except that the length of the axis that is cut divides its block length: every block file
    of the dataset, a short last one included, then holds chunks of one shape on one grid over
    the whole array, which one Zarr array can describe (see
    :mod:`splitds_dask._integrations.kerchunk`).

    That length is the largest divisor of the block length whose chunk stays within 1 MiB. A
    prime block length (or one without a divisor in range) thus gets chunks of one row along
    that axis (13 frames of 512 KiB: chunks of one frame): smaller than the target, but each
    time point still decompresses alone. Only when that would make chunks under 4 KiB (rows
    of a few bytes, e.g. a 1-d block of a prime length over 1 MiB, which would be cut into
    hundreds of thousands of chunks, their per-chunk costs outweighing the data) does the
    length fall back to 1 MiB worth of rows, not dividing the block: such a dataset reads as
    well, but is not expressible as one Zarr chunk grid unless it has one block along that
    axis. Chunks larger than the target (the whole block) were not chosen instead: past 1 MiB
    they outgrow HDF5's default chunk cache, and reading one row would decompress them whole.
    """
    return _block_chunk_shape(tuple(int(n) for n in block_shape), int(itemsize), _CHUNK_BYTES)


@functools.lru_cache(maxsize=256)  # a stream writer asks once per block
def _block_chunk_shape(block_shape: tuple[int, ...], itemsize: int, target: int) -> tuple[int, ...]:
    chunk = [max(1, n) for n in block_shape]
    for axis in range(len(chunk)):
        inner = math.prod(chunk[axis + 1 :]) * itemsize
        if inner * chunk[axis] <= target:
            break
        if inner > target:  # one row is too large already: cut the next axis too
            chunk[axis] = 1
            continue
        rows = _largest_divisor(chunk[axis], target // inner)
        if rows * inner * _MIN_CHUNK_FRACTION < target:
            rows = target // inner
        chunk[axis] = rows
        break
    return tuple(chunk)


def _largest_divisor(n: int, limit: int) -> int:
    """The largest divisor of ``n`` not above ``limit`` (``limit >= 1``)."""
    best = 1
    for small in range(1, math.isqrt(n) + 1):
        if n % small == 0:
            for d in (small, n // small):
                if best < d <= limit:
                    best = d
    return best


def write_block(
    path: str | os.PathLike[str],
    data: np.ndarray,
    *,
    key: str,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    block_shape: Sequence[int] | None = None,
) -> None:
    """Write one block file atomically: to a hidden temporary name, then renamed into place.

    The file is what PyTables (and so the original ``split_dataset``) reads natively: the array
    under ``key``, Blosc as HDF5 filter 32001, bool as a 1-byte bitfield.

    ``block_shape`` is the shape of the dataset's largest block files; the chunks of a
    compressed block follow it (:func:`block_chunk_shape`), so that every block file of the
    dataset has the same chunk shape. A block shorter than that (the last one along an axis)
    is stored with that shape as its fixed maximum shape, which HDF5 needs for a chunk longer
    than the array, and which readers (h5py, PyTables) ignore. Default: ``data``'s shape; an
    axis along which ``data`` is longer counts with ``data``'s length.
    """
    path = Path(path)
    data = np.ascontiguousarray(data)
    if data.dtype.byteorder not in ("=", "|"):
        data = data.astype(data.dtype.newbyteorder("="))
    if data.dtype.kind in "OUSVMm":
        raise TypeError(
            f"cannot write {data.dtype} arrays to a split dataset (numeric and bool only)"
        )
    full = data.shape if block_shape is None else tuple(int(n) for n in block_shape)
    if len(full) != data.ndim:
        raise ValueError(f"block shape {full} does not fit a block of shape {data.shape}")
    full = tuple(max(b, n) for b, n in zip(full, data.shape, strict=True))
    with atomic_file(path) as tmp, h5py.File(tmp, "w") as f:
        _create_array(f, key, data, full, compression, compression_level)


def _create_array(
    f: h5py.File,
    key: str,
    data: np.ndarray,
    block_shape: tuple[int, ...],
    compression: str | None,
    level: int | None,
) -> None:
    options = compression_options(compression, level, data.dtype) if data.size else {}
    chunks = block_chunk_shape(block_shape, data.dtype.itemsize) if options else None
    # Fixed, not unlimited: PyTables still sees a CArray. Only a chunked array may have one.
    maxshape = block_shape if chunks is not None and block_shape != data.shape else None
    if data.dtype == bool:
        space = h5py.h5s.create_simple(data.shape, maxshape)
        dcpl = h5py.h5p.create(h5py.h5p.DATASET_CREATE)
        if chunks is not None:
            dcpl.set_chunk(chunks)
            if options.get("shuffle"):
                dcpl.set_shuffle()
            fid = options.get("compression")
            fid = h5py.h5z.FILTER_DEFLATE if fid == "gzip" else fid
            opts = options.get("compression_opts")
            opts = (opts,) if isinstance(opts, int) else tuple(opts or ())
            # Optional, as h5py does: a chunk the codec cannot shrink is stored raw.
            dcpl.set_filter(fid, h5py.h5z.FLAG_OPTIONAL, opts)
        h5py.h5d.create(f.id, key.encode(), h5py.h5t.STD_B8LE, space, dcpl=dcpl).close()
        dset = f[key]
    else:
        dset = f.create_dataset(
            key, shape=data.shape, maxshape=maxshape, dtype=data.dtype, chunks=chunks, **options
        )
    sums: list[int] | None = []
    if data.size and not write_blosc_chunks(dset, data, checksums=sums):
        sums = None  # computed from what HDF5 stored
        if data.dtype == bool:
            dset.id.write(h5py.h5s.ALL, h5py.h5s.ALL, data.view(np.uint8), h5py.h5t.NATIVE_UINT8)
        else:
            dset.write_direct(data)
    # End-to-end checksums of the stored chunks, in the same file (see _storage/checksums.py).
    record_checksums(dset, data, sums)
    # PyTables' own attributes, so that PyTables-based readers see an ordinary array.
    dset.attrs["CLASS"] = np.bytes_(b"CARRAY" if chunks is not None else b"ARRAY")
    dset.attrs["VERSION"] = np.bytes_(b"1.1" if chunks is not None else b"2.4")
    dset.attrs["TITLE"] = np.bytes_(b"")
    # Flush here so that a failing filter raises, instead of being lost when handles are freed.
    f.flush()

"""The files and folders ``splitds convert`` writes, each by :func:`write_array`, and the
projections ``splitds project`` writes (:func:`write_projection`).

Targets: a split dataset folder (a name without a suffix, or ending in ``/``), ``.npy``,
``.tif``/``.tiff``, ``file.h5:/path``, ``.zarr``, ``.ome.zarr`` and, for projections, ``.png``;
any other suffix is an error (kind from the name: :func:`parse_target`). Both commands check
their target with :func:`check_target` before anything is read, the one place that applies the
overwrite rule of :func:`~splitds_dask._storage.atomic.check_replaceable` to them, and again
just before the output is put in place. Every target is written
under a hidden staging name beside it that carries this process's host and pid, and put in place
when complete (a file flushed and renamed, a folder swapped in whole), so readers see the old
output or the complete new one; what a killed conversion left is removed by the next one.

Memory stays bounded whatever the size of the data: the source is read directly in the chunks of
the target (each task reads its region from the source files), so no task holds more than one
target block, and no dask rechunk, which for a transposing change of block shape would hold most
of the dataset at once, is involved. ``.npy``, split dataset and zarr targets are written by the
tasks themselves; TIFF and HDF5 files, which one process must write in order, are written by
this process slab by slab along the first axis.
"""

from __future__ import annotations

import math
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Literal, NamedTuple

import dask
import dask.array as da
import numpy as np

from splitds_dask._cli.formats import TIFF_SUFFIXES, is_zarr, require, split_h5_path
from splitds_dask._cli.messages import PROG, UsageError
from splitds_dask._cli.ome import ome_multiscales
from splitds_dask._cli.sources import Source
from splitds_dask._daskmodes import array_nbytes, store_chunks
from splitds_dask._errors import FormatError
from splitds_dask._format.metadata import is_split_dataset
from splitds_dask._remote.location import RemoteFolder, is_url
from splitds_dask._storage.atomic import (
    check_replaceable,
    discard,
    remove_stale_staging,
    replace_folder,
    staged_file,
    staging_path,
)
from splitds_dask._storage.block_file import H5_SUFFIXES
from splitds_dask._storage.filters import CompressionLevelError, parse_compression

__all__ = [
    "CONVERT_KINDS",
    "PROJECTION_KINDS",
    "SLAB_BYTES",
    "Target",
    "TargetKind",
    "Written",
    "check_array_fits",
    "check_target",
    "parse_target",
    "target_kind",
    "write_array",
    "write_projection",
]

#: Largest slab (bytes) computed at once when a TIFF or HDF5 file is written in order.
SLAB_BYTES = 64 * 2**20

#: Computes dask collections, as ``dask.compute`` does.
Compute = Callable[..., Any]
#: Told ``(done, total)`` after each slab of a file written in order.
OnSlab = Callable[[int, int], None]

TargetKind = Literal["split", "npy", "tiff", "hdf5", "zarr", "ome-zarr", "png"]

_KIND_NAMES: dict[TargetKind, str] = {
    "split": "split dataset",
    "npy": "npy",
    "tiff": "TIFF",
    "hdf5": "HDF5",
    "zarr": "zarr",
    "ome-zarr": "OME-Zarr",
    "png": "PNG",
}
_FOLDER_KINDS = ("split", "zarr", "ome-zarr")

#: What ``splitds convert`` writes, and ``splitds project``.
CONVERT_KINDS: tuple[TargetKind, ...] = ("split", "npy", "tiff", "hdf5", "zarr", "ome-zarr")
PROJECTION_KINDS: tuple[TargetKind, ...] = ("npy", "tiff", "png")

_FORMS = {
    "split": "a split dataset FOLDER (a name without a suffix, or ending in /)",
    "npy": "FILE.npy",
    "tiff": "FILE.tif",
    "hdf5": "FILE.h5:/DATASET",
    "zarr": "FOLDER.zarr",
    "ome-zarr": "FOLDER.ome.zarr",
    "png": "FILE.png",
}
_SUFFIXES: dict[TargetKind, tuple[str, ...]] = {
    "npy": (".npy",),
    "tiff": TIFF_SUFFIXES,
    "png": (".png",),
    "ome-zarr": (".ome.zarr",),
    "zarr": (".zarr",),
}


class Target(NamedTuple):
    """Where a command writes: the name given, its kind, and the file or folder written."""

    text: str
    kind: TargetKind
    path: Path  # absolute: the file, or the folder of a split dataset or zarr target
    dataset: str | None = None  # the dataset inside an HDF5 file
    remote: RemoteFolder | None = None  # a split dataset written to a URL (path unused)


def _kind_of(text: str) -> TargetKind | None:
    """The kind ``text`` names; None for an unknown suffix."""
    if split_h5_path(text) is not None:
        return "hdf5"
    name = Path(text).name.lower()
    head = text.rpartition(":")[0] if ":" in name else text
    if head.lower().endswith(H5_SUFFIXES):  # file.h5, file.h5:, file.h5:data
        got = "" if text == head else f" (got {text})"
        raise UsageError(
            f"{PROG}: error: {head}: name the dataset inside the HDF5 file after a colon, e.g. "
            f"{head}:/data{got}"
        )
    for kind, suffixes in _SUFFIXES.items():
        if name.endswith(suffixes):
            return kind
    if text.endswith(("/", os.sep)):  # a folder, whatever dots its name holds
        return "split"
    if Path(name).suffix and not is_split_dataset(Path(text)):
        return None
    return "split"


def _forms(kinds: Sequence[TargetKind]) -> str:
    """``"must end in .npy, .tif, .tiff or .png"``: the names of ``kinds``, for messages."""
    if "split" in kinds or "hdf5" in kinds:
        names = [_FORMS[k] for k in kinds]
        verb = "must be"
    else:
        names = [suffix for k in kinds for suffix in _SUFFIXES[k]]
        verb = "must end in"
    return f"{verb} {', '.join(names[:-1])} or {names[-1]}"


def target_kind(text: str) -> TargetKind:
    """The kind of target ``text`` names (see :func:`parse_target`)."""
    return parse_target(text).kind


def parse_target(
    text: str,
    *,
    kinds: Sequence[TargetKind] = CONVERT_KINDS,
    what: str = "TARGET",
    storage_options: dict[str, Any] | None = None,
) -> Target:
    """The :class:`Target` that ``text`` names, one of ``kinds``.

    ``file.h5:/data`` is HDF5; ``.npy``, ``.tif``/``.tiff``, ``.png``, ``.ome.zarr`` and
    ``.zarr`` name their format; a name without a suffix, a name ending in ``/`` and an existing
    split dataset are split dataset folders. Any other suffix (``out.npz``, ``out.zar``) is an
    error, not a folder of that name. A URL (``s3://bucket/out``) is a split dataset written
    there, reached with ``storage_options``.

    Raises
    ------
    UsageError
        An unknown suffix, or a kind not in ``kinds``: one line listing what ``what`` may be.
    """
    if is_url(text):
        suffix = PurePosixPath(text.rstrip("/")).suffix
        if "split" not in kinds or suffix:
            raise UsageError(
                f"{PROG}: error: {what} {_forms(kinds)}; got {text} (a URL, where only split "
                "dataset folders are written)"
            )
        return Target(text, "split", Path(), remote=RemoteFolder(text, storage_options))
    kind = _kind_of(text)
    if kind is None or kind not in kinds:
        suffix = Path(text.rstrip("/" + os.sep)).suffix
        got = f"unknown suffix {suffix!r}" if kind is None else "no suffix" if not suffix else kind
        raise UsageError(f"{PROG}: error: {what} {_forms(kinds)}; got {text} ({got})")
    h5 = split_h5_path(text)
    path = Path(os.path.abspath(h5.file if h5 else text))
    return Target(text, kind, path, h5.name if h5 else None)


def _check_parent(path: Path) -> None:
    """Fail unless the folder that will hold ``path`` exists or can be made, and is writable."""
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise NotADirectoryError(f"{path}: cannot be written: {ancestor} is not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise PermissionError(f"{path}: cannot be written: no write permission in {ancestor}")


def _is_zarr_folder(path: Path) -> bool:
    return path.is_dir() and is_zarr(path)


def check_target(target: Target, *, overwrite: bool) -> None:
    """Refuse ``target`` now unless the command may write it: every command checks its target
    here, before computing anything, and again just before replacing it.

    The folder that will hold it must be (or be creatable in) a writable folder; what is at the
    target follows the one overwrite rule (:func:`~splitds_dask._storage.atomic.check_replaceable`):
    an earlier output of the same kind is replaced only with ``overwrite``, anything else never.

    Raises
    ------
    FileExistsError, NotADirectoryError, PermissionError
        One line naming the target and what is wrong.
    WriterLockedError
        Another writer holds a split dataset target.
    """
    from splitds_dask._storage.lock import check_unlocked

    if target.remote is not None:
        from splitds_dask._remote.write import check_remote_target

        check_remote_target(target.remote)  # the one rule of remote targets: never replaced
        return
    _check_parent(target.path)
    if target.kind == "split":
        # Refused at once, without a trace (the lock file would touch the parent folder).
        check_unlocked(target.path)
    _check_replaceable(target, overwrite=overwrite)


def _check_replaceable(target: Target, *, overwrite: bool) -> None:
    """What is at ``target`` may be replaced (see :func:`check_target`)."""
    replaceable: Callable[[Path], bool] = {
        "split": is_split_dataset,
        "zarr": _is_zarr_folder,
        "ome-zarr": _is_zarr_folder,
    }.get(target.kind, Path.is_file)
    check_replaceable(
        target.path,
        overwrite=overwrite,
        replaceable=replaceable,
        what=f"a {target.path.suffix or 'split dataset'} output",
        hint="pass --overwrite",
        folder=target.kind in _FOLDER_KINDS,
    )


@dataclass
class Written:
    """What :func:`write_array` wrote: its kind and the target as named, and the bytes of data
    (uncompressed)."""

    description: str
    nbytes: int


@dataclass(frozen=True)
class _Codec:
    """The compression of split dataset, HDF5 and zarr targets."""

    compression: str | None
    level: int | None


def check_array_fits(
    target: Target,
    shape: Sequence[int],
    dtype: np.dtype,
    metadata: dict[str, Any] | None = None,
    *,
    compression: str | None = "blosc",
    compression_level: int | None = None,
) -> None:
    """Fail before anything is computed if ``target`` cannot hold an array of this shape and
    dtype with this codec (a 0-d array, a 1-d TIFF, OME-Zarr axes, a codec or level the format
    lacks).

    Raises
    ------
    FormatError
        One line naming what does not fit.
    """
    if not shape:
        raise FormatError("cannot convert a 0-d array")
    _check_codec(target.kind, _Codec(compression, compression_level), np.dtype(dtype))
    if target.kind == "tiff" and len(shape) < 2:
        raise FormatError(f"a TIFF stack needs at least 2 axes, got shape {tuple(shape)}")
    if target.kind == "ome-zarr":
        ome_multiscales(shape, metadata or {}, target.path.name)


def write_array(
    source: Source,
    target: str | Target,
    *,
    block_shape: Sequence[int | None] | int | None = None,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    overwrite: bool = False,
    compute: Compute = dask.compute,
    on_slab: OnSlab | None = None,
    slab_bytes: int = SLAB_BYTES,
) -> Written:
    """Convert ``source`` into ``target`` (its kind from its name: see :func:`target_kind`).

    Everything that can be checked without the data (the target's name and folder, what is
    there, the codec, the shape) is checked before anything is computed.

    Parameters
    ----------
    source : Source
        From :func:`~splitds_dask._cli.sources.open_source`.
    target : str or Target
        The output path (``file.h5:/dataset`` for HDF5), or :func:`parse_target`'s record.
    block_shape : int or sequence, optional
        Block shape of a split dataset target, chunk shape of a zarr or OME-Zarr target
        (default: the source's blocks, or chunks of about ``array.chunk-size``). HDF5 targets
        are chunked as block files are (about 1 MiB chunks).
    compression, compression_level : optional
        The codec of split dataset, zarr and HDF5 targets (see ``to_split_dataset``).
    overwrite : bool, optional
        Replace an earlier output of the same kind.
    compute : callable, optional
        Runs dask collections (the command line passes one with a progress bar).
    on_slab : callable, optional
        Called with ``(done, total)`` after each slab of a TIFF or HDF5 target.
    slab_bytes : int, optional
        Largest slab computed at once for a TIFF or HDF5 target.

    Raises
    ------
    FormatError
        The target cannot hold this data or use this codec.
    UsageError
        ``target`` names no format ``convert`` writes.
    FileExistsError
        Something is at ``target`` that is not an earlier output of the same kind, or one is
        and ``overwrite`` is false.
    """
    if isinstance(target, str):
        target = parse_target(target, kinds=CONVERT_KINDS)
    check_target(target, overwrite=overwrite)
    check_array_fits(
        target,
        source.shape,
        source.dtype,
        source.metadata,
        compression=compression,
        compression_level=compression_level,
    )
    codec = _Codec(compression, compression_level)
    kind, path = target.kind, target.path
    x = _read_in_target_chunks(source, kind, block_shape)
    description = f"{_KIND_NAMES[kind]} {target.text}"
    if target.remote is not None:
        from splitds_dask._write.array import to_split_dataset

        written = to_split_dataset(
            x,
            target.remote.url,
            compression=codec.compression,
            compression_level=codec.level,
            storage_options=target.remote.options,
            compute=False,
            **source.metadata,
        )
        compute(written)
        return Written(description, array_nbytes(x))
    if kind == "split":
        _write_split_dataset(
            x, target, source.metadata, codec, overwrite=overwrite, compute=compute
        )
        return Written(description, array_nbytes(x))
    folder = kind in _FOLDER_KINDS
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)  # what a conversion killed mid-write left
    check_target(target, overwrite=overwrite)
    if folder:
        ome = ome_multiscales(x.shape, source.metadata, path.name) if kind == "ome-zarr" else None
        _write_zarr(x, path, ome=ome, codec=codec, compute=compute)
    else:
        with staged_file(path) as staging:
            _write_file(
                kind,
                x,
                staging,
                target.dataset,
                codec,
                compute=compute,
                on_slab=on_slab,
                slab_bytes=slab_bytes,
            )
    return Written(description, array_nbytes(x))


def write_projection(image: np.ndarray, target: Target, *, overwrite: bool = False) -> Path:
    """Save a computed projection as ``.npy`` or TIFF (values as they are) or PNG (a preview).

    The PNG is 8-bit, contrast-stretched between the 0.5 and 99.8 percentiles; a 3-D result is
    shown as its planes tiled in a grid (see :func:`~splitds_dask._cli.images.png_too_large`
    for the size allowed). The file is written under a staging name and renamed into place
    when complete.

    Raises
    ------
    FileExistsError
        ``target`` exists and ``overwrite`` is false, or it is a folder.
    """
    from splitds_dask._cli.images import mosaic, to_uint8
    from splitds_dask._cli.png import encode_png

    path = target.path
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(path)
    check_target(target, overwrite=overwrite)
    with staged_file(path) as staging:
        if target.kind == "npy":
            with open(staging, "wb") as f:
                np.save(f, image, allow_pickle=False)
        elif target.kind == "png":
            staging.write_bytes(encode_png(to_uint8(image if image.ndim == 2 else mosaic(image))))
        else:
            tifffile = require("tifffile", "tiff")
            tifffile.imwrite(staging, image, photometric="minisblack")
    return path


def _read_in_target_chunks(
    source: Source, kind: TargetKind, block_shape: Sequence[int | None] | int | None
) -> da.Array:
    """The source as a dask array whose every task reads one target block from the source."""
    from splitds_dask._format.geometry import BlockGrid

    if kind in ("tiff", "hdf5"):
        # Written slab by slab along axis 0: each slab's tasks read only that slab.
        return source.to_dask()
    if block_shape is None:
        block_shape = tuple(c[0] if c else 1 for c in source.natural_chunks())
    return source.to_dask(BlockGrid.from_spec(source.shape, block_shape).chunks)


def _write_split_dataset(
    x: da.Array,
    target: Target,
    metadata: dict[str, Any],
    codec: _Codec,
    *,
    overwrite: bool,
    compute: Compute,
) -> None:
    """``to_split_dataset``'s plan, computed under the target's writer lock held throughout."""
    from splitds_dask._storage.lock import writer_lock
    from splitds_dask._write.array import plan_split_dataset

    folder = target.path
    # Held from the first look at the target until the new dataset is in place: no other
    # writer (a SplitDatasetWriter appending there, another conversion) can be at work.
    with writer_lock(folder):
        remove_stale_staging(folder)  # before the check: may put back a dataset a crash left
        _check_replaceable(target, overwrite=overwrite)
        plan = plan_split_dataset(
            x,
            folder,
            deferred=False,
            compression=codec.compression,
            compression_level=codec.level,
            overwrite=overwrite,
            **metadata,
        )
        try:
            compute(plan.result)
        except BaseException:
            discard(plan.staging, folder)
            raise


def _write_zarr(
    x: da.Array, path: Path, *, ome: dict[str, Any] | None, codec: _Codec, compute: Compute
) -> None:
    """A zarr (or OME-Zarr) folder written by the tasks in a staging folder, then swapped in."""
    compressors = _zarr_compressors(codec)
    staging = staging_path(path)
    try:
        compute(_store_zarr(x, staging, ome=ome, compressors=compressors))
        replace_folder(staging, path)
    except BaseException:
        discard(staging, path)
        raise


def _write_file(
    kind: TargetKind,
    x: da.Array,
    staging: Path,
    dataset: str | None,
    codec: _Codec,
    *,
    compute: Compute,
    on_slab: OnSlab | None,
    slab_bytes: int,
) -> None:
    """Write a ``.npy``, TIFF or HDF5 file at ``staging``."""
    if kind == "npy":
        compute(store_chunks(x, _NpyTarget(staging, x.shape, x.dtype)))
    elif kind == "tiff":
        _write_tiff(x, staging, compute=compute, on_slab=on_slab, slab_bytes=slab_bytes)
    else:
        assert dataset is not None
        _write_h5(
            x, staging, dataset, codec, compute=compute, on_slab=on_slab, slab_bytes=slab_bytes
        )


class _NpyTarget:
    """A ``store`` target writing regions of a C-order ``.npy`` file with ``os.pwrite``.

    It holds only the path and the layout (a memory map pickled to another process would be a
    copy), and writes each contiguous run of a region straight to the file: a memory map of a
    strided region would keep pages of the whole file resident.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
        self.offset = int(array.offset)
        array.flush()
        del array

    def __setitem__(self, region: tuple[slice, ...], value: np.ndarray) -> None:
        starts = [r.start or 0 for r in region]
        value = np.ascontiguousarray(value, dtype=self.dtype)
        if value.size == 0:
            return
        # Axes after `split` are whole in the region, so each index of the axes before it
        # addresses one contiguous run of the file.
        split = len(self.shape) - 1
        while split > 0 and value.shape[split] == self.shape[split]:
            split -= 1
        runs = value.reshape(math.prod(value.shape[:split]), -1)
        if split == 0:
            first = [int(np.ravel_multi_index(starts, self.shape))]
        else:
            lead = np.indices(value.shape[:split]).reshape(split, -1)
            lead += np.array(starts[:split])[:, None]
            rest = [np.full(lead.shape[1], s) for s in starts[split:]]
            first = np.ravel_multi_index([*lead, *rest], self.shape).tolist()
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for offset, run in zip(first, runs, strict=True):
                os.pwrite(fd, run.data, self.offset + offset * self.dtype.itemsize)
        finally:
            os.close(fd)


def _zarr_compressors(codec: _Codec) -> Any:
    codecs = require("zarr.codecs", "zarr")
    unavailable = FormatError(
        f"compression {codec.compression!r} is not available for zarr (blosc, gzip, zstd or none)"
    )
    try:
        choice = parse_compression(codec.compression, codec.level)
    except CompressionLevelError as exc:
        raise FormatError(f"compression {codec.compression} level {codec.level}: {exc}") from None
    except ValueError:
        raise unavailable from None
    if choice is None:
        return None
    if choice.family == "blosc":
        return codecs.BloscCodec(cname=choice.compressor, clevel=choice.level, shuffle="shuffle")
    if choice.family == "gzip":
        return codecs.GzipCodec(level=choice.level)
    if choice.family == "zstd":
        return codecs.ZstdCodec(level=choice.level)
    raise unavailable


def _store_zarr(x: da.Array, staging: Path, *, ome: dict[str, Any] | None, compressors: Any) -> Any:
    zarr = require("zarr", "zarr")

    if ome is None:
        array = zarr.create_array(
            store=str(staging),
            shape=x.shape,
            chunks=[c[0] for c in x.chunks],
            dtype=x.dtype,
            compressors=compressors,
            fill_value=0,
        )
    else:
        group = zarr.create_group(store=str(staging), zarr_format=3, attributes={"ome": ome})
        array = group.create_array(
            "0",
            shape=x.shape,
            chunks=[c[0] for c in x.chunks],
            dtype=x.dtype,
            compressors=compressors,
            fill_value=0,
            dimension_names=[a["name"] for a in ome["multiscales"][0]["axes"]],
        )
    return store_chunks(x, array)


def _check_codec(kind: TargetKind, codec: _Codec, dtype: np.dtype) -> None:
    """Fail before anything is written if the target cannot use this codec and level."""
    from splitds_dask._storage.block_file import compression_options

    try:
        if kind in ("split", "hdf5"):
            import h5py

            # h5py checks some options only when it creates a dataset: create one in memory.
            options = compression_options(codec.compression, codec.level, dtype)
            with h5py.File(f"{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False) as f:
                f.create_dataset("probe", shape=(1,), dtype=dtype, chunks=(1,), **options)
        elif kind in ("zarr", "ome-zarr"):
            _zarr_compressors(codec)
    except FormatError:
        raise
    except ValueError as exc:
        raise FormatError(f"compression {codec.compression} level {codec.level}: {exc}") from None


class _Slab(NamedTuple):
    rows: slice  # of axis 0
    data: da.Array


def _slabs(x: da.Array, slab_bytes: int) -> Iterator[_Slab]:
    """Consecutive slabs of ``x`` along axis 0, each at most ``slab_bytes`` (at least one row).

    Slabs hold whole chunks of ``x`` where one fits: a slab cutting a chunk makes that chunk's
    task run for two slabs, and where dask fuses no slice into the read (its array-expr mode)
    reads the chunk whole for each. A chunk larger than ``slab_bytes`` is cut by rows.
    """
    row = math.prod(x.shape[1:]) * x.dtype.itemsize
    rows_per_slab = max(1, slab_bytes // max(row, 1))
    start = 0
    for stop in _chunk_groups(x.chunks[0], rows_per_slab):
        while start < stop:
            end = min(start + rows_per_slab, stop)
            yield _Slab(slice(start, end), x[start:end])
            start = end


def _chunk_groups(lengths: Sequence[int], rows_per_slab: int) -> Iterator[int]:
    """Where each run of whole chunks of at most ``rows_per_slab`` rows ends (a lone larger
    chunk is a run of its own)."""
    stop = rows = 0
    for n in lengths:
        if rows and rows + n > rows_per_slab:
            yield stop
            rows = 0
        stop += n
        rows += n
    if rows:
        yield stop


def _write_tiff(
    x: da.Array,
    path: Path,
    *,
    compute: Compute,
    on_slab: OnSlab | None,
    slab_bytes: int,
) -> None:
    """A BigTIFF with one page per 2-D image (in C order), written slab by slab."""
    tifffile = require("tifffile", "tiff")
    if x.ndim < 2:
        raise FormatError(f"a TIFF stack needs at least 2 axes, got shape {x.shape}")
    slabs = list(_slabs(x, slab_bytes)) if x.ndim > 2 else [_Slab(slice(None), x)]

    def pages() -> Iterator[np.ndarray]:
        for i, slab in enumerate(slabs):
            (data,) = compute(slab.data)
            yield from data.reshape(-1, *x.shape[-2:])
            del data  # one slab in memory, as for HDF5
            if on_slab is not None:
                on_slab(i + 1, len(slabs))

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(pages(), shape=x.shape, dtype=x.dtype, photometric="minisblack")


def _write_h5(
    x: da.Array,
    path: Path,
    name: str,
    codec: _Codec,
    *,
    compute: Compute,
    on_slab: OnSlab | None,
    slab_bytes: int,
) -> None:
    """One HDF5 dataset, chunked and compressed as block files are, written slab by slab."""
    import h5py

    from splitds_dask._storage.block_file import chunk_shape_for, compression_options

    options = compression_options(codec.compression, codec.level, x.dtype)
    chunks = chunk_shape_for(x.shape, x.dtype.itemsize) if options and x.size else None
    slabs = list(_slabs(x, slab_bytes))
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(name, shape=x.shape, dtype=x.dtype, chunks=chunks, **options)
        for i, slab in enumerate(slabs):
            (data,) = compute(slab.data)
            dset[slab.rows] = data
            # Released before the next slab is computed, not replaced after: one slab in memory.
            del data
            if on_slab is not None:
                on_slab(i + 1, len(slabs))

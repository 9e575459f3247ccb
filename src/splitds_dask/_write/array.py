"""Writing any array as a split dataset with ``dask.array.store``.

One store task writes one block file; files go to a hidden staging folder beside the target,
each under a temporary name renamed into place; ``stack_metadata.json`` is written last and
atomically, and only then is the staging folder moved to the target path. A crash at any point
leaves the target as it was (absent, or the previous dataset), never a half-written dataset.

The writer lock (:mod:`splitds_dask._storage.lock`) keeps other writers out: when the write
runs at once, from the first check of the target until the new dataset is in place; for a
``compute=False`` write, whose tasks may run in other processes, the publishing task takes it
for the check and the swap (the blocks go to a private staging folder no other writer sees),
and the call itself refuses at once a target another writer holds.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, overload

import dask
import dask.array as da
import numpy as np

from splitds_dask._daskmodes import store_chunks
from splitds_dask._format.geometry import BlockGrid
from splitds_dask._format.metadata import (
    is_split_dataset,
    original_metadata_dict,
    write_metadata_json,
)
from splitds_dask._format.physical import add_physical_metadata, writer_physical_options
from splitds_dask._remote.location import is_url
from splitds_dask._storage.atomic import (
    check_replaceable,
    discard,
    remove_stale_staging,
    remove_temporaries,
    replace_folder,
    staging_path,
)
from splitds_dask._storage.block_file import write_block
from splitds_dask._storage.hdf5_errors import system_errors
from splitds_dask._storage.lock import check_unlocked, writer_lock
from splitds_dask._write.options import check_block_shape, check_compression, check_data_key

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from splitds_dask._dataset import SplitDataset

__all__ = ["StorePlan", "block_file_name", "plan_split_dataset", "to_split_dataset"]


def block_file_name(index: int, n_blocks: int) -> str:
    """``0000.h5`` style names, widened so that names also sort as text beyond 9,999 blocks."""
    width = max(4, len(str(max(n_blocks - 1, 0))))
    return f"{index:0{width}d}.h5"


class _BlockFileTarget:
    """A ``store`` target that writes each chunk it receives as one block file."""

    def __init__(
        self,
        folder: Path,
        grid: BlockGrid,
        *,
        key: str,
        compression: str | None,
        compression_level: int | None,
    ) -> None:
        self.folder = folder
        self.grid = grid
        self.key = key
        self.compression = compression
        self.compression_level = compression_level

    def __setitem__(self, region: tuple[slice, ...], value: np.ndarray) -> None:
        block = tuple(self.grid.block_containing(axis, s.start) for axis, s in enumerate(region))
        if tuple(region) != self.grid.owned_slices(block):
            raise ValueError(f"store region {region} is not exactly block {block}")
        index = self.grid.cartesian_to_linear(block)
        self.write(block_file_name(index, self.grid.n_blocks), np.asarray(value))

    def write(self, name: str, value: np.ndarray) -> None:
        """Write ``value`` as the block file ``name``."""
        self.write_file(self.folder / name, value)

    def write_file(self, path: Path, value: np.ndarray) -> None:
        """Write ``value`` as a block file at ``path``."""
        with system_errors(path):  # a full disk stays an OSError with its errno
            write_block(
                path,
                value,
                key=self.key,
                compression=self.compression,
                compression_level=self.compression_level,
                # One chunk shape for every block, the short last ones too.
                block_shape=self.grid.block_shape,
            )


def _check_target(path: Path, *, overwrite: bool) -> None:
    """Refuse to replace anything but a split dataset, and that only with ``overwrite``."""
    check_replaceable(path, overwrite=overwrite, replaceable=is_split_dataset)


def _publish(
    _stored: Any,
    staging: Path,
    path: Path,
    metadata: dict[str, Any],
    overwrite: bool,
    durable: bool,
    lock: bool,
) -> Path:
    """Write the metadata, then move the finished dataset to ``path`` (replacing an old one).

    With ``lock``, hold the writer lock for the check and the swap (the caller holds none).
    """
    try:
        # A worker killed while writing a block left its temporary file; the block was rewritten.
        remove_temporaries(staging)
        write_metadata_json(staging, metadata)
        if lock:
            with writer_lock(path):
                _check_target(path, overwrite=overwrite)
                replace_folder(staging, path, durable=durable)
        else:
            _check_target(path, overwrite=overwrite)
            # The old dataset stays readable until the new one is complete.
            replace_folder(staging, path, durable=durable)
    except BaseException:
        discard(staging, path)
        raise
    return path


def _open_published(path: Path) -> SplitDataset:
    from splitds_dask._dataset import SplitDataset

    return SplitDataset(path)


def _source_block_shape(data: Any) -> tuple[int | None, ...] | None:
    """The block shape ``data`` suggests: a dataset's blocks, or a dask array's regular chunks."""
    shape_block = getattr(data, "shape_block", None)
    if shape_block is not None:
        return tuple(shape_block)
    if isinstance(data, da.Array):
        out: list[int | None] = []
        for axis, chunks in enumerate(data.chunks):
            if any(c != chunks[0] for c in chunks[:-1]) or chunks[-1] > chunks[0]:
                raise ValueError(
                    f"the dask array's chunks along axis {axis} are irregular ({chunks}); pass "
                    "block_shape (the data is rechunked to it)"
                )
            out.append(chunks[0] if chunks and chunks[0] else None)  # None: a zero-length axis
        return tuple(out)
    return None


class _ArrayLike:
    """An object with only ``shape``, ``dtype`` and slicing, plus the ``ndim`` from_array needs."""

    def __init__(self, data: Any) -> None:
        self.data = data
        self.shape = tuple(int(n) for n in data.shape)
        self.dtype = np.dtype(data.dtype)
        self.ndim = len(self.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.data[key])


def _as_dask(data: Any, grid: BlockGrid, *, snapshot: bool) -> da.Array:
    """``data`` as a dask array chunked by ``grid``.

    ``from_array`` copies a numpy array and hashes it for the graph's name, about a second per
    GB. With ``snapshot`` False (the write runs at once, before the caller can change the array)
    neither is needed: the array is wrapped, and the graph named at random.
    """
    if isinstance(data, da.Array):
        array = data
    elif hasattr(data, "to_dask"):
        array = data.to_dask()
    else:
        if not hasattr(data, "shape") or not hasattr(data, "dtype"):
            data = np.asarray(data)
        if not hasattr(data, "ndim") or (isinstance(data, np.ndarray) and not snapshot):
            data = _ArrayLike(data)
        array = da.from_array(
            data,
            chunks=grid.chunks,
            asarray=not isinstance(data, np.ndarray),
            name=None if snapshot else False,
        )
    if array.chunks != grid.chunks:
        array = array.rechunk(grid.chunks)
    return array


def _make_staging(path: Path, *, overwrite: bool) -> Path:
    """Check that ``path`` may be written and create the hidden folder the blocks go to."""
    if path.parent.is_dir():
        remove_stale_staging(path)  # may first put back a dataset a crashed swap left aside
    _check_target(path, overwrite=overwrite)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = staging_path(path)
    staging.mkdir()
    return staging


def _dataset_metadata(
    grid: BlockGrid,
    physical: Mapping[str, Any],
    *,
    resolution: Sequence[float] | None,
    axis_order: str | None,
) -> dict[str, Any]:
    """The ``stack_metadata.json`` keys of the dataset ``grid`` describes."""
    metadata = original_metadata_dict(
        grid.shape,
        # A zero-length axis has a block length of 0, which no reader accepts: write 1 instead.
        [max(1, b) for b in grid.block_shape],
        resolution=resolution,
        axis_order=axis_order,
    )
    add_physical_metadata(metadata, physical)
    return metadata


def _write_empty_blocks(target: _BlockFileTarget, dtype: np.dtype) -> None:
    """The block files of an empty array, which dask's store skips (it has no chunk to store)."""
    grid = target.grid
    for block in grid.blocks():
        region = grid.owned_slices(block)
        target[region] = np.empty([s.stop - s.start for s in region], dtype=dtype)


@overload
def to_split_dataset(
    data: Any,
    path: str | os.PathLike[str],
    block_shape: int | Sequence[int | None] | None = None,
    *,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    overwrite: bool = False,
    compute: Literal[True] = True,
    resolution: Sequence[float] | None = None,
    axis_order: str | None = None,
    data_key: str | None = None,
    axes: Sequence[str] | None = None,
    scale: Sequence[float | None] | None = None,
    units: Sequence[str | None] | None = None,
    time_step: float | None = None,
    durable: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> SplitDataset: ...


@overload
def to_split_dataset(
    data: Any,
    path: str | os.PathLike[str],
    block_shape: int | Sequence[int | None] | None = None,
    *,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    overwrite: bool = False,
    compute: Literal[False],
    resolution: Sequence[float] | None = None,
    axis_order: str | None = None,
    data_key: str | None = None,
    axes: Sequence[str] | None = None,
    scale: Sequence[float | None] | None = None,
    units: Sequence[str | None] | None = None,
    time_step: float | None = None,
    durable: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> Delayed: ...


@overload
def to_split_dataset(
    data: Any,
    path: str | os.PathLike[str],
    block_shape: int | Sequence[int | None] | None = None,
    *,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    overwrite: bool = False,
    compute: bool = True,
    resolution: Sequence[float] | None = None,
    axis_order: str | None = None,
    data_key: str | None = None,
    axes: Sequence[str] | None = None,
    scale: Sequence[float | None] | None = None,
    units: Sequence[str | None] | None = None,
    time_step: float | None = None,
    durable: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> SplitDataset | Delayed: ...


def to_split_dataset(
    data: Any,
    path: str | os.PathLike[str],
    block_shape: int | Sequence[int | None] | None = None,
    *,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    overwrite: bool = False,
    compute: bool = True,
    resolution: Sequence[float] | None = None,
    axis_order: str | None = None,
    data_key: str | None = None,
    axes: Sequence[str] | None = None,
    scale: Sequence[float | None] | None = None,
    units: Sequence[str | None] | None = None,
    time_step: float | None = None,
    durable: bool = True,
    storage_options: dict[str, Any] | None = None,
) -> SplitDataset | Delayed:
    """Write an array as a split dataset, one block file per block, with ``dask.array.store``.

    Parameters
    ----------
    data : array-like
        A numpy array, dask array, :class:`SplitDataset` or any object with ``shape``, ``dtype``
        and numpy-style slicing.
    path : str or Path
        The dataset folder to create, or its URL on a store fsspec writes (``s3://``,
        ``gs://``...): each block is then built in a temporary file and uploaded, and the
        metadata uploaded last, so that no reader sees the dataset before it is complete. An
        existing dataset at a URL is never replaced (object stores cannot swap a folder in one
        step); the files a killed write left there are removed by the next write.
    block_shape : int or sequence of int or None, optional
        Block shape; may be partial (missing or ``None`` entries take the whole axis, an int
        splits axis 0 only). Default: ``data.shape_block`` when ``data`` has one, a dask array's
        chunks when they are regular, else one block.
    compression : str or None, optional
        ``"blosc"`` (Blosc LZ4 with byte shuffle, HDF5 filter 32001, what PyTables reads
        natively), ``"blosc:<cname>"``, ``"blosc2"``, ``"gzip"``, ``"bzip2"``, ``"zstd"``, or None.
    compression_level : int, optional
        Codec level (default 5 for Blosc).
    overwrite : bool, optional
        Replace an existing split dataset at ``path``; it stays readable until the new one is
        complete. A folder that is not a split dataset is never replaced.
    durable : bool, optional
        Flush the block files to stable storage before the dataset appears at ``path``, so that
        after a power loss ``path`` holds the old dataset or the complete new one (default).
        False skips that flush, for scratch results: a crash of the process still never leaves
        a partial dataset at ``path``, but a power loss may.
    compute : bool, optional
        Write now and return the opened dataset; with False, return a ``dask.delayed`` object
        whose computation writes everything and returns the opened dataset.
    resolution : sequence of float, optional
        Written to the metadata's ``resolution`` (default 1 per axis).
    axis_order : str, optional
        Written to the metadata's ``axis_order`` (default ``tzyx`` for 4-D data).
    data_key : str, optional
        Name of the array in each block file (default ``stack_{ndim}D``, as the original).
    axes, scale, units : sequence, optional
        Physical metadata (see "Physical metadata" in the README): axis names (or a string of
        one letter per axis), the spacing along each axis and its unit (None where unknown).
        Default: those of ``data`` when it records some (a :class:`SplitDataset`) and none of
        these options, ``time_step``, ``resolution`` or ``axis_order`` is given.
    time_step : float, optional
        Seconds between time points: the scale of the ``t`` axis, with unit ``"second"``.
    storage_options : dict, optional
        For a URL: the options of its fsspec filesystem (credentials, ``endpoint_url``...).

    Returns
    -------
    SplitDataset or dask.delayed.Delayed

    Raises
    ------
    splitds_dask._storage.lock.WriterLockedError
        A ``BlockingIOError``: another writer (a :class:`SplitDatasetWriter`, a conversion...)
        is writing ``path``; nothing was changed.
    FileExistsError
        ``path`` holds a split dataset and ``overwrite`` is false (at a URL: any split
        dataset), something that is not a split dataset, or a symbolic link (pass the path it
        names).
    ValueError, TypeError
        An option is invalid (compression name or level, block shape, data key...).
    """
    options: dict[str, Any] = {
        "compression": compression,
        "compression_level": compression_level,
        "overwrite": overwrite,
        "resolution": resolution,
        "axis_order": axis_order,
        "data_key": data_key,
        "axes": axes,
        "scale": scale,
        "units": units,
        "time_step": time_step,
        "durable": durable,
    }
    if is_url(path):
        from splitds_dask._remote.write import write_remote

        del options["overwrite"], options["durable"]
        prepared = prepare_write(data, block_shape, deferred=not compute, **options)
        return write_remote(
            prepared,
            os.fspath(path),
            storage_options=storage_options,
            compression=compression,
            compression_level=compression_level,
            compute=compute,
        )
    if storage_options is not None:
        raise ValueError(f"{path}: storage_options are for URLs (s3://...), not local folders")
    path = Path(os.path.abspath(path))
    # Refused at once, without a trace (the lock file would touch the parent folder); checked
    # again below, under the lock.
    check_unlocked(path)
    _check_target(path, overwrite=overwrite)
    if not compute:
        return plan_split_dataset(data, path, block_shape, deferred=True, **options).result
    with writer_lock(path):
        plan = plan_split_dataset(data, path, block_shape, deferred=False, **options)
        try:
            result: SplitDataset = plan.result.compute()
        except BaseException:
            discard(plan.staging, plan.path)
            raise
    return result


class PreparedWrite(NamedTuple):
    """A write's array, checked, and what its files will hold."""

    array: da.Array
    """The data, chunked by block."""
    grid: BlockGrid
    dtype: np.dtype
    key: str
    """The name of the array in each block file."""
    metadata: dict[str, Any]
    """The ``stack_metadata.json`` keys."""


def prepare_write(
    data: Any,
    block_shape: int | Sequence[int | None] | None,
    *,
    deferred: bool,
    compression: str | None,
    compression_level: int | None,
    resolution: Sequence[float] | None,
    axis_order: str | None,
    data_key: str | None,
    axes: Sequence[str] | None,
    scale: Sequence[float | None] | None,
    units: Sequence[str | None] | None,
    time_step: float | None,
) -> PreparedWrite:
    """Check a write's options and data (those of :func:`to_split_dataset`) and chunk the data
    by block; ``deferred`` copies a numpy input into the graph."""
    check_compression(compression, compression_level)
    data_key = check_data_key(data_key)
    block_shape = check_block_shape(block_shape)
    if not hasattr(data, "shape"):
        data = np.asarray(data)  # nested lists and other array-likes without a shape
    if block_shape is None:
        block_shape = _source_block_shape(data)
    shape = tuple(int(n) for n in data.shape)
    if not shape:
        raise ValueError("cannot write a 0-d array as a split dataset")
    grid = BlockGrid.from_spec(shape, block_shape)
    array = _as_dask(data, grid, snapshot=deferred)
    # np.dtype(): dask's array-expr map_blocks may report the scalar type it was given.
    dtype = np.dtype(array.dtype)
    if dtype.kind not in "biufc":
        raise TypeError(f"cannot write {dtype} data to a split dataset")
    physical = writer_physical_options(
        data,
        grid.ndim,
        axes=axes,
        scale=scale,
        units=units,
        time_step=time_step,
        resolution=resolution,
        axis_order=axis_order,
    )
    metadata = _dataset_metadata(grid, physical, resolution=resolution, axis_order=axis_order)
    return PreparedWrite(array, grid, dtype, data_key or f"stack_{grid.ndim}D", metadata)


class StorePlan(NamedTuple):
    """A split dataset write, ready to compute (see :func:`plan_split_dataset`)."""

    result: Delayed
    """Writes the blocks, publishes the dataset and returns it opened."""
    staging: Path
    """The hidden folder the blocks go to, to :func:`discard` if the computation fails."""
    path: Path
    """The dataset folder (absolute)."""


def plan_split_dataset(
    data: Any,
    path: str | os.PathLike[str],
    block_shape: int | Sequence[int | None] | None = None,
    *,
    deferred: bool,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    overwrite: bool = False,
    resolution: Sequence[float] | None = None,
    axis_order: str | None = None,
    data_key: str | None = None,
    axes: Sequence[str] | None = None,
    scale: Sequence[float | None] | None = None,
    units: Sequence[str | None] | None = None,
    time_step: float | None = None,
    durable: bool = True,
) -> StorePlan:
    """Check the options and the target, create the staging folder and build the write's graph.

    The options are :func:`to_split_dataset`'s. With ``deferred`` false the caller computes the
    plan at once and holds the writer lock of ``path`` until it ends (:func:`to_split_dataset`
    computing at once, ``splitds convert``). With true the plan may be computed later and
    elsewhere: a numpy input is copied into the graph, and the publishing task takes the lock.
    """
    # Absolute: the tasks may run after a chdir, or in worker processes started elsewhere.
    path = Path(os.path.abspath(path))
    prepared = prepare_write(
        data,
        block_shape,
        deferred=deferred,
        compression=compression,
        compression_level=compression_level,
        resolution=resolution,
        axis_order=axis_order,
        data_key=data_key,
        axes=axes,
        scale=scale,
        units=units,
        time_step=time_step,
    )
    array, grid, dtype = prepared.array, prepared.grid, prepared.dtype
    staging = _make_staging(path, overwrite=overwrite)
    target = _BlockFileTarget(
        staging,
        grid,
        key=prepared.key,
        compression=compression,
        compression_level=compression_level,
    )
    metadata = prepared.metadata
    try:
        if array.size == 0:
            _write_empty_blocks(target, dtype)
        stored = store_chunks(array, target)
    except BaseException:
        discard(staging, path)
        raise
    published = dask.delayed(_publish, pure=False)(
        stored, staging, path, metadata, overwrite, durable, deferred
    )
    result = dask.delayed(_open_published, pure=False)(published)
    return StorePlan(result, staging, path)

"""Streaming writes: ``SplitDatasetWriter`` appends frames as they arrive from an acquisition.

Frames are copied into a block buffer on the caller's thread; a full block goes to one background
thread that compresses and writes it, so ``append`` only costs a memory copy. Each block is
committed in an order that keeps the folder a valid split dataset at every instant, even if the
process is killed or the machine loses power:

1. the block is written to a hidden ``.<name>.staged`` file (itself written under a temporary
   name and renamed), which is fsynced, and the folder is fsynced;
2. ``stack_metadata.json`` is rewritten atomically with ``shape_full[0]`` covering the block;
3. the staged file is renamed to its block name and the folder is fsynced.

Readers ignore hidden files, so a reader sees the previous dataset until step 2 and the new one
after step 3. Between 2 and 3 the metadata declares one block more than the folder holds, which
opens as the frames on disk (with an ``IncompleteDatasetWarning``). A writer opened with
``append=True`` finishes an interrupted step 3 and removes what a killed writer left behind.

A writer replacing a dataset (``overwrite=True``) writes its first block into a hidden staging
folder beside the target and swaps that folder in (atomically where the system can) once the
block is committed: until then the old dataset is untouched at its path, so a writer killed
before its first block loses nothing; from then on the folder is the new dataset.

The writer holds the folder's writer lock (:mod:`splitds_dask._storage.lock`) for its whole
life, so no other writer of this package can replace, delete or interleave blocks into a folder
being acquired.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import queue
import re
import sys
import threading
import traceback
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

from splitds_dask._daskmodes import to_numpy
from splitds_dask._errors import MetadataError
from splitds_dask._format.metadata import (
    METADATA_NAME,
    find_metadata_file,
    is_split_dataset,
    original_metadata_dict,
    read_metadata_json,
    write_metadata_json,
)
from splitds_dask._format.physical import (
    add_physical_metadata,
    physical_metadata_kwargs,
    resolve_physical_metadata,
)
from splitds_dask._storage.atomic import (
    check_not_symlink,
    check_replaceable,
    discard,
    fsync_dir,
    fsync_file,
    remove_stale_staging,
    remove_temporaries,
    replace_folder,
    staging_path,
)
from splitds_dask._storage.block_file import write_block
from splitds_dask._storage.hdf5_errors import system_errors
from splitds_dask._storage.lock import HAVE_FLOCK, WriterLock, check_unlocked
from splitds_dask._write.array import block_file_name
from splitds_dask._write.options import check_compression, check_data_key, check_positive_int

__all__ = ["SplitDatasetWriter"]

# The lock file earlier versions kept inside the folder: a killed writer's leftover.
_LEGACY_LOCK = ".splitds-writer.lock"
# The physical metadata options (resolution and axis_order alone keep the original's keys only).
_PHYSICAL = ("axes", "scale", "units", "time_step")
_STAGED = re.compile(r"^\.(?P<name>[0-9]+\.h5)\.staged$")
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.partial$")


class _Resumed(NamedTuple):
    """What an existing dataset hands to a writer that continues it."""

    metadata: dict[str, Any]  # its metadata keys, kept in the rewritten file
    rest: np.ndarray  # the frames of its short last block, rewritten with the next frames
    rewrite_metadata: bool  # its metadata declares other frames than its files hold
    physical: dict[str, Any]  # its axes, scale and units (physical_metadata_kwargs)


class SplitDatasetWriter:
    """Write a split dataset frame by frame, as an acquisition produces them.

    Frames (arrays of ``frame_shape``) are stacked along a new axis 0 and cut into blocks of
    ``block_length`` frames, one block file each. The folder is a valid split dataset of the
    frames of every completed block at all times; :meth:`close` writes the last, short block.
    The files have the layout of sashimi's (``0000.h5`` ... with the array under ``stack_4D``
    for 4-D data, Blosc compressed, the original ``stack_metadata.json`` keys), which the original
    ``split_dataset`` package reads.

    Parameters
    ----------
    path : str or Path
        The dataset folder (created if needed).
    frame_shape : sequence of int
        Shape of one frame (e.g. one volume, ``(z, y, x)``). Optional with ``append=True``.
    dtype : dtype
        Data type of the dataset. Optional with ``append=True``.
    block_length : int
        Frames per block file. Optional with ``append=True``.
    compression, compression_level
        As for :func:`to_split_dataset` (default Blosc LZ4, level 5, byte shuffle).
    resolution : sequence of float, optional
        Written to the metadata (default 1 per axis).
    axis_order : str, optional
        Written to the metadata (default ``tzyx`` for 4-D data).
    data_key : str, optional
        Name of the array in each block file (default ``stack_{ndim}D``).
    axes, scale, units : sequence, optional
        Physical metadata, as for :func:`to_split_dataset` (see "Physical metadata" in the
        README): axis names (or a string of one letter per axis, e.g. ``"tzyx"``), the spacing
        along each axis and its unit (None where unknown). With ``append=True``, given ones
        replace the dataset's, others are kept.
    time_step : float, optional
        Seconds between frames: the scale of the ``t`` axis, with unit ``"second"``.
    overwrite : bool, optional
        Replace an existing split dataset at ``path``; a folder that is not a split dataset is
        never replaced. The old dataset stays whole at ``path`` until the first block of the new
        one is written, then the new one (that block) takes its place at once.
    append : bool, optional
        Continue an existing dataset along axis 0 (after its last frame, a short last block being
        completed first); the dataset must be split along axis 0 only. A dataset whose writer was
        killed is resumed after its last complete block. Without a dataset at ``path``, start a
        new one.
    max_pending : int, optional
        Full blocks that may wait for the background writer before ``append`` blocks (bounds
        memory to ``max_pending + 2`` blocks: waiting, being written, being filled).

    Raises
    ------
    FileExistsError
        ``path`` holds a split dataset (without ``overwrite`` or ``append``), a non-empty
        folder that is not one, or is a symbolic link to be replaced (pass its target).
    splitds_dask._storage.lock.WriterLockedError
        A ``BlockingIOError``: another writer is writing ``path``.
    ValueError, TypeError
        An option is invalid (shapes, compression name or level, data key, physical metadata
        that does not fit the frames...); nothing was written.

    Notes
    -----
    An error of the background writer (a full disk, say) is raised, as itself (an ``OSError``
    keeps its ``errno``), by the next :meth:`append`, :meth:`flush` or :meth:`close`. One writer
    at a time: while this one is open, every other writer of this package (another
    ``SplitDatasetWriter``, ``to_split_dataset``, ``splitds convert``...) refuses ``path`` with a
    ``BlockingIOError`` (an advisory ``flock`` beside the folder, which network file systems
    may not honour).

    Examples
    --------
    >>> import numpy as np
    >>> from splitds_dask import SplitDataset, SplitDatasetWriter
    >>> camera = (np.full((30, 64, 64), t, dtype=np.uint16) for t in range(45))
    >>> with SplitDatasetWriter("run/original", frame_shape=(30, 64, 64), dtype="uint16",
    ...                         block_length=20) as writer:
    ...     for volume in camera:
    ...         writer.append(volume)
    >>> ds = SplitDataset("run/original")
    >>> ds.shape, ds.n_blocks, int(ds[44, 0, 0, 0])
    ((45, 30, 64, 64), 3, 44)

    With physical metadata (here 2 volumes per second, planes 7 µm apart, 0.6 µm pixels):

    >>> with SplitDatasetWriter("run/physical", frame_shape=(30, 64, 64), dtype="uint16",
    ...                         block_length=20, axes="tzyx", scale=(None, 7.0, 0.6, 0.6),
    ...                         units=(None, "micrometer", "micrometer", "micrometer"),
    ...                         time_step=0.5) as writer:
    ...     writer.append(np.zeros((3, 30, 64, 64), np.uint16))
    >>> SplitDataset("run/physical").scale
    (0.5, 7.0, 0.6, 0.6)
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        frame_shape: Sequence[int] | None = None,
        dtype: Any = None,
        block_length: int | None = None,
        compression: str | None = "blosc",
        compression_level: int | None = None,
        resolution: Sequence[float] | None = None,
        axis_order: str | None = None,
        data_key: str | None = None,
        axes: Sequence[str] | str | None = None,
        scale: Sequence[float | None] | None = None,
        units: Sequence[str | None] | None = None,
        time_step: float | None = None,
        overwrite: bool = False,
        append: bool = False,
        max_pending: int = 2,
    ) -> None:
        if not HAVE_FLOCK:
            raise NotImplementedError(
                "SplitDatasetWriter locks its folder with fcntl.flock, which this platform "
                f"({sys.platform}) lacks: it runs on POSIX systems (Linux, macOS) only"
            )
        self._path = Path(os.path.abspath(path))
        self._compression = compression
        self._compression_level = compression_level
        # Every option is checked before the folder is touched.
        check_compression(compression, compression_level)
        data_key = check_data_key(data_key)
        check_positive_int("max_pending", max_pending)
        if append and overwrite:
            raise ValueError("append=True and overwrite=True exclude each other")
        physical: dict[str, Any] = {
            "axes": axes,
            "scale": scale,
            "units": units,
            "time_step": time_step,
        }
        physical.update(resolution=resolution, axis_order=axis_order)
        if not (append and is_split_dataset(self._path)):
            if not append or None not in (frame_shape, dtype, block_length):
                self._start_new(frame_shape, dtype, block_length, data_key)
                if any(physical[name] is not None for name in _PHYSICAL):
                    # Refused now, not when the first block is written (nor in the writer thread).
                    resolve_physical_metadata(len(self._frame_shape) + 1, **physical)
            self._precheck_target(overwrite=overwrite)
        # The staging folder of a replacement, until its first block is swapped in.
        self._staging: Path | None = None
        self._lock = WriterLock(self._path)  # refused at once while another writer is at work
        # Every failure from here until the thread starts releases the lock, here alone.
        try:
            remove_stale_staging(self._path)
            existing: _Resumed | None = None
            # Decided again under the lock: another writer may have just finished or started.
            if append and is_split_dataset(self._path):
                self._take_folder()
                existing = self._resume(frame_shape, dtype, block_length, data_key)
            else:
                self._start_new(frame_shape, dtype, block_length, data_key)
                self._prepare_target(overwrite=overwrite)
            self._metadata = self._base_metadata(existing, physical)
            self._start_buffer(existing)
        except BaseException:
            if self._staging is not None:
                discard(self._staging, self._path)
            self._lock.release()
            raise
        self._queue: queue.Queue[tuple[int, np.ndarray, int] | None] = queue.Queue(
            maxsize=max_pending
        )
        self._error: BaseException | None = None
        self._closed = False
        self._thread = threading.Thread(
            target=self._run, name=f"SplitDatasetWriter({self._path.name})", daemon=True
        )
        self._thread.start()

    # --- setup --------------------------------------------------------------------------------

    def _precheck_target(self, *, overwrite: bool) -> None:
        """Refuse, before taking the lock (which touches the parent folder), what
        :meth:`_prepare_target` would refuse whatever the folder's leftovers."""
        check_unlocked(self._path)
        check_not_symlink(self._path)
        if is_split_dataset(self._path):
            check_replaceable(self._path, overwrite=overwrite, replaceable=is_split_dataset)

    def _prepare_target(self, *, overwrite: bool) -> None:
        """Make ``path`` ready for a new dataset, under the lock: a killed writer's files are
        removed, a split dataset is replaced with ``overwrite`` (its replacement is staged until
        the first block), any other content is refused."""
        if self._path.is_dir() and not is_split_dataset(self._path):
            self._remove_leftovers()  # a writer killed before its first block
        check_replaceable(self._path, overwrite=overwrite, replaceable=is_split_dataset)
        if is_split_dataset(self._path):
            self._staging = staging_path(self._path)
            self._staging.mkdir()
            self._folder = self._staging
        else:
            self._path.mkdir(parents=True, exist_ok=True)
            self._folder = self._path
        self._metadata_path = self._folder / METADATA_NAME

    def _take_folder(self) -> None:
        """Write into the existing dataset at ``path`` and name its metadata file."""
        self._folder = self._path
        # Keep the name of an existing metadata file (``fish1_stack_metadata.json``).
        self._metadata_path = find_metadata_file(self._path) or self._path / METADATA_NAME

    def _start_new(
        self,
        frame_shape: Sequence[int] | None,
        dtype: Any,
        block_length: int | None,
        data_key: str | None,
    ) -> None:
        if frame_shape is None or dtype is None or block_length is None:
            raise TypeError("frame_shape, dtype and block_length are required")
        if isinstance(frame_shape, (str, bytes)) or not isinstance(
            frame_shape, (Sequence, np.ndarray)
        ):
            raise TypeError(f"frame_shape must be a sequence of integers, got {frame_shape!r}")
        if any(not isinstance(n, numbers.Integral) or isinstance(n, bool) for n in frame_shape):
            raise TypeError(f"frame_shape must be a sequence of integers, got {frame_shape!r}")
        self._frame_shape = tuple(int(n) for n in frame_shape)
        self._dtype = np.dtype(dtype)
        self._block_length = check_positive_int("block_length", block_length)
        self._key = data_key or f"stack_{len(self._frame_shape) + 1}D"
        self._n_blocks = 0
        self._n_committed = 0
        self._validate()

    def _start_buffer(self, existing: _Resumed | None) -> None:
        """Allocate the block buffer, holding the short last block of a resumed dataset."""
        self._buffer = np.empty((self._block_length, *self._frame_shape), self._dtype)
        self._fill = 0
        if existing is not None:
            self._fill = existing.rest.shape[0]
            self._buffer[: self._fill] = existing.rest
            if existing.rewrite_metadata:
                # Declare what is on disk, the short last block included.
                self._write_metadata(self._n_committed + self._fill)

    def _validate(self) -> None:
        if any(n < 0 for n in self._frame_shape):
            raise ValueError(f"frame_shape {self._frame_shape} has a negative length")
        if self._block_length < 1:
            raise ValueError(f"block_length must be a positive integer, got {self._block_length}")
        if self._dtype.kind not in "biufc":
            raise TypeError(f"cannot write {self._dtype} data to a split dataset")

    def _resume(
        self,
        frame_shape: Sequence[int] | None,
        dtype: Any,
        block_length: int | None,
        data_key: str | None,
    ) -> _Resumed:
        from splitds_dask._dataset import IncompleteDatasetWarning, SplitDataset

        self._recover()
        with warnings.catch_warnings():
            # A killed writer or an acquisition stopped early: continue after the data on disk.
            warnings.simplefilter("ignore", IncompleteDatasetWarning)
            ds = SplitDataset(self._path)
        declared = ds.parsed_metadata
        length = declared.block_shape[0] if declared.block_shape else None
        if ds.ndim < 1 or ds.grid.grid[1:] != (1,) * (ds.ndim - 1) or any(ds.padding):
            raise MetadataError(
                f"{self._path}: can only append to a dataset split along axis 0 alone, without "
                f"padding (blocks {ds.grid.grid}, padding {ds.padding})"
            )
        found_shape = tuple(ds.shape[1:])
        found_length = length if length is not None else ds.shape[0]
        if frame_shape is not None:
            self._check_same("frame_shape", tuple(frame_shape), found_shape)
        if dtype is not None:
            self._check_same("dtype", np.dtype(dtype), ds.dtype)
        if block_length is not None:
            self._check_same("block_length", block_length, found_length)
        self._frame_shape = found_shape
        self._dtype = np.dtype(ds.dtype)
        self._block_length = int(found_length)
        self._key = data_key or ds.data_key
        n = ds.shape[0]
        self._n_blocks = n // self._block_length
        self._n_committed = self._n_blocks * self._block_length
        return _Resumed(
            metadata=ds.metadata,
            rest=ds[self._n_committed : n],
            rewrite_metadata=tuple(declared.shape) != tuple(ds.shape),
            physical=physical_metadata_kwargs(ds),
        )

    def _check_same(self, name: str, given: object, found: object) -> None:
        if given != found:
            raise ValueError(
                f"{self._path}: cannot append with {name}={given!r}: the dataset has {found!r}"
            )

    def _remove_leftovers(self) -> None:
        """Empty a folder holding only what a writer killed before its first block left
        (temporary and staged block files); a folder holding anything else is left alone."""
        entries = list(os.scandir(self._path))
        leftovers = [
            e
            for e in entries
            if e.is_file(follow_symlinks=False)
            and (_STAGED.match(e.name) or _TEMPORARY.match(e.name) or e.name == _LEGACY_LOCK)
        ]
        if leftovers and len(leftovers) == len(entries):
            for entry in leftovers:
                os.unlink(entry.path)

    def _recover(self) -> None:
        """Finish or undo what a killed writer left: staged blocks, temporary files."""
        metadata = read_metadata_json(self._metadata_path)
        block = metadata.block_shape[0] if metadata.block_shape else None
        declared = math.ceil(metadata.shape[0] / block) if block else 1
        for entry in os.scandir(self._path):
            staged = _STAGED.match(entry.name)
            if staged is not None:
                number = int(staged["name"][:-3])
                if number < declared:
                    # The metadata already counts this block: step 3 was interrupted.
                    os.replace(entry.path, self._path / staged["name"])
                else:
                    os.unlink(entry.path)
        remove_temporaries(self._path)
        fsync_dir(self._path)

    def _base_metadata(self, existing: _Resumed | None, physical: dict[str, Any]) -> dict[str, Any]:
        """The metadata keys every rewrite of the metadata file holds, physical ones included
        (checked here, before the first block, for an appended dataset's frame shape)."""
        ndim = len(self._frame_shape) + 1
        resolution, axis_order = physical["resolution"], physical["axis_order"]
        metadata = original_metadata_dict(
            (0, *self._frame_shape),
            (self._block_length, *self._frame_shape),
            resolution=resolution,
            axis_order=axis_order,
        )
        if existing is not None:
            # Keep what the dataset's writer recorded (voxel_size, crop, ...).
            kept = dict(existing.metadata)
            if resolution is not None:
                kept["resolution"] = metadata["resolution"]
            if axis_order is not None:
                kept["axis_order"] = axis_order
            kept["shape_block"] = metadata["shape_block"]
            metadata = kept
        # Shorter is what the original reports for 4-D data without the key: (1, 1, 1).
        if len(metadata.get("resolution") or [0] * ndim) > ndim:
            raise ValueError(f"resolution {metadata['resolution']} has more than {ndim} entries")
        if existing is not None:
            physical = _continued(existing.physical, physical)
        return add_physical_metadata(metadata, physical)

    # --- writing ------------------------------------------------------------------------------

    def _write_metadata(self, n_frames: int) -> None:
        metadata = dict(self._metadata)
        metadata["shape_full"] = [int(n_frames), *self._frame_shape]
        write_metadata_json(self._folder, metadata, name=self._metadata_path.name)

    def _commit(self, index: int, data: np.ndarray, n_frames: int) -> None:
        """Write block ``index`` and the metadata for ``n_frames`` (see the module docstring)."""
        folder = self._folder
        name = block_file_name(index, index + 1)
        staged = folder / f".{name}.staged"
        with system_errors(folder / name):  # a full disk stays an OSError with its errno
            write_block(
                staged,
                data,
                key=self._key,
                compression=self._compression,
                compression_level=self._compression_level,
                # The short last block is chunked as the full ones are.
                block_shape=(self._block_length, *self._frame_shape),
            )
        fsync_file(staged)
        fsync_dir(folder)
        self._write_metadata(n_frames)
        os.replace(staged, folder / name)
        fsync_dir(folder)
        if self._staging is not None:
            # The replacement's first block is complete: it takes the old dataset's place.
            replace_folder(self._staging, self._path)
            self._staging = None
            self._folder = self._path
            self._metadata_path = self._path / self._metadata_path.name

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if self._error is None:  # after an error keep draining: puts never block
                    self._commit(*item)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                _drop_frames(exc)
                note = (
                    f"{self._path}: writing block {item[0]} failed in the background "
                    "writer; the dataset holds the blocks before it"
                )
                # add_note is Python 3.11+; on 3.10 the same list is set by hand (PEP 678).
                notes = [*getattr(exc, "__notes__", ()), note]
                setattr(exc, "__notes__", notes)  # noqa: B010 - 3.10's BaseException lacks it
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_if_failed(self) -> None:
        """Raise the background writer's error itself: its type (an ``OSError`` with its
        ``errno`` for a full disk) is what callers handle."""
        if self._error is not None:
            raise self._error

    def append(self, frames: Any) -> None:
        """Append one frame (``frame_shape``) or a batch of frames (``(n, *frame_shape)``).

        The frames are copied, so the caller may reuse its buffer as soon as this returns.

        Raises
        ------
        ValueError
            The frames do not have the dataset's frame shape, or the writer is closed.
        TypeError
            The frames' dtype cannot be cast safely to the dataset's.
        OSError
            Writing an earlier block failed (the background writer's error itself, whatever
            its type).
        """
        if self._closed:
            raise ValueError(f"{self._path}: the writer is closed")
        self._raise_if_failed()
        frames = to_numpy(frames)
        if frames.shape == self._frame_shape:
            frames = frames[np.newaxis]
        elif frames.shape[1:] != self._frame_shape:
            raise ValueError(
                f"frames of shape {frames.shape} are neither one frame of shape "
                f"{self._frame_shape} nor a batch of them"
            )
        if not np.can_cast(frames.dtype, self._dtype, casting="safe"):
            raise TypeError(f"cannot append {frames.dtype} frames to a {self._dtype} dataset")
        done = 0
        while done < len(frames):
            take = min(len(frames) - done, self._block_length - self._fill)
            self._buffer[self._fill : self._fill + take] = frames[done : done + take]
            self._fill += take
            done += take
            if self._fill == self._block_length:
                self._submit()

    def _submit(self) -> None:
        """Hand the buffer to the background writer and start a new one."""
        self._n_committed += self._fill
        self._queue.put((self._n_blocks, self._buffer[: self._fill], self._n_committed))
        self._n_blocks += 1
        self._buffer = np.empty_like(self._buffer)
        self._fill = 0

    def flush(self) -> None:
        """Wait until every full block appended so far is in the dataset.

        Frames of the current, incomplete block stay buffered (see :meth:`close`).
        """
        if not self._closed:
            self._queue.join()
        self._raise_if_failed()

    def close(self) -> None:
        """Write the last (short) block and the final metadata; wait for every write.

        Raises
        ------
        OSError
            Writing a block failed (the background writer's error itself, whatever its type;
            the folder holds the blocks written before it). A replacement that failed before
            its first block leaves the old dataset in place.
        """
        if self._closed:
            return
        self._closed = True
        try:
            if self._fill or (self._n_blocks == 0 and self._error is None):
                # A dataset with no frame at all still gets its (empty) block file.
                self._submit()
            self._queue.put(None)
            self._thread.join()
        finally:
            if self._staging is not None:  # the replacement never got a block: keep the old
                discard(self._staging, self._path)
                self._staging = None
            self._lock.release()
        self._raise_if_failed()

    def __enter__(self) -> SplitDatasetWriter:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
            return
        # Keep the frames appended before the error, but let the error itself propagate.
        with contextlib.suppress(Exception):
            self.close()

    def __del__(self) -> None:
        # A writer dropped without close(): stop the thread; the last short block is not written.
        if getattr(self, "_thread", None) is not None and not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._queue.put_nowait(None)

    # --- state --------------------------------------------------------------------------------

    @property
    def path(self) -> Path:
        """The dataset folder."""
        return self._path

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return self._frame_shape

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def block_length(self) -> int:
        return self._block_length

    @property
    def n_frames(self) -> int:
        """Frames appended so far (in the dataset, or waiting in the current block)."""
        return self._n_committed + self._fill

    def __repr__(self) -> str:
        return (
            f"<SplitDatasetWriter {str(self._path)!r} frames={self.n_frames} "
            f"frame_shape={self._frame_shape} dtype={self._dtype} "
            f"block_length={self._block_length}>"
        )


def _continued(found: dict[str, Any], given: dict[str, Any]) -> dict[str, Any]:
    """The physical options of a writer continuing a dataset that records ``found``: those
    given replace the dataset's, the others are kept (none given: the metadata is kept as is)."""
    if all(given[name] is None for name in _PHYSICAL):
        return given
    out = {**given}
    axes = given["axes"] or given["axis_order"] or found["axes"]
    out["axes"] = tuple(axes)
    if given["scale"] is None and given["resolution"] is None:
        scale = list(found["scale"])
        units = list(given["units"] or found["units"])
        if given["time_step"] is not None and "t" in out["axes"]:
            # The new time step replaces the recorded one.
            t = out["axes"].index("t")
            scale[t] = None
            units[t] = None if given["units"] is None else units[t]
        out["scale"], out["units"] = tuple(scale), tuple(units)
    elif given["units"] is None:
        out["units"] = found["units"]
    return out


def _drop_frames(exc: BaseException) -> None:
    """Free what the failed write's frames hold (h5py objects) now, in the writer thread.

    Kept alive by the stored exception, they would be freed later by another thread, after
    their file was closed, which HDF5 reports as errors ("Can't decrement id ref count").
    """
    seen: set[int] = set()
    error: BaseException | None = exc
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        traceback.clear_frames(error.__traceback__)
        error = error.__cause__ or error.__context__

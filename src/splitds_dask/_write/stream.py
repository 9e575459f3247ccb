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
"""

from __future__ import annotations

import contextlib
import math
import os
import queue
import re
import sys
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import Any, NamedTuple

import numpy as np

try:
    import fcntl
except ImportError:  # Windows: the writer's lock needs POSIX advisory locks
    fcntl = None  # type: ignore[assignment]

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
from splitds_dask._storage.atomic import (
    check_replaceable,
    fsync_dir,
    fsync_file,
    remove_stale_staging,
    remove_temporaries,
    retire,
)
from splitds_dask._storage.block_file import write_block
from splitds_dask._write.array import block_file_name

__all__ = ["SplitDatasetWriter"]

_LOCK_NAME = ".splitds-writer.lock"
_STAGED = re.compile(r"^\.(?P<name>[0-9]+\.h5)\.staged$")


class _Resumed(NamedTuple):
    """What an existing dataset hands to a writer that continues it."""

    metadata: dict[str, Any]  # its metadata keys, kept in the rewritten file
    rest: np.ndarray  # the frames of its short last block, rewritten with the next frames
    rewrite_metadata: bool  # its metadata declares other frames than its files hold


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
    overwrite : bool, optional
        Replace an existing split dataset at ``path``; a folder that is not a split dataset is
        never replaced.
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
        ``path`` holds a split dataset (without ``overwrite`` or ``append``) or a non-empty
        folder that is not one.

    Notes
    -----
    An error of the background writer (a full disk, say) is raised by the next :meth:`append`
    or by :meth:`close`. One writer at a time: a second writer on the same folder fails with
    ``BlockingIOError`` (an advisory ``flock``, which network file systems may not honour).

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
        overwrite: bool = False,
        append: bool = False,
        max_pending: int = 2,
    ) -> None:
        if fcntl is None:
            raise NotImplementedError(
                "SplitDatasetWriter locks its folder with fcntl.flock, which this platform "
                f"({sys.platform}) lacks: it runs on POSIX systems (Linux, macOS) only"
            )
        self._path = Path(os.path.abspath(path))
        self._compression = compression
        self._compression_level = compression_level
        if max_pending < 1:
            raise ValueError(f"max_pending must be at least 1, got {max_pending}")
        if append and overwrite:
            raise ValueError("append=True and overwrite=True exclude each other")
        remove_stale_staging(self._path)
        self._lock_fd = -1
        # Every failure from here until the thread starts releases the folder's lock, here alone.
        try:
            if (self._path / _LOCK_NAME).exists():
                self._lock_fd = self._lock()  # fails while another writer is at work
            existing: _Resumed | None = None
            if append and is_split_dataset(self._path):
                self._take_folder()
                existing = self._resume(frame_shape, dtype, block_length, data_key)
            else:
                if frame_shape is None or dtype is None or block_length is None:
                    raise TypeError("frame_shape, dtype and block_length are required")
                self._clear_target(overwrite=overwrite)
                self._take_folder()
                self._start_new(frame_shape, dtype, block_length, data_key)
            self._validate()
            self._metadata = self._base_metadata(existing, resolution, axis_order)
            self._start_buffer(existing)
        except BaseException:
            self._unlock()
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

    def _lock(self) -> int:
        fd = os.open(self._path / _LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(fd)
            raise BlockingIOError(
                f"{self._path}: another SplitDatasetWriter is writing this dataset"
            ) from None
        return fd

    def _unlock(self) -> None:
        if self._lock_fd >= 0:
            with contextlib.suppress(OSError):
                (self._path / _LOCK_NAME).unlink()
            os.close(self._lock_fd)  # releases the flock
            self._lock_fd = -1

    def _clear_target(self, *, overwrite: bool) -> None:
        """Make ``path`` ready for a new dataset: a killed writer's files or, with ``overwrite``,
        the split dataset there removed; any other content refused."""
        if self._lock_fd >= 0 and not is_split_dataset(self._path):
            self._remove_leftovers()  # a writer killed before its first block
        check_replaceable(self._path, overwrite=overwrite, replaceable=is_split_dataset)
        if is_split_dataset(self._path):
            self._unlock()
            retire(self._path)

    def _take_folder(self) -> None:
        """Create the folder, hold its lock and name its metadata file."""
        self._path.mkdir(parents=True, exist_ok=True)
        if self._lock_fd < 0:
            self._lock_fd = self._lock()
        # Keep the name of an existing metadata file (``fish1_stack_metadata.json``).
        self._metadata_path = find_metadata_file(self._path) or self._path / METADATA_NAME

    def _start_new(
        self, frame_shape: Sequence[int], dtype: Any, block_length: int, data_key: str | None
    ) -> None:
        self._frame_shape = tuple(int(n) for n in frame_shape)
        self._dtype = np.dtype(dtype)
        self._block_length = int(block_length)
        self._key = data_key or f"stack_{len(self._frame_shape) + 1}D"
        self._n_blocks = 0
        self._n_committed = 0

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
        )

    def _check_same(self, name: str, given: object, found: object) -> None:
        if given != found:
            raise ValueError(
                f"{self._path}: cannot append with {name}={given!r}: the dataset has {found!r}"
            )

    def _remove_leftovers(self) -> None:
        """Delete the temporary and staged files of a killed writer (nothing else)."""
        remove_temporaries(self._path)
        for entry in os.scandir(self._path):
            if _STAGED.match(entry.name) and entry.is_file():
                os.unlink(entry.path)
        if [e.name for e in os.scandir(self._path)] == [_LOCK_NAME]:
            self._unlock()

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

    def _base_metadata(
        self,
        existing: _Resumed | None,
        resolution: Sequence[float] | None,
        axis_order: str | None,
    ) -> dict[str, Any]:
        ndim = len(self._frame_shape) + 1
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
        if len(metadata.get("resolution") or [0] * ndim) != ndim:
            raise ValueError(f"resolution {metadata['resolution']} must have {ndim} entries")
        return metadata

    # --- writing ------------------------------------------------------------------------------

    def _write_metadata(self, n_frames: int) -> None:
        metadata = dict(self._metadata)
        metadata["shape_full"] = [int(n_frames), *self._frame_shape]
        write_metadata_json(self._path, metadata, name=self._metadata_path.name)

    def _commit(self, index: int, data: np.ndarray, n_frames: int) -> None:
        """Write block ``index`` and the metadata for ``n_frames`` (see the module docstring)."""
        name = block_file_name(index, index + 1)
        staged = self._path / f".{name}.staged"
        write_block(
            staged,
            data,
            key=self._key,
            compression=self._compression,
            compression_level=self._compression_level,
        )
        fsync_file(staged)
        fsync_dir(self._path)
        self._write_metadata(n_frames)
        os.replace(staged, self._path / name)
        fsync_dir(self._path)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            try:
                if self._error is None:  # after an error keep draining: puts never block
                    self._commit(*item)
            except BaseException as exc:  # noqa: BLE001 - re-raised on the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()

    def _raise_if_failed(self) -> None:
        if self._error is not None:
            raise RuntimeError(
                f"{self._path}: writing a block failed: {self._error}"
            ) from self._error

    def append(self, frames: Any) -> None:
        """Append one frame (``frame_shape``) or a batch of frames (``(n, *frame_shape)``).

        The frames are copied, so the caller may reuse its buffer as soon as this returns.

        Raises
        ------
        ValueError
            The frames do not have the dataset's frame shape, or the writer is closed.
        TypeError
            The frames' dtype cannot be cast safely to the dataset's.
        RuntimeError
            Writing an earlier block failed.
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
        RuntimeError
            Writing a block failed (the folder holds the blocks written before it).
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
            self._unlock()
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

"""Exception hierarchy.

Every error the package raises on purpose derives from :class:`SplitDatasetError`, which is a
:class:`ValueError` so that callers written for the original package (napari readers catch
``IndexError``/``KeyError``/``ValueError``) keep working.
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = [
    "BlockError",
    "BlockIndexError",
    "FormatError",
    "MetadataError",
    "NotASplitDatasetError",
    "NotReferenceableError",
    "OutsideFolderError",
    "SplitDatasetError",
    "WriterLockedError",
    "damaged_block",
]


class SplitDatasetError(ValueError):
    """Base class of every error raised by splitds_dask."""


class NotASplitDatasetError(SplitDatasetError):
    """The path is not a split dataset (no metadata, no block files, not a folder)."""


class MetadataError(SplitDatasetError):
    """The metadata exists but is malformed or inconsistent with the files."""


class BlockError(SplitDatasetError):
    """A block file is missing, unreadable, too short or of the wrong dtype.

    Attributes
    ----------
    path : str
        The block file.
    block : tuple of int
        The block's position in the block grid.
    """

    def __init__(self, message: str, *, path: object = None, block: tuple[int, ...] = ()) -> None:
        super().__init__(message)
        self.path = str(path) if path is not None else None
        self.block = tuple(block)


class BlockIndexError(IndexError, SplitDatasetError):
    """A block index (linear or cartesian) outside the block grid.

    Both an :class:`IndexError` (what indexing code expects) and a :class:`ValueError` (what the
    original package raised, through ``np.unravel_index``).
    """


class FormatError(SplitDatasetError):
    """A file in another format (``.npy``, TIFF, HDF5, zarr, OME-Zarr, PNG) is missing,
    unreadable, or cannot hold the data: raised by the conversions of the command line."""


class NotReferenceableError(SplitDatasetError):
    """The dataset's layout cannot be described by Zarr chunk references (kerchunk).

    Raised by :func:`~splitds_dask.kerchunk_references` for block files whose HDF5 chunks do
    not form one regular grid over the whole array, or whose bytes a Zarr reader cannot decode
    with one codec (another filter, a byte-swapped type, a chunk stored without Blosc...).

    Attributes
    ----------
    path : str
        The block file (or the dataset folder) the layout fails in.
    """

    def __init__(self, message: str, *, path: object) -> None:
        super().__init__(message)
        self.path = str(path)


class OutsideFolderError(BlockError):
    """A block file, or its array, reads data outside the dataset folder (not allowed)."""


class WriterLockedError(BlockingIOError):
    """Another writer holds the folder's writer lock.

    A ``BlockingIOError`` (so an ``OSError``, ``errno.EAGAIN``): the folder is busy, not bad.

    Attributes
    ----------
    path : str or Path
        The dataset folder.
    pid : int or None
        The process holding the lock, where it recorded itself.
    """

    def __init__(self, path: object, pid: int | None) -> None:
        holder = f"process {pid}" if pid is not None else "another process"
        super().__init__(
            f"{path}: another writer ({holder}) is writing this split dataset; "
            "wait for it to finish or stop it"
        )
        self.errno = errno.EAGAIN
        self.path = path
        self.pid = pid


@contextmanager
def damaged_block(path: object, block: tuple[int, ...]) -> Iterator[None]:
    """Turn whatever h5py raises on a damaged file into a :class:`BlockError` naming it.

    A corrupted HDF5 file can fail in any call (``RuntimeError`` from a broken link table,
    ``TypeError``/``KeyError`` from garbled names, ``OSError`` from a bad chunk); callers get
    one error type that names the file and the block.
    """
    try:
        yield
    except (SplitDatasetError, MemoryError):
        raise
    except Exception as exc:
        raise BlockError(
            f"block {tuple(block)} ({path}): damaged file: {type(exc).__name__}: {exc}",
            path=path,
            block=block,
        ) from exc

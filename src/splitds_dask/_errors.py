"""Exception hierarchy.

Every error the package raises on purpose derives from :class:`SplitDatasetError`, which is a
:class:`ValueError` so that callers written for the original package (napari readers catch
``IndexError``/``KeyError``/``ValueError``) keep working.
"""

from __future__ import annotations

__all__ = [
    "BlockError",
    "BlockIndexError",
    "MetadataError",
    "NotASplitDatasetError",
    "SplitDatasetError",
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

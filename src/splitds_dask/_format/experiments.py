"""Finding the split datasets inside an experiment folder.

Acquisition and analysis programs put several datasets in one experiment folder: sashimi and
brunoise write ``<exp>/original/``, fimpy adds ``<exp>/aligned/`` (which also holds a
``shifts_sobel.h5``), ``<exp>/dff/`` and more, and brunoise's two-channel runs write
``<exp>/original/green/`` and ``<exp>/original/red/``. The search reads only metadata: a
``*stack_metadata.json``, or for a legacy dataset (numbered ``.h5`` files, no json) the
``/stack_metadata`` group of its last block file. No block data is read.

The search is bounded, so that pointing it at ``/`` or a huge tree returns quickly: it goes at
most ``max_depth`` folders down, looks at most at :data:`MAX_FOLDERS` folders and lists at most
:data:`MAX_ENTRIES` entries (a dataset's ``stack_metadata.json`` is found without listing its
block files), and stops after ``limit`` datasets. It never descends into a dataset, skips hidden folders (names starting with
``.``, among them our writers' staging folders) and follows a link to a folder only when it
stays inside the searched folder (each folder is looked at once, so links cannot loop).

A dataset whose metadata cannot be read does not stop the search: :func:`find_datasets` leaves
it out (every record it returns has a known shape), and :func:`survey` reports it as
``unreadable`` with the error's message.
"""

from __future__ import annotations

import os
import re
import stat
from collections import deque
from pathlib import Path
from typing import NamedTuple

from splitds_dask._errors import NotASplitDatasetError, SplitDatasetError
from splitds_dask._format.files import find_block_files
from splitds_dask._format.geometry import normalize_block_shape
from splitds_dask._format.metadata import (
    METADATA_NAME,
    DatasetMetadata,
    find_metadata_file,
    read_legacy_metadata,
    read_metadata_json,
)
from splitds_dask._storage.containment import check_block_file, check_metadata_file

__all__ = [
    "MAX_FOLDERS",
    "FolderSurvey",
    "FoundDataset",
    "Unreadable",
    "channel_datasets",
    "find_datasets",
    "survey",
]

MAX_FOLDERS = 4096
"""At most this many folders are looked at by one search."""

MAX_ENTRIES = 200_000
"""At most this many folder entries are listed by one search. A dataset with the usual
``stack_metadata.json`` is recognised without listing its (maybe a million) block files."""

_METADATA_SUFFIX = "stack_metadata.json"
# A name a legacy block file may have (<stem><number>.h5); the files module decides for real.
_NUMBERED_H5 = re.compile(r"[0-9]+\.h5$")


class FoundDataset(NamedTuple):
    """A split dataset found inside a folder.

    Attributes
    ----------
    path : Path
        The dataset folder.
    name : str
        Its path relative to the searched folder, with ``/`` separators (``"."`` for the
        searched folder itself).
    shape : tuple of int
        The shape its metadata declares (the files may hold less when an acquisition stopped
        early: opening the dataset tells).
    block_shape : tuple of int
        The shape of its blocks, one entry per axis (clamped to ``shape``).
    """

    path: Path
    name: str
    shape: tuple[int, ...]
    block_shape: tuple[int, ...]


class Unreadable(NamedTuple):
    """A folder that looks like a dataset but whose metadata cannot be read."""

    path: Path
    name: str
    message: str


class FolderSurvey(NamedTuple):
    """What a search of a folder found.

    Attributes
    ----------
    datasets : tuple of FoundDataset
        The datasets, sorted by name.
    unreadable : tuple of Unreadable
        Folders with dataset metadata that cannot be read, sorted by name.
    complete : bool
        False when a bound (depth, folders looked at, ``limit``) stopped the search early.
    """

    datasets: tuple[FoundDataset, ...]
    unreadable: tuple[Unreadable, ...]
    complete: bool

    @property
    def is_dataset(self) -> bool:
        """Whether the searched folder is itself a dataset (found as ``"."``), maybe damaged."""
        names = [found.name for found in self.datasets] + [bad.name for bad in self.unreadable]
        return "." in names


class _Listing(NamedTuple):
    """One pass over a folder's entries (``entries`` of them; cut short if ``truncated``)."""

    has_metadata: bool
    has_numbered_h5: bool
    subfolders: list[Path]
    entries: int
    truncated: bool


def _inside(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip(os.sep) + os.sep)


def _list_folder(folder: Path, real_root: str, budget: int = MAX_ENTRIES) -> _Listing:
    has_metadata = has_numbered = truncated = False
    subfolders: list[Path] = []
    count = 0
    with os.scandir(folder) as entries:
        for entry in entries:
            if count >= budget:
                truncated = True
                break
            count += 1
            name = entry.name
            if name.startswith("."):
                continue
            try:
                if entry.is_dir(follow_symlinks=False):
                    subfolders.append(Path(entry.path))
                elif entry.is_symlink() and entry.is_dir():
                    if _inside(os.path.realpath(entry.path), real_root):
                        subfolders.append(Path(entry.path))
                elif name.endswith(_METADATA_SUFFIX):
                    has_metadata = True
                elif _NUMBERED_H5.search(name):
                    has_numbered = True
            except OSError:  # vanished or unreadable entry: not part of any dataset we can list
                continue
    return _Listing(has_metadata, has_numbered, subfolders, count, truncated)


def _is_file(path: Path) -> bool:
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except (OSError, ValueError):  # missing, not allowed, a name too long...
        return False


def _read_json(metadata_path: Path, folder: Path) -> DatasetMetadata:
    check_metadata_file(metadata_path, folder)
    return read_metadata_json(metadata_path)


def _read(folder: Path, listing: _Listing) -> DatasetMetadata | None:
    """The metadata of ``folder`` if it is a dataset, else None.

    Raises :class:`SplitDatasetError` (never :class:`NotASplitDatasetError`) when it is one
    whose metadata cannot be read.
    """
    metadata_path = find_metadata_file(folder) if listing.has_metadata else None
    if metadata_path is not None:
        return _read_json(metadata_path, folder)
    if not listing.has_numbered_h5:
        return None
    try:
        files = find_block_files(folder)
    except NotASplitDatasetError:  # numbered files that are no blocks (shifts_2.h5, strays)
        return None
    last = next(
        n for n, ok in zip(reversed(files.names), reversed(files.present), strict=True) if ok
    )
    path = folder / last
    check_block_file(path, block=(files.count - 1,))
    try:
        return read_legacy_metadata(path)
    except NotASplitDatasetError:  # no /stack_metadata group: just numbered HDF5 files
        return None


def _name(folder: Path, root: Path) -> str:
    relative = folder.relative_to(root).as_posix()
    return relative if relative else "."


def survey(folder: str | os.PathLike[str], *, max_depth: int = 3, limit: int = 256) -> FolderSurvey:
    """The split datasets inside ``folder``, and those whose metadata cannot be read.

    Parameters
    ----------
    folder
        The folder to search (a dataset itself gives one record named ``"."``).
    max_depth
        How many folders down to look (0: ``folder`` itself only).
    limit
        Stop after this many datasets (readable or not).

    Raises
    ------
    NotASplitDatasetError
        ``folder`` is not a folder.
    """
    root = Path(folder)
    if not root.is_dir():
        raise NotASplitDatasetError(f"{root}: not a folder")
    real_root = os.path.realpath(root)
    found: list[FoundDataset] = []
    unreadable: list[Unreadable] = []
    seen: set[str] = set()
    queue: deque[tuple[Path, int]] = deque([(root, 0)])
    visited = listed = 0
    complete = True
    # Breadth first, so that bounds cut the deepest folders and shallow datasets are found.
    while queue:
        if visited >= MAX_FOLDERS or len(found) + len(unreadable) >= limit:
            complete = False
            break
        current, depth = queue.popleft()
        real = os.path.realpath(current)
        if real in seen:
            continue
        seen.add(real)
        visited += 1
        listing: _Listing | None = None
        exact = current / METADATA_NAME
        if not _is_file(exact):  # what every writer names it: then no listing is needed
            if listed >= MAX_ENTRIES:
                complete = False
                break
            try:
                listing = _list_folder(current, real_root, MAX_ENTRIES - listed)
            except OSError:  # an unreadable folder: nothing to find in it
                continue
            listed += listing.entries
            complete = complete and not listing.truncated
        try:
            metadata = _read_json(exact, current) if listing is None else _read(current, listing)
        except SplitDatasetError as exc:
            unreadable.append(Unreadable(current, _name(current, root), str(exc)))
            continue
        except OSError as exc:  # a block file vanished or cannot be stat'ed
            unreadable.append(Unreadable(current, _name(current, root), f"{current}: {exc}"))
            continue
        if metadata is not None:
            block_shape = normalize_block_shape(metadata.block_shape, metadata.shape)
            found.append(FoundDataset(current, _name(current, root), metadata.shape, block_shape))
            continue  # never inside a dataset
        if listing is None:
            continue  # not reached: a stack_metadata.json gives a dataset or an unreadable one
        if depth >= max_depth:
            if listing.subfolders:
                complete = False
            continue
        queue.extend((sub, depth + 1) for sub in sorted(listing.subfolders))
    return FolderSurvey(
        tuple(sorted(found, key=lambda d: d.name)),
        tuple(sorted(unreadable, key=lambda u: u.name)),
        complete,
    )


def find_datasets(
    folder: str | os.PathLike[str], *, max_depth: int = 3, limit: int = 256
) -> tuple[FoundDataset, ...]:
    """The split datasets inside ``folder``, sorted by name.

    Only metadata is read. Datasets whose metadata cannot be read are left out (see
    :func:`survey` to list them); the search never descends into a dataset and is bounded by
    ``max_depth``, ``limit``, :data:`MAX_FOLDERS` and :data:`MAX_ENTRIES`.

    Parameters
    ----------
    folder
        The folder to search (a dataset itself gives one record named ``"."``).
    max_depth
        How many folders down to look (0: ``folder`` itself only).
    limit
        Stop after this many datasets.

    Raises
    ------
    NotASplitDatasetError
        ``folder`` is not a folder.

    Examples
    --------
    >>> from splitds_dask._format.experiments import find_datasets
    >>> [(d.name, d.shape) for d in find_datasets("experiment")]  # doctest: +SKIP
    [('aligned', (30, 4, 64, 64)), ('original', (30, 4, 64, 64))]
    """
    return survey(folder, max_depth=max_depth, limit=limit).datasets


def channel_datasets(folder: str | os.PathLike[str]) -> tuple[FoundDataset, ...] | None:
    """The channels of a brunoise two-channel run, or None if ``folder`` is not one.

    Such a run writes ``<exp>/original/green/`` and ``<exp>/original/red/``, each a split
    dataset of the same shape, and no metadata in ``<exp>/original`` itself. ``folder`` may be
    ``<exp>`` or ``<exp>/original``.

    Returns
    -------
    tuple of FoundDataset or None
        The channel datasets in name order (``green``, ``red``), named relative to
        ``<exp>/original``.
    """
    try:
        return _channels(Path(folder))
    except (SplitDatasetError, OSError):  # unreadable: not a run we can describe
        return None


def _channels(base: Path) -> tuple[FoundDataset, ...] | None:
    if (base / "original").is_dir() and not (base / "green").is_dir():
        base = base / "original"
    if not base.is_dir():
        return None
    if _read(base, _list_folder(base, os.path.realpath(base))) is not None:
        return None  # a dataset itself
    channels = []
    for name in ("green", "red"):
        if not (base / name).is_dir():
            return None
        found = survey(base / name, max_depth=0, limit=1).datasets
        if not found:
            return None
        channels.append(found[0]._replace(name=name))
    if channels[0].shape != channels[1].shape:
        return None
    return tuple(channels)

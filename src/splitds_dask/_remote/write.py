"""Writing a split dataset to a store that fsspec writes (S3, GCS, a local ``file://`` URL).

Each store task writes its block file to a local temporary file and uploads it, so blocks are
built and uploaded in parallel, as many at a time as dask runs tasks. The blocks' chunk-map
sidecar (:mod:`splitds_dask._storage.chunkmap_file`) follows them, and the metadata file is
uploaded last, as one object: a reader, which opens a dataset by its metadata, never sees one
before all its blocks (and their sidecar) are there.

Object stores cannot rename a folder, so a dataset cannot be swapped for another in one step.
An existing dataset is therefore never replaced, ``overwrite`` or not (a reader that opened it
could read a mix of old and new blocks, and a crash would leave neither): write to a new URL, or
remove the old dataset first. What a write leaves when it is killed is recognised by the marker
it uploads first (:data:`WRITING_MARKER`): blocks without metadata, which no reader opens as a
dataset, and which the next write to that URL removes once they have been left alone for
:data:`LEFTOVERS_QUIET` seconds (a request the killed writer sent may still land until then). A
write that fails removes the blocks it uploaded and leaves its marker, for the same reason: its
other tasks may still be uploading.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask
import numpy as np

from splitds_dask._daskmodes import store_chunks
from splitds_dask._format.geometry import BlockGrid
from splitds_dask._format.metadata import METADATA_NAME, metadata_json_bytes
from splitds_dask._remote.location import RemoteFolder
from splitds_dask._write.array import (
    PreparedWrite,
    _BlockFileTarget,
    _write_empty_blocks,
    block_file_name,
)
from splitds_dask._write.chunkmaps import map_remote_blocks, upload_chunkmaps

if TYPE_CHECKING:
    from dask.delayed import Delayed

    from splitds_dask._dataset import SplitDataset

__all__ = ["LEFTOVERS_QUIET", "WRITING_MARKER", "check_remote_target", "write_remote"]

#: Uploaded before the first block and removed after the metadata: a folder holding it and no
#: metadata is what a killed write left.
WRITING_MARKER = ".splitds-writing"
#: What a killed write left is removed by the next write only once it has been this many
#: seconds without a change (by the store's clock, from the listing): requests the writer had
#: sent before it died may still be answered, and one landing after the next write's upload of
#: the same block would replace it.
LEFTOVERS_QUIET = 120.0


class _UploadingTarget(_BlockFileTarget):
    """A ``store`` target that writes each block to a temporary file and uploads it."""

    def __init__(self, folder: RemoteFolder, prepared: PreparedWrite, **options: Any) -> None:
        # No local folder: write() builds each block in a temporary one and uploads it.
        super().__init__(Path(), prepared.grid, key=prepared.key, **options)
        self.remote = folder

    def write(self, name: str, value: np.ndarray) -> None:
        with tempfile.TemporaryDirectory(prefix="splitds-upload-") as scratch:
            local = Path(scratch) / name
            self.write_file(local, value)
            self.remote.filesystem.put_file(os.fspath(local), self.remote.path(name))


def check_remote_target(folder: RemoteFolder) -> list[str]:
    """Refuse to write where a dataset or other files are; the leftovers of a killed write
    (to remove before writing), else nothing.

    Raises
    ------
    FileExistsError
        The folder holds a split dataset, files that are not a killed write's, or the
        leftovers of a write that stopped less than :data:`LEFTOVERS_QUIET` seconds ago.
    ValueError
        The store cannot list (plain HTTP), so nothing can be written there safely.
    """
    listing = folder.listing()
    if listing is None:
        raise ValueError(f"{folder.url}: cannot write here (the store cannot list its files)")
    if any(name.endswith(METADATA_NAME) for name in listing):
        raise FileExistsError(
            f"{folder.url}: holds a split dataset, which is never replaced on an object store "
            "(it cannot be swapped in one step, so readers could see a mix of old and new blocks "
            "and a crash would leave neither); remove it first, or write to another URL"
        )
    if listing and WRITING_MARKER not in listing:
        shown = ", ".join(sorted(listing)[:3]) + (", ..." if len(listing) > 3 else "")
        raise FileExistsError(f"{folder.url}: holds files that are not a split dataset ({shown})")
    times = [f.modified for f in listing.values() if f.modified is not None]
    if listing and (len(times) < len(listing) or time.time() - max(times) < LEFTOVERS_QUIET):
        # An upload the killed writer had sent may still land, over a block of this write.
        raise FileExistsError(
            f"{folder.url}: a write there stopped less than {LEFTOVERS_QUIET:.0f} s ago "
            f"({len(listing)} files left, no metadata); uploads it had sent may still land: "
            "write again later, or to another URL"
        )
    return sorted(listing)


def _block_names(grid: BlockGrid) -> list[str]:
    """The names of a write's block files, in block-number order."""
    return [block_file_name(i, grid.n_blocks) for i in range(grid.n_blocks)]


def _upload_chunkmaps(folder: RemoteFolder, grid: BlockGrid, key: str, metadata: bytes) -> None:
    """Map the uploaded blocks and upload their sidecar, bound to ``metadata``'s bytes.

    Mapped from the store, not from each task's temporary file: dask's ``store`` keeps nothing
    a target returns, and on a cluster each task has its own copy of the target, so no map
    would reach this task without rebuilding the write's graph. Mapping the uploaded files
    costs one round trip per block (their sizes are listed), several in flight, and maps the
    very bytes readers will read.
    """
    listing = folder.listing() or {}
    names = _block_names(grid)
    sizes = {name: stored.size for name, stored in listing.items()}
    mapped = map_remote_blocks(folder, names, grid, sizes=sizes, key=key)
    upload_chunkmaps(folder, metadata, mapped.maps)


def _publish(
    _stored: Any, *, folder: RemoteFolder, metadata: dict[str, Any], grid: BlockGrid, key: str
) -> RemoteFolder:
    fs = folder.filesystem
    text = metadata_json_bytes(metadata)
    # Before the metadata: a reader that opens the dataset finds its sidecar there.
    _upload_chunkmaps(folder, grid, key, text)
    fs.pipe_file(folder.path(METADATA_NAME), text)
    fs.rm_file(folder.path(WRITING_MARKER))
    return folder


def _open_published(folder: RemoteFolder) -> SplitDataset:
    from splitds_dask._dataset import SplitDataset

    return SplitDataset(folder.url, storage_options=folder.options)


def _remove(folder: RemoteFolder, names: list[str]) -> None:
    if names:
        folder.filesystem.rm([folder.path(n) for n in names])


def write_remote(
    prepared: PreparedWrite,
    url: str,
    *,
    storage_options: dict[str, Any] | None,
    compression: str | None,
    compression_level: int | None,
    compute: bool,
) -> SplitDataset | Delayed:
    """Write ``prepared`` as a split dataset at ``url`` (see :func:`to_split_dataset`)."""
    folder = RemoteFolder(url, storage_options)
    leftovers = check_remote_target(folder)
    _remove(folder, [n for n in leftovers if n != WRITING_MARKER])
    folder.filesystem.makedirs(folder.root_path, exist_ok=True)  # for stores with folders
    folder.filesystem.pipe_file(
        folder.path(WRITING_MARKER), json.dumps({"blocks": prepared.grid.n_blocks}).encode()
    )
    target = _UploadingTarget(
        folder, prepared, compression=compression, compression_level=compression_level
    )
    try:
        if prepared.array.size == 0:
            _write_empty_blocks(target, prepared.dtype)
        stored = store_chunks(prepared.array, target)
        # Its options in a partial: dask would look into a grid (a dataclass) for collections.
        publish = partial(
            _publish,
            folder=folder,
            metadata=prepared.metadata,
            grid=prepared.grid,
            key=prepared.key,
        )
        published = dask.delayed(publish, pure=False)(stored)
        result = dask.delayed(_open_published, pure=False)(published)
        if not compute:
            return result
        opened: SplitDataset = result.compute()
    except BaseException:
        # The blocks uploaded so far are removed; the marker stays. Uploads of other tasks may
        # still be running (a failed task does not stop its siblings, here or on a cluster) and
        # land later: the marker keeps what they leave recognisable as a stopped write's, which
        # the next write removes once it has been left alone (LEFTOVERS_QUIET).
        written = set(folder.listing() or ())
        _remove(folder, [name for name in _block_names(prepared.grid) if name in written])
        raise
    return opened

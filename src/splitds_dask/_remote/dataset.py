"""Opening a split dataset from a URL: the facade of :class:`~splitds_dask.SplitDataset` over a
:class:`~splitds_dask._remote.location.RemoteFolder`.

Opening costs a bounded number of requests whatever the number of blocks: one listing (where
the store lists), the metadata and its version (and the chunk-map sidecar, in flight with the
metadata, where the listing shows one), and the index of two block files (the first, for the
dtype, and the first of the last block row, for a short last block). Where the store
cannot list (plain HTTP), the block files are named by the metadata's ``files`` list (fimpy)
or by the writers' numbering (``0000.h5`` on, or from ``0001.h5`` where there is no
``0000.h5``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from splitds_dask._dataset import SplitDataset
from splitds_dask._errors import NotASplitDatasetError
from splitds_dask._format.files import BlockFiles, BlockNames, find_block_files
from splitds_dask._format.geometry import BlockGrid
from splitds_dask._format.metadata import (
    MAX_METADATA_BYTES,
    METADATA_NAME,
    DatasetMetadata,
    parse_metadata_json,
)
from splitds_dask._format.physical import read_physical_metadata
from splitds_dask._remote.block_file import open_remote_block
from splitds_dask._remote.chunkmaps import SIDECARS, usable_sidecar
from splitds_dask._remote.location import FileVersion, RemoteFolder, StoredFile
from splitds_dask._remote.reader import RemoteBlockReader
from splitds_dask._remote.sizes import BLOCK_SIZES
from splitds_dask._storage.chunkmap_file import (
    CHUNKMAPS_NAME,
    MAX_CHUNKMAPS_BYTES,
    metadata_digest,
)

if TYPE_CHECKING:
    import h5py

__all__ = ["RemoteSplitDataset"]


def _metadata_name(folder: RemoteFolder, listing: dict[str, StoredFile] | None) -> str:
    if listing is None or METADATA_NAME in listing:
        return METADATA_NAME
    if not listing:
        raise NotASplitDatasetError(f"{folder.url}: no such folder (no files are there)")
    found = sorted(n for n in listing if n.endswith(METADATA_NAME))
    if found:
        return found[0]
    raise NotASplitDatasetError(
        f"{folder.url}: not a split dataset (no *{METADATA_NAME}; remote datasets whose metadata "
        "lives only inside the block files are not read: open a local copy)"
    )


def _exists(folder: RemoteFolder, name: str) -> bool:
    try:
        folder.version(name)
    except FileNotFoundError:
        return False
    return True


def _numbered(folder: RemoteFolder, metadata: DatasetMetadata, grid: BlockGrid) -> BlockFiles:
    """The block files of a folder that cannot be listed, named as their writers name them.

    An acquisition that stopped early has fewer block rows than its metadata declares: the rows
    present are found by bisection on the first file of each row (a request per step, about 17
    for 100,000 rows), so that such a dataset opens as it does from a listing.
    """
    files = metadata.raw.get("files")
    if isinstance(files, list) and files and all("/" not in name for name in files):
        return find_block_files(folder.url, expected=grid.n_blocks, listing=files)
    count = grid.n_blocks
    names = BlockNames("", 0, max(4, len(str(count - 1))), count)
    if not _exists(folder, names[0]):
        zero_based, names = names, BlockNames("", 1, max(4, len(str(count))), count)
        if not _exists(folder, names[0]):
            raise NotASplitDatasetError(
                f"{folder.url}: no block file {zero_based[0]} or {names[0]} (the store cannot "
                "list its files, so blocks are found by the writers' numbering or the "
                "metadata's 'files' list)"
            )
    per_row = count // max(grid.grid[0], 1)
    rows = grid.grid[0]
    if not _exists(folder, names[(rows - 1) * per_row]):
        low, high = 0, rows - 1  # row low is present, row high is not
        while high - low > 1:
            middle = (low + high) // 2
            if _exists(folder, names[middle * per_row]):
                low = middle
            else:
                high = middle
        rows = low + 1  # row 0 is present: checked above
    return BlockFiles(folder.url, names.head(rows * per_row), (True,) * (rows * per_row))


class RemoteSplitDataset(SplitDataset):
    """A split dataset read from a URL (``SplitDataset("s3://...")`` makes one)."""

    def __init__(
        self,
        root: str | os.PathLike[str],
        prefix: str | None = None,
        *,
        locking: bool | str | None = None,
        allow_external: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        url = os.fspath(root)
        if allow_external:
            raise ValueError(
                f"{url}: allow_external is for local folders; a remote dataset is only ever "
                "read from its own folder"
            )
        folder = self._remote = RemoteFolder(url, storage_options)
        self._root = folder.url  # type: ignore[assignment]
        self._abs_root = folder.url
        self._folder = None  # type: ignore[assignment]
        self._allow_external = False
        self._locking = locking
        listing = folder.listing()
        name = _metadata_name(folder, listing)
        sidecar: bytes | None = None
        self._chunkmaps: str | None = None
        try:
            listed = None if listing is None else listing.get(CHUNKMAPS_NAME)
            if listed is not None and listed.size <= MAX_CHUNKMAPS_BYTES:
                # The chunk-map sidecar, in flight with the metadata: no block's first read
                # then waits for its index.
                text, sidecar = folder.read_small_together(
                    name, MAX_METADATA_BYTES, CHUNKMAPS_NAME, MAX_CHUNKMAPS_BYTES
                )
            else:
                text = folder.read_small(name, MAX_METADATA_BYTES)
            self._version = folder.version(name)
        except FileNotFoundError:
            unlisted = (
                "; the store cannot list its files, so a metadata file of another name "
                "(fish1_stack_metadata.json) is not found"
                if listing is None
                else ""
            )
            raise NotASplitDatasetError(
                f"{folder.url}: not a split dataset (no {name} at {folder.file_url(name)}"
                f"{unlisted})"
            ) from None
        except OSError as exc:
            raise NotASplitDatasetError(f"{folder.file_url(name)}: cannot read: {exc}") from exc
        self._metadata_bytes = text
        metadata = self._metadata = parse_metadata_json(text, source=folder.file_url(name))
        if sidecar is not None:
            digest = metadata_digest(text)
            usable = usable_sidecar(sidecar, digest=digest, source=folder.file_url(CHUNKMAPS_NAME))
            SIDECARS.put(folder.url, self._version, digest, usable)
            self._chunkmaps = digest if usable is not None else None
        declared = BlockGrid.from_spec(metadata.shape, metadata.block_shape, metadata.padding)
        if listing is None:
            files = _numbered(folder, metadata, declared)
        else:
            files = find_block_files(
                folder.url, prefix=prefix, expected=declared.n_blocks, listing=list(listing)
            )
            listed = listing.get(name)
            if listed is not None and listed.version == self._version:
                # The listing saw the metadata opened (no commit came between): its sizes are
                # that version's, and spare the first read of each block a request.
                BLOCK_SIZES.remember(folder.url, self._version, files.names, listing)
        # The block names a size is looked up under: all the files while the last block row
        # is checked (by opening its first file), the dataset's once that is done.
        self._size_names = files.names
        self._physical = read_physical_metadata(
            metadata.raw, metadata.ndim, source=folder.file_url(name)
        )
        self._grid, self._names = self._match_files(declared, files)
        self._size_names = self._names
        self._start_lazy_state()

    @property
    def root(self) -> str:  # type: ignore[override]
        """The dataset folder's URL."""
        return self._remote.url

    @property
    def remote(self) -> RemoteFolder:
        """Where the dataset lives: its URL and storage options (picklable, no connection)."""
        return self._remote

    @property
    def storage_options(self) -> dict[str, Any]:
        """The fsspec options the dataset was opened with."""
        return dict(self._remote.options)

    def stored_sizes(self) -> dict[str, int] | None:
        """The size of each block file present (by name), from one listing of the store; None
        where the store cannot list."""
        listing = self._remote.listing()
        if listing is None:
            return None
        return {n: listing[n].size for n in self._names.as_tuple() if n in listing}

    @property
    def metadata_bytes(self) -> bytes:
        """The bytes of the metadata file opened (what a chunk-map sidecar is bound to)."""
        return self._metadata_bytes

    @property
    def version(self) -> FileVersion:
        """The version of the metadata file opened (its ETag or time, and size)."""
        return self._version

    def __repr__(self) -> str:
        return super().__repr__().replace("<SplitDataset", "<SplitDataset (remote)", 1)

    def _block_location(self, name: str) -> str:
        return self._remote.file_url(name)

    def _block_path(self, index: int) -> str:
        return self._remote.file_url(self._names[index])

    @contextmanager
    def _open_block_file(self, name: str, block: tuple[int, ...]) -> Iterator[h5py.File]:
        size = BLOCK_SIZES.size(self._remote.url, self._version, self._size_names, name)
        with open_remote_block(self._remote, name, block=block, size=size) as f:
            yield f

    def _check_opened_folder(self) -> None:
        pass  # a store has no folder identity: see the README's limits of remote datasets

    @property
    def reader(self) -> RemoteBlockReader:
        if self._reader is None:
            self._reader = RemoteBlockReader(
                remote=self._remote,
                version=self._version,
                names=self._names,
                grid=self._grid,
                dtype=self.dtype,
                data_key=self.data_key,
                chunkmaps=self._chunkmaps,
            )
        assert isinstance(self._reader, RemoteBlockReader)
        return self._reader

    def _identity(self) -> tuple[Any, ...]:
        """What a dask token needs to tell versions of this dataset apart."""
        return (self._remote.__dask_tokenize__(), tuple(self._version))

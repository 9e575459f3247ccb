"""The reader of a remote dataset: :class:`~splitds_dask._reader.BlockReader` over a URL."""

from __future__ import annotations

from typing import Any

import numpy as np

from splitds_dask._errors import damaged_block
from splitds_dask._format.files import BlockNames
from splitds_dask._format.geometry import BlockGrid
from splitds_dask._reader import BlockReader
from splitds_dask._remote.block_file import read_remote_region
from splitds_dask._remote.location import FileVersion, RemoteFolder

__all__ = ["RemoteBlockReader"]


class RemoteBlockReader(BlockReader):
    """Reads numpy selections of a remote split dataset; picklable, holds no connection.

    What a task carries is the folder's URL and storage options, and the version of the
    metadata opened (under which block files' chunk maps are kept, once per process, and their
    sizes in the process that opened the dataset), and the SHA-256 of the metadata's bytes where
    a chunk-map sidecar was found for them (``chunkmaps``; None where none was).
    """

    __slots__ = ("chunkmaps", "remote", "version")
    io_bound = True

    def __init__(
        self,
        *,
        remote: RemoteFolder,
        version: FileVersion,
        names: BlockNames,
        grid: BlockGrid,
        dtype: np.dtype,
        data_key: str,
        token: str | None = None,
        chunkmaps: str | None = None,
    ) -> None:
        super().__init__(
            root=remote.url,
            names=names,
            grid=grid,
            dtype=dtype,
            data_key=data_key,
            locking=None,
            token=token,
        )
        self.remote = remote
        self.version = version
        self.chunkmaps = chunkmaps

    def __getstate__(self) -> tuple[Any, ...]:
        return (*super().__getstate__(), self.remote, tuple(self.version), self.chunkmaps)

    def __setstate__(self, state: tuple[Any, ...]) -> None:
        *base, self.remote, version, self.chunkmaps = state
        super().__setstate__(tuple(base))
        self.version = FileVersion(*version)

    def __dask_tokenize__(self) -> Any:
        if self.token is not None:
            return self.token
        return (super().__dask_tokenize__(), self.remote.__dask_tokenize__(), self.version)

    def block_path(self, index: int) -> str:
        """URL of the file of block number ``index``."""
        return self.remote.file_url(self.names[index])

    def _read_block(
        self,
        index: int,
        *,
        block: tuple[int, ...],
        extent: tuple[int, ...],
        source: tuple[slice, ...],
        out: np.ndarray,
        dest: tuple[slice, ...],
    ) -> None:
        with damaged_block(self.block_path(index), block):
            read_remote_region(
                self.remote,
                self.names[index],
                names=self.names,
                version=self.version,
                key=self.data_key,
                block=block,
                dtype=self.dtype,
                extent=extent,
                source=source,
                out=out,
                dest=dest,
                chunkmaps=self.chunkmaps,
            )

"""The chunk-map sidecars of remote datasets, kept per process (see
:mod:`splitds_dask._storage.chunkmap_file`).

The process that opens a dataset fetches its sidecar together with the metadata, where the
listing shows one, and keeps it here. A process that did not open it (a distributed worker)
fetches it at its first read of a block, once, whatever the number of threads reading: the
reader carries the metadata's digest (64 characters, whatever the size of the dataset), which
says that a usable sidecar was there and which one. Blocks' maps are checked when first asked
for and then kept in :data:`~splitds_dask._storage.blosc.CHUNK_MAPS`, within its bounds.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import NamedTuple

from splitds_dask._remote.location import FileVersion, RemoteFolder
from splitds_dask._storage.chunkmap_file import (
    CHUNKMAPS_NAME,
    MAX_CHUNKMAPS_BYTES,
    BlockMap,
    ChunkMapFile,
    parse_chunkmaps,
)

__all__ = ["SIDECARS", "SidecarCache", "usable_sidecar"]

# Sidecars kept at most (each up to MAX_CHUNKMAPS_BYTES of JSON): the datasets read last.
_MAX_SIDECARS = 4


class _Key(NamedTuple):
    url: str
    version: FileVersion
    digest: str


def usable_sidecar(data: bytes, *, digest: str, source: str) -> ChunkMapFile | None:
    """The sidecar in ``data`` if it parses and belongs to metadata of SHA-256 ``digest``."""
    try:
        parsed = parse_chunkmaps(data, source=source)
    except ValueError:
        return None
    return parsed if parsed.digest == digest else None


class SidecarCache:
    """Sidecars by dataset (folder URL, metadata version and digest); None for one unusable."""

    def __init__(self) -> None:
        self._files: OrderedDict[_Key, ChunkMapFile | None] = OrderedDict()
        self._lock = threading.Lock()
        self._fetching = threading.Lock()

    def put(
        self, url: str, version: FileVersion, digest: str, sidecar: ChunkMapFile | None
    ) -> None:
        """Keep ``sidecar`` (None: known to be unusable, never fetched again)."""
        with self._lock:
            self._files[_Key(url, version, digest)] = sidecar
            self._files.move_to_end(_Key(url, version, digest))
            while len(self._files) > _MAX_SIDECARS:
                self._files.popitem(last=False)

    def _get(self, key: _Key) -> tuple[bool, ChunkMapFile | None]:
        with self._lock:
            if key not in self._files:
                return False, None
            self._files.move_to_end(key)
            return True, self._files[key]

    def block(
        self, folder: RemoteFolder, version: FileVersion, digest: str, name: str
    ) -> BlockMap | None:
        """The checked map of block file ``name`` from the dataset's sidecar (fetched once per
        process); None if there is none, it is unusable, or the block's entry fails a check."""
        key = _Key(folder.url, version, digest)
        known, sidecar = self._get(key)
        if not known:
            # One fetch for all the threads that start reading the dataset at once.
            with self._fetching:
                known, sidecar = self._get(key)
                if not known:
                    sidecar = self._fetch(folder, digest)
                    self.put(folder.url, version, digest, sidecar)
        return None if sidecar is None else sidecar.block(name)

    @staticmethod
    def _fetch(folder: RemoteFolder, digest: str) -> ChunkMapFile | None:
        try:
            data = folder.read_small(CHUNKMAPS_NAME, MAX_CHUNKMAPS_BYTES)
        except OSError:  # gone, or unreadable: the blocks' own indexes serve
            return None
        return usable_sidecar(data, digest=digest, source=folder.file_url(CHUNKMAPS_NAME))

    def clear(self) -> None:
        """Forget every sidecar (as a process that did not open the datasets)."""
        with self._lock:
            self._files.clear()


SIDECARS = SidecarCache()

"""Where a remote dataset lives: its URL, the fsspec options to reach it, and its files' names.

A :class:`RemoteFolder` is what every read task of a remote dataset carries: the URL and the
storage options, never a filesystem object or an open connection (the filesystem is made again
in each process, and fsspec keeps one instance per protocol and options there). fsspec is only
imported here, when a URL is opened: a local path never imports it.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, NamedTuple

from splitds_dask._errors import NotASplitDatasetError

__all__ = ["FileVersion", "RemoteFolder", "StoredFile", "is_url"]

# A URL names its protocol (s3://, gs://, https://, file://, memory://); a Windows drive (C:\)
# or a plain path does not.
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.\-]+://")
# A file of the dataset is named by one plain name inside its folder, never a path.
_PLAIN_NAME = re.compile(r"^(?!\.\.?$)[^/\\]+$")


def is_url(path: object) -> bool:
    """Whether ``path`` is a URL (``s3://bucket/data``), to be read through fsspec."""
    return isinstance(path, str) and _URL.match(path) is not None


class FileVersion(NamedTuple):
    """What tells one version of a remote file from another, as the store reports it."""

    size: int
    tag: str
    """The ETag, else the modification time, else empty (then the size alone tells)."""

    @classmethod
    def of(cls, info: Mapping[str, Any]) -> FileVersion:
        """The version in an fsspec ``info`` record (keys differ between stores)."""
        for key in ("ETag", "etag", "LastModified", "Last-Modified", "mtime", "updated", "created"):
            if info.get(key) is not None:
                return cls(int(info.get("size") or 0), f"{key}={info[key]}")
        return cls(int(info.get("size") or 0), "")


class StoredFile(NamedTuple):
    """A file as a listing shows it."""

    size: int
    modified: float | None
    """Seconds since the epoch, by the store's clock; None where the listing does not say."""
    tag: str = ""
    """As :attr:`FileVersion.tag`: the listing shows the version a request for the file would."""

    @property
    def version(self) -> FileVersion:
        """The file's version, as :meth:`RemoteFolder.version` would report it."""
        return FileVersion(self.size, self.tag)

    @classmethod
    def of(cls, entry: Mapping[str, Any]) -> StoredFile:
        """The record of an fsspec ``ls(detail=True)`` entry (keys differ between stores)."""
        modified = None
        for key in ("LastModified", "mtime", "updated", "created"):
            value = entry.get(key)
            if isinstance(value, datetime):
                modified = value.timestamp()
            elif isinstance(value, (int, float)):
                modified = float(value)
            elif isinstance(value, str):
                try:
                    modified = datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
                except ValueError:
                    continue
            if modified is not None:
                break
        return cls(int(entry.get("size") or 0), modified, FileVersion.of(entry).tag)


class RemoteFolder:
    """A dataset folder on a store that fsspec reads: picklable, holds no connection.

    Parameters
    ----------
    url : str
        The folder's URL (``s3://bucket/experiment/original``).
    storage_options : mapping, optional
        Options of the fsspec filesystem (credentials, ``endpoint_url``...).
    """

    __slots__ = ("_fs", "_fs_root", "options", "url")

    def __init__(self, url: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.url = url.rstrip("/")
        self.options = dict(storage_options or {})
        self._fs: Any = None
        self._fs_root = ""

    def __getstate__(self) -> tuple[str, dict[str, Any]]:
        return (self.url, self.options)

    def __setstate__(self, state: tuple[str, dict[str, Any]]) -> None:
        self.url, self.options = state
        self._fs, self._fs_root = None, ""

    def __repr__(self) -> str:
        return f"RemoteFolder({self.url!r})"

    def __dask_tokenize__(self) -> tuple[str, str]:
        return (self.url, json.dumps(self.options, sort_keys=True, default=repr))

    @property
    def filesystem(self) -> Any:
        """The fsspec filesystem (made once per process; fsspec shares equal instances)."""
        if self._fs is None:
            try:
                from fsspec.core import url_to_fs
            except ImportError:
                raise ImportError(
                    f"{self.url}: reading a URL needs fsspec (and s3fs for s3://, gcsfs for "
                    "gs://, aiohttp for https://): pip install 'splitds-dask[remote]'"
                ) from None
            try:
                self._fs, self._fs_root = url_to_fs(self.url, **self.options)
            except (ImportError, ValueError) as exc:
                raise NotASplitDatasetError(f"{self.url}: cannot open this URL: {exc}") from exc
            self._fs_root = self._fs_root.rstrip("/")
        return self._fs

    @property
    def root_path(self) -> str:
        """The folder's path on its filesystem."""
        self.filesystem  # noqa: B018 - sets _fs_root
        return self._fs_root

    def path(self, name: str) -> str:
        """The filesystem path of the file ``name`` in this folder."""
        if not _PLAIN_NAME.match(name):
            # Names come from the store's listing or the metadata: never a way out of the folder.
            raise NotASplitDatasetError(f"{self.url}: {name!r} is not a file name in the folder")
        return f"{self.root_path}/{name}"

    def file_url(self, name: str) -> str:
        """The URL of the file ``name`` in this folder (what errors name)."""
        return f"{self.url}/{name}"

    def version(self, name: str) -> FileVersion:
        """The version of the file ``name`` (one request)."""
        path = self.path(name)
        # fsspec filesystems are shared in a process and some (s3fs) keep what they listed:
        # a version must come from the store, not from an earlier listing.
        self.filesystem.invalidate_cache(path)
        return FileVersion.of(self.filesystem.info(path))

    def listing(self) -> dict[str, StoredFile] | None:
        """The folder's files (one request), or None where the store cannot list (plain HTTP)."""
        fs = self.filesystem
        if self.url.startswith(("http://", "https://")):
            return None  # an HTTP "listing" is whatever links a page holds, not the folder
        fs.invalidate_cache(self._fs_root)  # another process may have written since
        try:
            entries = fs.ls(self._fs_root, detail=True)
        except FileNotFoundError:
            return {}  # no such folder: nothing there (object stores have no empty folders)
        except NotImplementedError:
            return None
        return {
            str(e["name"]).rstrip("/").rsplit("/", 1)[-1]: StoredFile.of(e)
            for e in entries
            if e.get("type") != "directory"
        }

    def read_small(self, name: str, limit: int) -> bytes:
        """The whole file ``name``, refused beyond ``limit`` bytes (metadata, manifests).

        Raises FileNotFoundError when it is absent.
        """
        data = self.filesystem.cat_file(self.path(name), start=0, end=limit + 1)
        return bytes(data)

    def read_small_together(
        self, name: str, limit: int, other: str, other_limit: int
    ) -> tuple[bytes, bytes | None]:
        """:meth:`read_small` of ``name`` and of ``other``, in flight together where the store
        allows (one round trip); None for ``other`` if it cannot be read."""
        paths = [self.path(name), self.path(other)]
        first, second = self.filesystem.cat_ranges(
            paths, [0, 0], [limit + 1, other_limit + 1], on_error="return"
        )
        if isinstance(first, BaseException):
            raise first
        return bytes(first), None if isinstance(second, BaseException) else bytes(second)

"""The head and the tail of a remote file, fetched together, and its size.

HDF5 writers put a file's superblock and first object headers at its head, and its chunk index
at its tail: the first read of a block file fetches both at once. The tail's place depends on
the file's size. Where the size is known (the listing made when the dataset was opened, see
:mod:`splitds_dask._remote.sizes`) both ranges are plain range requests. Where it is not (a
process that did not open the dataset; HTTP, which cannot list), the tail is asked for as a
suffix range (``Range: bytes=-N``, the file's last N bytes), whose answer states the file's
length (``Content-Range: bytes a-b/LENGTH``): the size comes with the tail, in the same round
trip, rather than from a request of its own before it. fsspec's ``cat_file`` sends such a
range but keeps only the body, so the suffix request is made here, through the client of the
store, for S3 (s3fs) and HTTP (fsspec's HTTP filesystem). Other stores are asked the size first
(one request more).

The size and the tail come from one answer, so they agree; the head is another request, in
flight at the same time. A file replaced between the two is left to the checks that follow
(h5py's, and the chunk checks of every chunk read), as a file replaced between any two requests
is; the sizes kept from a listing are keyed by the metadata's version, whose change is what
tells a reader that a dataset was committed again.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, NamedTuple

__all__ = ["FileEnds", "Part", "fetch_file_ends"]

# "bytes 100-199/200": the length after the slash ("*" where the store does not know it).
_CONTENT_RANGE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+)\s*$")


class Part(NamedTuple):
    """Bytes of a file, from ``offset`` on."""

    offset: int
    data: bytes


class FileEnds(NamedTuple):
    """A file's size and the parts fetched from its ends (its head first)."""

    size: int
    parts: list[Part]


def fetch_file_ends(fs: Any, path: str, *, length: int, size: int | None = None) -> FileEnds:
    """The first and the last ``length`` bytes of the file ``path`` (at most), and its size.

    Parameters
    ----------
    fs : fsspec.AbstractFileSystem
        The filesystem of ``path``.
    path : str
        The file's path on ``fs``.
    length : int
        Bytes wanted at each end.
    size : int, optional
        The file's size, where it is known (then two range requests, in flight together);
        otherwise the size comes with the tail where the store's client allows, else from a
        request of its own first.

    Raises
    ------
    FileNotFoundError
        No such file.
    OSError
        The store's answers do not fit together (the file changed while read).
    """
    if size is None:
        suffix = _suffix_request(fs)
        if suffix is not None:
            from fsspec.asyn import sync

            return _checked(path, length, sync(fs.loop, _head_and_suffix, fs, path, length, suffix))
        # Asked of the store: filesystems that keep listings (s3fs, gcsfs) would otherwise
        # answer from whatever was listed in this process, however long ago.
        fs.invalidate_cache(path)
        size = int(fs.size(path))
    if size == 0:
        return FileEnds(0, [])  # nothing to fetch (h5py says what is wrong with such a file)
    wanted = [Part(0, b"")]
    if size > length:
        wanted.append(Part(max(length, size - length), b""))
    stops = [min(length, size), size]
    found = fs.cat_ranges(
        [path] * len(wanted), [p.offset for p in wanted], stops[: len(wanted)], on_error="raise"
    )
    parts = [Part(p.offset, bytes(data)) for p, data in zip(wanted, found, strict=True)]
    return _checked(path, length, FileEnds(size, parts))


def _checked(path: str, length: int, ends: FileEnds) -> FileEnds:
    """``ends`` as fetched, if each part is as long as a file of its size gives; a head and a
    tail that meet are joined (the whole file)."""
    for part in ends.parts:
        expected = min(length, ends.size - part.offset)
        if len(part.data) != expected:
            raise OSError(
                f"{path}: {len(part.data)} bytes at {part.offset} where a file of {ends.size} "
                f"bytes has {expected} (the file changed while read?)"
            )
    if len(ends.parts) == 2 and ends.parts[1].offset <= len(ends.parts[0].data):
        head, tail = ends.parts
        whole = head.data + tail.data[len(head.data) - tail.offset :]
        return FileEnds(ends.size, [Part(0, whole)])
    return ends


# ---------------------------------------------------------------------------------------------
# The suffix request, by store: (fs, path, length) -> (tail, the file's length)


def _suffix_request(fs: Any) -> Any:
    """The coroutine function that asks ``fs`` for a file's tail and length, or None."""
    protocols = fs.protocol if isinstance(fs.protocol, (tuple, list)) else (fs.protocol,)
    if not getattr(fs, "async_impl", False) or getattr(fs, "loop", None) is None:
        return None
    if "s3" in protocols and hasattr(fs, "_call_s3") and hasattr(fs, "split_path"):
        return _s3_suffix
    if "http" in protocols and hasattr(fs, "set_session") and hasattr(fs, "encode_url"):
        return _http_suffix
    return None


async def _head_and_suffix(fs: Any, path: str, length: int, suffix: Any) -> FileEnds:
    head, (tail, size) = await asyncio.gather(
        fs._cat_file(path, start=0, end=length), suffix(fs, path, length)
    )
    parts = [Part(0, bytes(head))]
    if size > length:
        # A store that ignored the range sent the whole file: its last bytes are the tail.
        parts.append(Part(size - length, tail[-length:]))
    return FileEnds(size, parts)


def _length(path: str, content_range: str | None, body: bytes) -> int:
    """The file's length, from a ranged answer's Content-Range (or its body if it has none: a
    store that ignored the range sent the whole file)."""
    if content_range is None:
        return len(body)
    match = _CONTENT_RANGE.match(content_range)
    if match is None:
        raise OSError(f"{path}: the store answered a range with Content-Range {content_range!r}")
    return int(match.group(3))


async def _s3_suffix(fs: Any, path: str, length: int) -> tuple[bytes, int]:
    bucket, key, version_id = fs.split_path(path)
    response = await fs._call_s3(
        "get_object",
        Bucket=bucket,
        Key=key,
        Range=f"bytes=-{length}",
        **({"VersionId": version_id} if version_id else {}),
    )
    try:
        body = bytes(await response["Body"].read())
    finally:
        response["Body"].close()
    return body, _length(path, response.get("ContentRange"), body)


async def _http_suffix(fs: Any, url: str, length: int) -> tuple[bytes, int]:
    options = dict(fs.kwargs)
    headers = {**(options.pop("headers", None) or {}), "Range": f"bytes=-{length}"}
    session = await fs.set_session()
    async with session.get(fs.encode_url(url), headers=headers, **options) as answer:
        if answer.status == 404:
            raise FileNotFoundError(url)
        if answer.status not in (200, 206):
            raise OSError(f"{url}: HTTP {answer.status} {answer.reason} for its last bytes")
        body = bytes(await answer.read())
        content_range = answer.headers.get("Content-Range") if answer.status == 206 else None
    return body, _length(url, content_range, body)

"""The chunk-map sidecar: every block file's chunk map in one file beside the metadata.

The first read of a remote block file costs a round trip for its chunk index before the one for
its data. ``splitds-chunkmaps.json`` (:data:`CHUNKMAPS_NAME`; neither a block file nor metadata
to any reader) holds, per block file name, the file's size and its
:class:`~splitds_dask._storage.blosc.ChunkMap`, so that one request maps every block. It is
bound to one version of the dataset: it records the SHA-256 of the exact bytes of the
``stack_metadata.json`` it was made for, and a reader that opened other bytes ignores it.

Nothing in it is trusted. A block's map is rebuilt with :meth:`ChunkMap.checked`, the checks
HDF5's own index goes through (chunks inside the grid, unique, apart, inside the recorded file
size, masks and sizes a writer makes); a block whose entry fails is ignored (its index is then
read from the file, as without a sidecar), and so is a whole file that is not JSON of this
format or is larger than :data:`MAX_CHUNKMAPS_BYTES`. Checksums are kept only as HDF5
attributes give them (a seal manifest's offsets and sizes are for local folders).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from splitds_dask._storage.blosc import BloscCodec, ChunkError, ChunkIndexError, ChunkMap
from splitds_dask._storage.checksums import Checksums, _decode, _encode

__all__ = [
    "CHUNKMAPS_NAME",
    "MAX_CHUNKMAPS_BYTES",
    "BlockMap",
    "ChunkMapFile",
    "chunkmaps_json",
    "metadata_digest",
    "parse_chunkmaps",
]

CHUNKMAPS_NAME = "splitds-chunkmaps.json"
#: A larger sidecar is ignored (about 2 million chunks' entries): reading it would cost more
#: than the indexes it spares.
MAX_CHUNKMAPS_BYTES = 64 << 20
_FORMAT = "splitds-chunkmaps"
_VERSION = 1


def metadata_digest(metadata: bytes) -> str:
    """The SHA-256 (hex) of the exact bytes of a dataset's metadata file."""
    return hashlib.sha256(metadata).hexdigest()


class BlockMap(NamedTuple):
    """One block file's entry: its size in bytes and its chunk map."""

    size: int
    chunk_map: ChunkMap


def _entry(block: BlockMap) -> dict[str, Any]:
    m = block.chunk_map
    codec = m.codec or BloscCodec(m.dtype.itemsize if m.dtype.itemsize <= 255 else 1, None, None)
    entry: dict[str, Any] = {
        "size": block.size,
        "name": m.name,
        "shape": list(m.shape),
        "dtype": m.dtype.str,
        "values": m.values.str,
        "chunks": list(m.chunk_shape),
        "codec": list(codec),
        "count": m.n_chunks,
        "offsets": _encode(m.offsets, "<i8"),
        "sizes": _encode(m.sizes, "<i8"),
        "masks": _encode(m.masks, "<u4"),
    }
    if m.numbers is not None:
        entry["numbers"] = _encode(m.numbers, "<i8")
    sums = m.checksums
    if sums is not None and sums.offsets is None:  # an attribute's (the seal's are local)
        entry["checksums"] = (
            {"damaged": sums.damaged}
            if sums.damaged is not None
            else {"count": len(sums.crc32c), "crc32c": _encode(sums.crc32c, "<u4")}
        )
    return entry


def chunkmaps_json(digest: str, blocks: Mapping[str, BlockMap]) -> bytes:
    """The sidecar's bytes: the maps of ``blocks`` (by file name), bound to ``digest``."""
    doc = {
        "format": _FORMAT,
        "version": _VERSION,
        "metadata_sha256": digest,
        "blocks": {name: _entry(blocks[name]) for name in sorted(blocks)},
    }
    return json.dumps(doc, separators=(",", ":")).encode()


def _ints(value: Any, where: str) -> tuple[int, ...]:
    if not isinstance(value, list) or not all(type(v) is int for v in value):
        raise ValueError(f"{where}: not a list of integers")
    return tuple(value)


def _dtype(value: Any, where: str) -> np.dtype:
    if not isinstance(value, str) or len(value) > 8:
        raise ValueError(f"{where}: not a dtype")
    try:
        return np.dtype(value)
    except TypeError:
        raise ValueError(f"{where}: not a dtype") from None


def _checksums(value: Any, where: str) -> Checksums | None:
    if value is None:
        return None
    if not isinstance(value, dict):
        raise ValueError(f"{where}: checksums are not an object")  # noqa: TRY004 - one error for damage
    if "damaged" in value:
        return Checksums(np.zeros(0, np.uint32), damaged=str(value["damaged"])[:500])
    count = value.get("count")
    if type(count) is not int or count < 0:
        raise ValueError(f"{where}: no checksum count")
    return Checksums(_decode(value.get("crc32c"), "<u4", count, where))


def _block_map(entry: Any, where: str) -> BlockMap:
    if not isinstance(entry, dict):
        raise ValueError(f"{where}: not an object")  # noqa: TRY004 - one error for damage
    size, count, name = entry.get("size"), entry.get("count"), entry.get("name")
    if type(size) is not int or size < 0 or type(count) is not int or count < 0:
        raise ValueError(f"{where}: no size or chunk count")
    if not isinstance(name, str) or not name or name.startswith("/"):
        raise ValueError(f"{where}: no array name")
    codec = _ints(entry.get("codec"), where)
    if len(codec) != 3:
        raise ValueError(f"{where}: not a Blosc codec")
    numbers = entry.get("numbers")
    try:
        chunk_map = ChunkMap.checked(
            name=name,
            shape=_ints(entry.get("shape"), where),
            dtype=_dtype(entry.get("dtype"), where),
            values=_dtype(entry.get("values"), where),
            chunk_shape=_ints(entry.get("chunks"), where),
            offsets=_decode(entry.get("offsets"), "<i8", count, where),
            sizes=_decode(entry.get("sizes"), "<i8", count, where),
            masks=_decode(entry.get("masks"), "<u4", count, where),
            numbers=None if numbers is None else _decode(numbers, "<i8", count, where),
            codec=BloscCodec(*codec),
            checksums=_checksums(entry.get("checksums"), where),
            file_size=size,
        )
    except (ChunkError, ChunkIndexError) as exc:
        raise ValueError(f"{where}: {exc}") from None
    return BlockMap(size, chunk_map)


@dataclass(frozen=True)
class ChunkMapFile:
    """A parsed sidecar: its metadata digest, and its blocks' entries, checked when asked for."""

    digest: str
    entries: Mapping[str, Any]
    source: str

    def block(self, name: str) -> BlockMap | None:
        """The checked map of the block file ``name``; None if absent or failing a check."""
        entry = self.entries.get(name)
        if entry is None:
            return None
        try:
            return _block_map(entry, f"{self.source}: block {name!r}")
        except (ValueError, TypeError, OverflowError):
            return None


def parse_chunkmaps(data: bytes, *, source: str) -> ChunkMapFile:
    """The sidecar in ``data`` (read from ``source``, which errors name).

    Raises
    ------
    ValueError
        Too large, not JSON, or not this format and version.
    """
    if len(data) > MAX_CHUNKMAPS_BYTES:
        raise ValueError(f"{source}: larger than {MAX_CHUNKMAPS_BYTES} bytes")
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise ValueError(f"{source}: not JSON ({exc})") from None
    if (
        not isinstance(doc, dict)
        or doc.get("format") != _FORMAT
        or doc.get("version") != _VERSION
        or not isinstance(doc.get("metadata_sha256"), str)
        or not isinstance(doc.get("blocks"), dict)
    ):
        raise ValueError(f"{source}: not a {_FORMAT} version {_VERSION} file")
    return ChunkMapFile(doc["metadata_sha256"], doc["blocks"], source)

"""The HDF5 filters block files use: names, what provides them, and Blosc's codec table.

One table for everything that names a filter: error messages when one is missing, ``verify``,
``splitds info`` and the Blosc fast path.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import h5py

__all__ = [
    "BLOSC_COMPRESSORS",
    "BLOSC_FILTER",
    "BLOSC_SHUFFLES",
    "FILTERS",
    "Compression",
    "CompressionLevelError",
    "HDF5Filter",
    "describe_filter",
    "filter_name",
    "missing_filters",
    "parse_compression",
]


class HDF5Filter(NamedTuple):
    """One registered HDF5 filter."""

    name: str
    """Short lower-case name, as ``splitds info`` shows it (``"blosc"``)."""
    label: str
    """Name for messages (``"deflate (gzip)"``)."""
    provider: str
    """What makes the filter available to h5py."""


BLOSC_FILTER = 32001

FILTERS: dict[int, HDF5Filter] = {
    1: HDF5Filter("gzip", "deflate (gzip)", "HDF5 itself"),
    2: HDF5Filter("shuffle", "shuffle", "HDF5 itself"),
    3: HDF5Filter("fletcher32", "fletcher32", "HDF5 itself"),
    4: HDF5Filter("szip", "szip", "an HDF5 build with szip"),
    5: HDF5Filter("nbit", "nbit", "HDF5 itself"),
    6: HDF5Filter("scaleoffset", "scale-offset", "HDF5 itself"),
    305: HDF5Filter("lzo", "LZO", "PyTables only (convert with ptrepack)"),
    307: HDF5Filter("bzip2", "BZip2", "hdf5plugin"),
    BLOSC_FILTER: HDF5Filter("blosc", "Blosc", "hdf5plugin"),
    32004: HDF5Filter("lz4", "LZ4", "hdf5plugin"),
    32008: HDF5Filter("bitshuffle", "Bitshuffle", "hdf5plugin"),
    32013: HDF5Filter("zfp", "ZFP", "hdf5plugin"),
    32015: HDF5Filter("zstd", "Zstd", "hdf5plugin"),
    32017: HDF5Filter("sz", "SZ", "hdf5plugin"),
    32018: HDF5Filter("fcidecomp", "FCIDECOMP", "hdf5plugin"),
    32024: HDF5Filter("sz3", "SZ3", "hdf5plugin"),
    32026: HDF5Filter("blosc2", "Blosc2", "hdf5plugin"),
}

# The Blosc filter stores its compressor as an index into this tuple (cd_values[6]) and its
# shuffle as an index into the next; hdf5-blosc and PyTables use the same numbering.
BLOSC_COMPRESSORS = ("blosclz", "lz4", "lz4hc", "snappy", "zlib", "zstd")
BLOSC_SHUFFLES = ("no shuffle", "byte shuffle", "bit shuffle")


def filter_name(fid: int) -> str:
    """The short name of filter ``fid``, or its number for a filter not in :data:`FILTERS`."""
    known = FILTERS.get(fid)
    return known.name if known is not None else str(fid)


def describe_filter(fid: int, values: tuple[int, ...]) -> str:
    """One filter of a pipeline with its options, e.g. ``'blosc lz4 level 5, byte shuffle'``."""
    if fid == BLOSC_FILTER and len(values) >= 7:
        code, shuffle = values[6], values[5]
        cname = BLOSC_COMPRESSORS[code] if code < len(BLOSC_COMPRESSORS) else f"compressor {code}"
        shuffled = (
            BLOSC_SHUFFLES[shuffle] if shuffle < len(BLOSC_SHUFFLES) else f"shuffle {shuffle}"
        )
        return f"blosc {cname} level {values[4]}, {shuffled}"
    if fid == 1 and values:
        return f"gzip level {values[0]}"
    known = FILTERS.get(fid)
    return known.name if known is not None else f"filter {fid}"


def missing_filters(dset: h5py.Dataset) -> list[str]:
    """The filters of ``dset`` that this process cannot run, each described for users."""
    plist = dset.id.get_create_plist()
    out = []
    for i in range(plist.get_nfilters()):
        fid, _flags, _values, stored_name = plist.get_filter(i)
        if h5py.h5z.filter_avail(fid):
            continue
        known = FILTERS.get(fid)
        if known is not None:
            label, provider = known.label, known.provider
        else:
            label = stored_name.decode("ascii", "replace") or "unknown"
            provider = "no known Python package"
        out.append(f"HDF5 filter {fid} ({label}), provided by {provider}")
    return out


class Compression(NamedTuple):
    """A compression name such as ``"blosc:zstd"`` with its level, defaults filled in."""

    family: str
    """``"blosc"``, ``"blosc2"``, ``"gzip"``, ``"bzip2"`` or ``"zstd"``."""
    compressor: str | None
    """Blosc's inner compressor (``"lz4"``...); None for the other families."""
    level: int


# Family -> (default inner compressor, default level); ``zlib`` is another name for gzip.
_COMPRESSION_DEFAULTS: dict[str, tuple[str | None, int]] = {
    "blosc": ("lz4", 5),
    "blosc2": ("lz4", 5),
    "gzip": (None, 4),
    "bzip2": (None, 9),
    "zstd": (None, 3),
}


# Family -> the levels its codec accepts (zstd's 0 is the library's default level).
_LEVELS: dict[str, range] = {
    "blosc": range(10),
    "blosc2": range(10),
    "gzip": range(10),
    "bzip2": range(1, 10),
    "zstd": range(23),
}


class CompressionLevelError(ValueError):
    """A compression level outside the range its codec accepts."""


def parse_compression(compression: object, level: object) -> Compression | None:
    """Read a compression name (``"blosc"``, ``"blosc:zstd"``, ``"zlib"``...); None for none.

    Raises ``ValueError`` naming the choices for a name no writer knows,
    :class:`CompressionLevelError` (a ``ValueError``) for a level outside the codec's range, and
    ``TypeError`` for a level that is not an integer. Which families and compressors a given
    writer supports (h5py, zarr) is that writer's check.
    """
    if level is not None and (not isinstance(level, numbers.Integral) or isinstance(level, bool)):
        raise TypeError(f"compression_level must be an integer, got {level!r}")
    if compression in (None, False, "none"):
        return None
    if not isinstance(compression, str):
        raise TypeError(f"compression must be a name such as 'blosc', got {compression!r}")
    family, _, compressor = compression.partition(":")
    family = "gzip" if family == "zlib" else family
    if family not in _COMPRESSION_DEFAULTS:
        raise ValueError(f"unknown compression {compression!r}")
    default_compressor, default_level = _COMPRESSION_DEFAULTS[family]
    if compressor and default_compressor is None:
        raise ValueError(f"unknown compression {compression!r}: {family} has no compressors")
    levels = _LEVELS[family]
    if level is not None and int(level) not in levels:
        raise CompressionLevelError(
            f"compression {compression!r} level {level} is out of range "
            f"({levels.start} to {levels.stop - 1})"
        )
    return Compression(
        family,
        (compressor or default_compressor) if default_compressor else None,
        default_level if level is None else int(level),
    )

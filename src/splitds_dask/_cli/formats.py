"""What names a file format: suffixes, ``file.h5:/dataset`` paths, zarr folders, and the
optional libraries some formats need (imported on first use, with an install hint)."""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from types import ModuleType
from typing import NamedTuple

from splitds_dask._errors import FormatError
from splitds_dask._storage.block_file import H5_SUFFIXES

__all__ = [
    "TIFF_SUFFIXES",
    "H5Path",
    "has_multiscales",
    "is_zarr",
    "require",
    "split_h5_path",
]

TIFF_SUFFIXES = (".tif", ".tiff")


class H5Path(NamedTuple):
    """A dataset inside an HDF5 file: ``file.h5:/data``."""

    file: str
    name: str


def split_h5_path(text: str) -> H5Path | None:
    """``file.h5:/data`` → ``H5Path("file.h5", "/data")``; None when ``text`` is not of that
    form."""
    head, sep, name = text.rpartition(":")
    if sep and name.startswith("/") and head.lower().endswith(H5_SUFFIXES):
        return H5Path(head, name)
    return None


def is_zarr(path: Path) -> bool:
    """Whether the folder ``path`` is a zarr array or group (version 2 or 3)."""
    return any((path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))


def has_multiscales(path: Path) -> bool:
    """Whether the zarr group at ``path`` carries OME-Zarr ``multiscales`` metadata."""
    for name in ("zarr.json", ".zattrs"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs)
        if "multiscales" in attrs.get("ome", attrs):
            return True
    return False


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or fail naming the package extra that installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        raise FormatError(
            f"this needs {module}; install it with: pip install 'splitds-dask[{extra}]'"
        ) from None

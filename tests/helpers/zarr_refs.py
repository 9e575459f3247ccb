"""Reading kerchunk references with zarr-python through fsspec's reference file system."""

from __future__ import annotations

import os
from typing import Any

import fsspec
import numpy as np
import zarr

__all__ = ["read_zarr"]


def read_zarr(
    refs: dict[str, Any] | str | os.PathLike[str], name: str, **options: Any
) -> np.ndarray:
    """The array ``name`` of the references, read by zarr-python (no h5py)."""
    fo = refs if isinstance(refs, dict) else str(refs)
    fs = fsspec.filesystem("reference", fo=fo, asynchronous=True, **options)
    store = zarr.storage.FsspecStore(fs, read_only=True)
    array = zarr.open_array(store, path=name, mode="r", zarr_format=2)
    return np.asarray(array[...])

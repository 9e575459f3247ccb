"""napari reader (npe2 manifest ``napari.yaml``): split-dataset folders and single block files.

A folder opens as one lazy image layer: the dataset's dask array (one chunk per block file), with
``scale``, ``axis_labels`` and ``units`` from the physical metadata and contrast limits estimated
from a few planes spread over the data (never by reading everything). Afterwards napari reads
the blocks holding the planes it displays (it computes dask arrays unfused, chunk by chunk, and
caches the chunks). A single ``.h5``/``.hdf5`` file (one block) opens through
h5py, which never unpickles anything stored in the file.

This module does not import napari: the reader returns plain layer-data tuples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from splitds_dask._daskmodes import numpy_convertible, to_numpy
from splitds_dask._errors import SplitDatasetError
from splitds_dask._storage.block_file import H5_SUFFIXES, find_data_key, open_h5, stored_dtype

__all__ = ["estimate_contrast_limits", "napari_get_reader"]

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]

# Planes (2-D sections along the last two axes) read to estimate contrast limits.
_CONTRAST_PLANES = 5


def estimate_contrast_limits(data: Any, *, n_planes: int = _CONTRAST_PLANES) -> tuple[float, float]:
    """Minimum and maximum of a few planes of ``data``, spread evenly over the leading axes.

    Reads at most ``n_planes`` planes (sections along the last two axes), each with one
    ``data[index]`` call, whatever the size of ``data``.

    Parameters
    ----------
    data : array-like
        Anything with ``shape``, ``dtype`` and numpy indexing (a :class:`SplitDataset`).
    n_planes : int, default 5
        How many planes to read.

    Returns
    -------
    (float, float)
        ``(low, high)`` with ``low < high``, as napari requires.
    """
    shape = tuple(data.shape)
    if np.dtype(data.dtype) == bool or math.prod(shape) == 0:
        return 0.0, 1.0
    leading = shape[:-2]
    n = math.prod(leading)
    positions = np.unique(np.linspace(0, n - 1, min(n_planes, n)).round().astype(np.int64))
    low, high = math.inf, -math.inf
    for position in positions:
        index = tuple(int(i) for i in np.unravel_index(int(position), leading))
        plane = to_numpy(data[index])
        if plane.dtype.kind == "c":
            plane = np.abs(plane)
        finite = plane[np.isfinite(plane)] if plane.dtype.kind == "f" else plane
        if finite.size:
            low, high = min(low, float(finite.min())), max(high, float(finite.max()))
    if not math.isfinite(low):  # only NaN and infinities
        return 0.0, 1.0
    return (low, high) if high > low else (low, low + 1.0)


def _dataset_layer(dataset: Any) -> LayerData:
    kwargs = {
        "name": Path(dataset.root).resolve().name,
        "scale": tuple(dataset.scale),
        "axis_labels": tuple(dataset.axes),
        # napari's own default for an axis without a unit.
        "units": tuple("pixel" if u is None else u for u in dataset.units),
        "contrast_limits": estimate_contrast_limits(dataset),
        "multiscale": False,
        "rgb": False,
        "metadata": {"split_dataset": str(dataset.root)},
    }
    # napari shows a plane with np.asarray(data[index]).
    return numpy_convertible(dataset.to_dask()), kwargs, "image"


def _h5_key(path: Path) -> str | None:
    """The array a block file holds, if it is one napari can show."""
    try:
        with open_h5(path) as f:
            key = find_data_key(f)
            if key is None:
                return None
            dset = f[key]
            if dset.ndim == 0 or stored_dtype(dset).kind not in "biufc":
                return None
            return key
    except OSError:
        return None


def _h5_layer(path: Path, key: str) -> LayerData:
    with open_h5(path) as f:
        dset = f[key]
        dtype = stored_dtype(dset)
        data = np.asarray(dset[()])
    if data.dtype != dtype:  # a bool bitfield (read as uint8) or a big-endian array
        data = data.astype(dtype)
    kwargs = {
        "name": path.stem,
        "contrast_limits": estimate_contrast_limits(data),
        "multiscale": False,
        "rgb": False,
        "metadata": {"split_dataset_block": str(path), "key": key},
    }
    return data, kwargs, "image"


def _layer_reader(path: Path) -> Callable[[], LayerData] | None:
    """A function that makes the layer of ``path``, or None if this plugin cannot open it."""
    from splitds_dask._dataset import SplitDataset

    if path.is_dir():
        try:
            dataset = SplitDataset(path)
            dataset.dtype  # noqa: B018 - reads the first block's header: fail here, not in napari
        except SplitDatasetError:
            return None
        return lambda: _dataset_layer(dataset)
    if path.is_file() and path.suffix.lower() in H5_SUFFIXES:
        key = _h5_key(path)
        return None if key is None else (lambda: _h5_layer(path, key))
    return None


def napari_get_reader(path: str | os.PathLike[str] | Sequence[str]) -> ReaderFunction | None:
    """The npe2 reader command: a reader for ``path`` if it is a split dataset or a block file.

    Parameters
    ----------
    path : str or list of str
        A folder holding a split dataset, or an ``.h5``/``.hdf5`` file; or a list of them.

    Returns
    -------
    callable or None
        A function returning one ``(data, kwargs, "image")`` tuple per path, or None if any
        path is neither (so napari can try other readers).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    readers = [_layer_reader(Path(p)) for p in paths]
    if not readers or any(r is None for r in readers):
        return None

    def read(_path: Any) -> list[LayerData]:
        return [make() for make in readers if make is not None]

    return read

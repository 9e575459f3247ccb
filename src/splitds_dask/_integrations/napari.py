"""napari reader (npe2 manifest ``napari.yaml``): split-dataset folders and single block files.

A folder opens as one lazy image layer: the dataset's dask array (one chunk per block file), with
``scale``, ``axis_labels`` and ``units`` from the physical metadata and contrast limits estimated
from a few planes spread over the data, of each at most 8 MiB (never by reading
everything, whatever shape the files declare). Afterwards napari reads the blocks holding the
planes it displays (it computes dask arrays unfused, chunk by chunk, and caches the chunks). A
single ``.h5``/``.hdf5`` file (one block) opens through h5py, which never unpickles anything
stored in the file: into memory up to 64 MiB, read on demand beyond.

This module does not import napari: the reader returns plain layer-data tuples.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from splitds_dask._daskmodes import numpy_convertible, to_numpy
from splitds_dask._errors import BlockError, SplitDatasetError
from splitds_dask._storage.block_file import (
    H5_SUFFIXES,
    checked_dataset,
    find_data_key,
    open_h5,
    stored_dtype,
)

__all__ = ["estimate_contrast_limits", "napari_get_reader"]

LayerData = tuple[Any, dict[str, Any], str]
ReaderFunction = Callable[[Any], list[LayerData]]

# Planes (2-D sections along the last two axes) read to estimate contrast limits.
_CONTRAST_PLANES = 5
# At most this many bytes are read from each plane (a 2048 x 2048 uint16 plane whole): of a
# larger plane, 3 x 3 tiles spread over it, so that the estimate costs a few MB whatever shape
# the files declare. Contiguous tiles rather than a strided sample: a strided read touches a
# chunk of the file per element.
_SAMPLE_BYTES = 8 << 20
_TILES = 3
# A single block file up to this size is read into memory; a larger one is read on demand.
_IN_MEMORY_BYTES = 64 << 20


def _tile_starts(length: int, tile: int, count: int) -> list[int]:
    """Starts of ``count`` windows of ``tile`` centred in equal parts of ``range(length)``."""
    return sorted(
        {
            min(max(0, (2 * i + 1) * length // (2 * count) - tile // 2), length - tile)
            for i in range(count)
        }
    )


def _axis_tiles(length: int, tile: int) -> list[slice]:
    if length <= _TILES * tile:
        return [slice(None)]
    return [slice(start, start + tile) for start in _tile_starts(length, tile, _TILES)]


def _plane_sample(plane: tuple[int, ...], budget: int) -> list[tuple[slice, ...]]:
    """Windows of ``plane`` holding at most ``budget`` elements together (``[()]``: all)."""
    if math.prod(plane) <= budget:
        return [()]
    if len(plane) == 1:
        return [(window,) for window in _axis_tiles(plane[0], budget // _TILES)]
    rows, cols = plane
    col_windows = _axis_tiles(cols, math.isqrt(budget // _TILES**2))
    width = cols if col_windows == [slice(None)] else col_windows[0].stop - col_windows[0].start
    row_budget = budget // (len(col_windows) * width)
    row_windows = _axis_tiles(rows, max(1, row_budget // _TILES))
    return [(r, c) for r in row_windows for c in col_windows]


def _spread(count: int, n: int) -> list[int]:
    """``count`` positions spread evenly over ``range(n)`` (numpy's linspace, rounded half to
    even), in Python integers whatever ``n``."""
    if count == 1:
        return [0]
    return sorted({round(Fraction(i * (n - 1), count - 1)) for i in range(count)})


def _unravel(position: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for n in reversed(shape):
        position, r = divmod(position, n)
        out.append(r)
    return tuple(reversed(out))


def estimate_contrast_limits(data: Any, *, n_planes: int = _CONTRAST_PLANES) -> tuple[float, float]:
    """Minimum and maximum of a few planes of ``data``, spread evenly over the leading axes.

    Reads at most ``n_planes`` planes (sections along the last two axes), each with one
    ``data[index]`` call, whatever the size of ``data``. Of a plane larger than 8 MiB, only
    3 x 3 windows spread over it are read (one call each), at most 8 MiB together: the estimate
    costs a few MB whatever shape the files declare.

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
    shape = tuple(int(n) for n in data.shape)
    if np.dtype(data.dtype) == bool or math.prod(shape) == 0:
        return 0.0, 1.0
    leading, plane = shape[:-2], shape[-2:]
    n = math.prod(leading)
    budget = max(1, _SAMPLE_BYTES // np.dtype(data.dtype).itemsize)
    windows = _plane_sample(plane, budget)
    low, high = math.inf, -math.inf
    for position in _spread(min(n_planes, n), n):
        index = _unravel(position, leading)
        for window in windows:
            low, high = _update_limits(low, high, to_numpy(data[index + window]))
    if not math.isfinite(low):  # only NaN and infinities
        return 0.0, 1.0
    return (low, high) if high > low else (low, low + 1.0)


def _update_limits(low: float, high: float, values: np.ndarray) -> tuple[float, float]:
    if values.dtype.kind == "c":
        values = np.abs(values)
    finite = values[np.isfinite(values)] if values.dtype.kind == "f" else values
    if finite.size:
        return min(low, float(finite.min())), max(high, float(finite.max()))
    return low, high


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
            # Refused if its data lies outside the file: an external link could lead anywhere.
            checked = checked_dataset(f, key, path=path, block=())
            dset = checked.dataset if checked is not None else None
            if dset is None or dset.ndim == 0 or stored_dtype(dset).kind not in "biufc":
                return None
            return key
    except (OSError, BlockError):
        return None


class _BlockFileArray:
    """The array of one block file, read on demand: ``self[index]`` reads just that selection.

    napari accepts any array with ``shape``, ``dtype``, ``ndim`` and numpy indexing; a file too
    large for memory (or declaring a shape far larger than what it holds) opens this way.
    """

    def __init__(self, path: Path, key: str, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.key, self.shape, self.dtype = path, key, shape, dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    def __getitem__(self, index: Any) -> np.ndarray:
        with open_h5(self.path) as f:
            values = np.asarray(f[self.key][index])
        return values if values.dtype == self.dtype else values.astype(self.dtype)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        values = self[()]
        return values if dtype is None else values.astype(dtype)


def _h5_layer(path: Path, key: str) -> LayerData:
    with open_h5(path) as f:
        dset = f[key]
        dtype = stored_dtype(dset)
        shape = tuple(dset.shape)
        data: Any
        if math.prod(shape) * dtype.itemsize > _IN_MEMORY_BYTES:
            data = _BlockFileArray(path, key, shape, dtype)
        else:
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

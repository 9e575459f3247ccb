"""napari reader and sample data (npe2 manifest ``napari.yaml``).

The reader opens what this package can read, and declines (returns None for) everything else,
so that napari's builtins or other plugins can take it:

- a split-dataset folder, or its ``stack_metadata.json`` (any ``*stack_metadata.json``): one lazy
  image layer, the dataset's dask array (one chunk per block file), with ``scale``,
  ``axis_labels`` and ``units`` from the physical metadata and contrast limits estimated from a
  few planes spread over the data, of each at most 8 MiB (never by reading everything, whatever
  shape the files declare). Afterwards napari reads the blocks holding the planes it displays (it
  computes dask arrays unfused, chunk by chunk, and caches the chunks);
- a folder whose subfolders are all split datasets of one shape (brunoise's ``original/green``
  and ``original/red``): one multichannel layer (napari's ``channel_axis``), a channel per
  subfolder, named after it;
- an experiment folder holding split datasets further down (``exp/original``,
  ``exp/aligned``): a layer per dataset, named by its path relative to the folder (the channel
  folders among them as one multichannel layer);
- a single block file (``<stem><number>.h5``) through h5py, which never unpickles anything
  stored in the file: into memory up to 64 MiB, read on demand beyond.

The sample data is the ``splitds demo`` movie, written once per process as a small split
dataset in a temporary folder (removed when the process exits) and opened with the reader.

This module does not import napari: the reader returns plain layer-data tuples.
"""

from __future__ import annotations

import atexit
import functools
import math
import os
import re
import shutil
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splitds_dask._daskmodes import numpy_convertible, to_numpy
from splitds_dask._errors import BlockError, SplitDatasetError
from splitds_dask._format.metadata import METADATA_NAME
from splitds_dask._remote.location import is_url
from splitds_dask._storage.block_file import (
    checked_dataset,
    find_data_key,
    open_h5,
    stored_dtype,
)

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset as _SplitDataset

__all__ = ["demo_movie", "estimate_contrast_limits", "napari_get_reader", "sample_folder"]

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
# A block file's name, as the dataset folders' listing finds them (names starting with "." are
# temporary files).
_BLOCK_FILE = re.compile(r"(?!\.).*[0-9]\.h5", re.DOTALL)
# Folder names of channels that are also names of napari colormaps: each channel is shown in it.
_COLORMAPS = frozenset({"red", "green", "blue", "cyan", "magenta", "yellow", "gray"})
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


def _dataset_kwargs(dataset: _SplitDataset) -> dict[str, Any]:
    """The layer keywords of one dataset, besides its name."""
    return {
        "scale": tuple(dataset.scale),
        "axis_labels": tuple(dataset.axes),
        # napari's own default for an axis without a unit.
        "units": tuple("pixel" if u is None else u for u in dataset.units),
        "contrast_limits": estimate_contrast_limits(dataset),
        "multiscale": False,
        "rgb": False,
        "metadata": {"split_dataset": str(dataset.root)},
    }


def _dataset_layer(dataset: _SplitDataset, name: str | None = None) -> LayerData:
    if name is None:
        root = str(dataset.root)
        name = root.rstrip("/").rsplit("/", 1)[-1] if is_url(root) else Path(root).resolve().name
    kwargs = {"name": name}
    kwargs.update(_dataset_kwargs(dataset))
    # napari shows a plane with np.asarray(data[index]).
    return numpy_convertible(dataset.to_dask()), kwargs, "image"


def _channels_layer(channels: Sequence[tuple[str, _SplitDataset]], name: str) -> LayerData:
    """One multichannel layer: the channels stacked on a new first axis (napari's
    ``channel_axis``), each with its own name, scale, units and contrast limits."""
    import dask.array as da

    names = [channel for channel, _ in channels]
    per_channel = [_dataset_kwargs(dataset) for _, dataset in channels]
    kwargs: dict[str, Any] = {
        "channel_axis": 0,
        "name": [f"{name}/{channel}" if name != "." else channel for channel in names],
        "multiscale": False,
        "rgb": False,
    }
    # Given as one value per channel: napari would take a single tuple as one value per channel
    # when its length equals the number of channels.
    for key in ("scale", "axis_labels", "units", "contrast_limits", "metadata"):
        kwargs[key] = [channel[key] for channel in per_channel]
    if all(channel in _COLORMAPS for channel in names):
        kwargs["colormap"] = names
    data = da.stack([dataset.to_dask() for _, dataset in channels])
    return numpy_convertible(data), kwargs, "image"


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


def _open_dataset(path: Path | str) -> _SplitDataset | None:
    """The split dataset in folder ``path`` (or at the URL), or None if it is none this package
    can read."""
    from splitds_dask._dataset import SplitDataset

    try:
        dataset = SplitDataset(path)
        dataset.dtype  # noqa: B018 - reads the first block's header: fail here, not in napari
    except (SplitDatasetError, OSError):  # OSError: a folder or file we may not read
        return None
    return dataset


def _channels(found: Sequence[Any]) -> list[tuple[str, _SplitDataset]] | None:
    """The channel datasets ``found`` opened, named by folder name; None if one cannot be read."""
    opened = [(item.path.name, _open_dataset(item.path)) for item in found]
    channels = [(name, dataset) for name, dataset in opened if dataset is not None]
    return channels if len(channels) == len(opened) else None


def _experiment_layers(folder: Path) -> list[Callable[[], LayerData]]:
    """Makers of the layers of the split datasets inside ``folder``: one per dataset, named by
    its path relative to ``folder``, except that channel folders (brunoise's ``green`` and
    ``red`` of one shape) make one multichannel layer named after their parent."""
    from splitds_dask._format.experiments import channel_datasets, find_datasets

    makers: list[Callable[[], LayerData]] = []
    groups: dict[Path, frozenset[Path]] = {}  # folder: its channels made into a layer
    for item in find_datasets(folder):
        if item.name == ".":
            continue  # the folder itself, which failed to open as a dataset
        parent = item.path.parent
        if parent not in groups:
            found = channel_datasets(parent)
            # None, or the channels of parent/original (found when the loop gets there)
            if found is None or any(channel.path.parent != parent for channel in found):
                found = ()
            channels = _channels(found) if found else None
            groups[parent] = frozenset(c.path for c in found if channels is not None)
            if channels is not None:
                name = parent.relative_to(folder).as_posix()
                makers.append(functools.partial(_channels_layer, channels, name))
        if item.path in groups[parent]:
            continue  # a channel of the multichannel layer
        dataset = _open_dataset(item.path)
        if dataset is None:
            warnings.warn(f"{item.path}: not opened, it cannot be read", stacklevel=3)
            continue
        makers.append(functools.partial(_dataset_layer, dataset, item.name))
    return makers


def _folder_reader(path: Path) -> list[Callable[[], LayerData]] | None:
    """The layers of folder ``path``: a split dataset, or the datasets inside it."""
    dataset = _open_dataset(path)
    if dataset is not None:
        return [functools.partial(_dataset_layer, dataset)]
    return _experiment_layers(path) or None


def _url_reader(url: str) -> list[Callable[[], LayerData]] | None:
    """The layer of the remote dataset at ``url`` (its folder, or its metadata file's URL)."""
    if url.rstrip("/").endswith(METADATA_NAME):
        url = url.rstrip("/").rsplit("/", 1)[0]
    dataset = _open_dataset(url)
    return None if dataset is None else [functools.partial(_dataset_layer, dataset)]


def _layer_reader(path: Path) -> list[Callable[[], LayerData]] | None:
    """Functions that make the layers of ``path``, or None if this plugin cannot open it."""
    if path.is_dir():
        return _folder_reader(path)
    if not path.is_file():
        return None
    if path.name.endswith(METADATA_NAME):  # any *stack_metadata.json
        # The metadata file stands for its folder; its folder only, not an experiment around it.
        dataset = _open_dataset(path.parent)
        return None if dataset is None else [functools.partial(_dataset_layer, dataset)]
    if _BLOCK_FILE.fullmatch(path.name):
        key = _h5_key(path)
        return None if key is None else [functools.partial(_h5_layer, path, key)]
    return None


def napari_get_reader(path: str | os.PathLike[str] | Sequence[str]) -> ReaderFunction | None:
    """The npe2 reader command: a reader for ``path`` if this package can read it.

    Parameters
    ----------
    path : str or list of str
        A split-dataset folder or its ``*stack_metadata.json`` (either also as a URL, read
        with the storage options fsspec finds in its ``FSSPEC_<PROTOCOL>_<OPTION>`` environment
        variables), a folder of channel folders
        (each a split dataset, all of one shape), an experiment folder holding split datasets,
        or a block file (``<stem><number>.h5``); or a list of them.

    Returns
    -------
    callable or None
        A function returning the ``(data, kwargs, "image")`` tuples of the paths, or None if
        any path is none of these (so that napari can try other readers).
    """
    paths = [path] if isinstance(path, (str, os.PathLike)) else list(path)
    readers = [
        _url_reader(os.fspath(p)) if is_url(os.fspath(p)) else _layer_reader(Path(p)) for p in paths
    ]
    if not readers or any(r is None for r in readers):
        return None
    makers = [make for reader in readers if reader is not None for make in reader]

    def read(_path: Any) -> list[LayerData]:
        return [make() for make in makers]

    return read


# --- sample data ----------------------------------------------------------------------------

# The demo movie as sample data: 32 time points of 8 x 256 x 256 (uint16) in 8 block files,
# about 16 MB on disk with Blosc (the shot noise does not compress): written in about half a
# second, the first time a process opens the sample.
_SAMPLE_FRAMES = 32
_SAMPLE_BLOCK_FRAMES = 4
_sample_lock = threading.Lock()
_sample_folder: list[Path] = []  # the temporary folder of this process, once written


def _remove_sample(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


def sample_folder() -> Path:
    """The demo movie's split dataset, written on first use into a temporary folder of this
    process and removed when it exits."""
    from splitds_dask._synthetic import (
        FRAME_SHAPE,
        MOVIE_AXES,
        MOVIE_SCALE,
        MOVIE_UNITS,
        synthetic_movie,
    )
    from splitds_dask._write.array import to_split_dataset

    with _sample_lock:
        if _sample_folder and (_sample_folder[0] / "demo").is_dir():
            return _sample_folder[0] / "demo"
        folder = Path(tempfile.mkdtemp(prefix="splitds-dask-sample-"))
        atexit.register(_remove_sample, folder)
        movie = synthetic_movie(_SAMPLE_FRAMES, block_frames=_SAMPLE_BLOCK_FRAMES)
        to_split_dataset(
            movie,
            folder / "demo",
            block_shape=(_SAMPLE_BLOCK_FRAMES, *FRAME_SHAPE),
            axes=MOVIE_AXES,
            scale=(None, *MOVIE_SCALE[1:]),
            units=(None, *MOVIE_UNITS[1:]),
            time_step=MOVIE_SCALE[0],
            durable=False,
        )
        _sample_folder[:] = [folder]
        return folder / "demo"


def demo_movie() -> list[LayerData]:
    """The npe2 sample-data command: the ``splitds demo`` movie, opened as a split dataset.

    Returns
    -------
    list of (data, kwargs, "image")
        One lazy image layer, as the reader gives it, named ``demo movie``.
    """
    dataset = _open_dataset(sample_folder())
    if dataset is None:  # the temporary folder was emptied under us
        raise SplitDatasetError("the sample data's temporary folder was removed")
    return [_dataset_layer(dataset, "demo movie")]

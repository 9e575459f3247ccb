"""bioio reader plugin: ``bioio.BioImage(folder)`` opens split datasets.

Registered as the ``bioio.readers`` entry point ``splitds-dask`` (bioio names a plugin after its
distribution and loads ``Reader`` and ``ReaderMetadata`` from this module). bioio picks it with
no ``reader=`` argument for

- a split-dataset folder (bioio tries the readers of directory images on any folder), or the
  path of its ``stack_metadata.json`` (the plugin claims ``.json`` and accepts only such files);
- a brunoise two-channel folder ``<exp>/original`` (``green/`` and ``red/``, split datasets of
  one shape): one image whose channels are ``"green"`` and ``"red"``;
- an experiment folder holding several datasets: one bioio scene per dataset (a channel folder
  is one scene), named by its path relative to the folder (``"original"``, ``"dff"``...).

A folder that is itself the image (a dataset, or a channel folder) is the one scene
``"Image:0"``, as bioio names the image of a single-image file (the scene ``"."`` when the folder
holds other datasets besides its channels).

Axes map to bioio's ``TCZYX`` by name: ``t``/``time``, ``c``/``ch``/``channel``, ``z``, ``y``,
``x`` (any case); axes that are missing become length-1 dimensions. When a name does not map
(or two map to the same letter), axes take the letters the format's defaults give by position:

- 1-D: ``X``;
- 2-D: ``YX``, a plane;
- 3-D: ``ZYX``, a volume (an anatomy stack);
- 4-D: ``TZYX``, a volume series (sashimi, brunoise);
- 5-D: ``TCZYX``.

Datasets of more than 5 dimensions are refused. Axes named in another order (``zyxt``) are
transposed inside the reads.

``dask_data`` has one chunk per block file (per dataset along C). Opening reads the metadata
and the first block file's header (for the dtype), no block data until computed; a selection
(``get_image_dask_data("ZYX", T=3)``) reads only the elements it selects, and ``data`` reads
everything. ``physical_pixel_sizes`` are the spacings of the ``z``, ``y`` and ``x`` axes in
their own units (None for an axis the data lacks), which ``dimension_properties`` names (pint
units); ``time_interval`` is the time step when the ``t`` axis has a time unit, else None.
Channels are named after their folders in a channel folder, else ``Channel:<scene
index>:<channel index>`` as bioio names channels without names. ``metadata`` is the parsed
``stack_metadata.json`` (for a channel folder: ``{channel: metadata}``).

Needs the optional dependency bioio (``pip install "splitds-dask[bioio]"``); the rest of the
package never imports this module.
"""

from __future__ import annotations

import datetime
import os
import posixpath
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple, cast

import numpy as np

try:
    import pint
    from bioio_base import constants, exceptions, io, reader, reader_metadata, types
    from bioio_base.dimensions import DEFAULT_DIMENSION_ORDER, DimensionNames
except ImportError as exc:  # pragma: no cover - bioio is an optional dependency
    raise ImportError(
        'splitds-dask\'s bioio reader needs bioio and bioio-base: pip install "splitds-dask[bioio]"'
    ) from exc

from splitds_dask._errors import SplitDatasetError
from splitds_dask._format.experiments import channel_datasets, find_datasets
from splitds_dask._format.metadata import METADATA_NAME, is_split_dataset
from splitds_dask._integrations.tczyx import TczyxSource, TczyxView

if TYPE_CHECKING:
    import xarray as xr

    from splitds_dask._dataset import SplitDataset
    from splitds_dask._reader import BlockReader

__all__ = ["Reader", "ReaderMetadata", "bioio_dims"]

_PLUGIN = "splitds-dask"
_METADATA_SUFFIX = METADATA_NAME  # any ``*stack_metadata.json`` names a dataset's metadata
_AXIS_LETTERS = {
    "t": "T",
    "time": "T",
    "c": "C",
    "ch": "C",
    "channel": "C",
    "z": "Z",
    "y": "Y",
    "x": "X",
}
_DEFAULT_LETTERS = {1: "X", 2: "YX", 3: "ZYX", 4: "TZYX", 5: "TCZYX"}
_SINGLE_IMAGE = "Image:0"


class _Channel(NamedTuple):
    """One dataset of an image: its folder and, in a channel folder, the channel's name."""

    name: str | None
    path: Path


class _Image(NamedTuple):
    """One bioio scene: its name and the datasets stacked along C."""

    name: str
    channels: tuple[_Channel, ...]


def bioio_dims(axes: tuple[str, ...]) -> str:
    """The bioio dimension letters of a dataset's axes (see the module docstring).

    Parameters
    ----------
    axes : tuple of str
        The dataset's axis names (:attr:`SplitDataset.axes`).

    Returns
    -------
    str
        One letter of ``TCZYX`` per axis, in the dataset's order.

    Raises
    ------
    ValueError
        More than 5 axes.

    Examples
    --------
    >>> bioio_dims(("t", "z", "y", "x")), bioio_dims(("y", "x", "t"))
    ('TZYX', 'YXT')
    >>> bioio_dims(("plane", "row", "column"))  # unknown names: the default by position
    'ZYX'
    """
    ndim = len(axes)
    if not 1 <= ndim <= len(DEFAULT_DIMENSION_ORDER):
        raise ValueError(
            f"{ndim}-D data: bioio images have 1 to 5 dimensions ({DEFAULT_DIMENSION_ORDER})"
        )
    letters = [_AXIS_LETTERS.get(name.lower()) for name in axes]
    if None in letters or len(set(letters)) != ndim:
        return _DEFAULT_LETTERS[ndim]
    return "".join(letter for letter in letters if letter is not None)


def _local_path(fs: Any, path: str) -> Path | None:
    """``path`` as a local path, or None on another file system (the blocks are read by h5py)."""
    protocols = fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,)
    return Path(path) if {"file", "local"} & set(protocols) else None


def _image_folder(path: Path) -> Path:
    """The folder a path names: itself, or the dataset whose metadata file it is."""
    return path.parent if path.name.endswith(_METADATA_SUFFIX) and path.is_file() else path


def _is_metadata_file(path: Path) -> bool:
    return path.name.endswith(_METADATA_SUFFIX) and path.is_file() and is_split_dataset(path.parent)


def _find_images(folder: Path) -> tuple[_Image, ...]:
    """The images (scenes) a folder holds, without reading any block data."""
    if is_split_dataset(folder):
        return (_Image(_SINGLE_IMAGE, (_Channel(None, folder),)),)
    images: dict[str, _Image] = {}
    channels_of: dict[str, dict[Path, str]] = {}  # parent -> {channel folder: channel name}
    for dataset in find_datasets(folder):
        parent = posixpath.dirname(dataset.name) or "."
        if parent not in channels_of:
            # channel_datasets looks into <exp>/original when given <exp>: keep only channels
            # that are subfolders of this very parent.
            here = Path(os.path.abspath(folder / parent))
            channels_of[parent] = {
                Path(os.path.abspath(c.path)): c.name
                for c in channel_datasets(here) or ()
                if Path(os.path.abspath(c.path)).parent == here
            }
        channel = channels_of[parent].get(Path(os.path.abspath(dataset.path)))
        # A channel joins its folder's image; any other dataset is an image of its own.
        name = dataset.name if channel is None else parent
        previous = images[name].channels if name in images else ()
        images[name] = _Image(name, (*previous, _Channel(channel, dataset.path)))
    if len(images) == 1 and "." in images:  # the folder itself is the image (legacy, channels)
        return (images["."]._replace(name=_SINGLE_IMAGE),)
    return tuple(images.values())


class _Part(NamedTuple):
    """One dataset of the current scene."""

    channel: _Channel
    dataset: SplitDataset
    source: TczyxSource


class Reader(reader.Reader):
    """bioio reader of split datasets, channel folders and experiment folders.

    bioio constructs it from ``BioImage(path)``; see the module docstring for what it reads and
    how axes map to ``TCZYX``.

    Parameters
    ----------
    image : str or Path
        A split-dataset folder, its ``stack_metadata.json``, a channel folder or an experiment
        folder (local paths only).
    fs_kwargs : dict, optional
        Passed to fsspec to resolve ``image`` (the data itself is read with h5py).

    Raises
    ------
    bioio_base.exceptions.UnsupportedFileFormatError
        ``image`` holds no split dataset, or a dataset that cannot be a bioio image.
    splitds_dask.SplitDatasetError
        When the data is read: a dataset's metadata or block files are damaged.
    """

    def __init__(self, image: types.PathLike, fs_kwargs: dict[str, Any] | None = None) -> None:
        fs, path = io.pathlike_to_fs(image, enforce_exists=True, fs_kwargs=fs_kwargs or {})
        local = _local_path(fs, path)
        if local is None:
            raise exceptions.UnsupportedFileFormatError(
                _PLUGIN, str(image), "split datasets are read from local folders only"
            )
        self._fs = fs
        self._path = str(local)
        folder = _image_folder(local)
        images = _find_images(folder) if folder.is_dir() else ()
        if not images:
            raise exceptions.UnsupportedFileFormatError(
                _PLUGIN, str(image), "no split dataset found there"
            )
        self._images = images
        self._opened: dict[Path, SplitDataset] = {}
        self._current_scene_index = 0

    @staticmethod
    def _is_supported_image(fs: Any, path: str, **kwargs: Any) -> bool:
        local = _local_path(fs, path)
        if local is None:
            return False
        if local.is_file():
            return _is_metadata_file(local)
        try:
            return bool(_find_images(local)) if local.is_dir() else False
        except (SplitDatasetError, OSError):
            return False

    # --- scenes ------------------------------------------------------------------------------

    @property
    def scenes(self) -> tuple[str, ...]:
        """One per image: ``("Image:0",)`` for a dataset, relative paths in an experiment."""
        return tuple(image.name for image in self._images)

    @property
    def _image(self) -> _Image:
        return self._images[self._current_scene_index]

    def _dataset(self, path: Path) -> SplitDataset:
        from splitds_dask._dataset import SplitDataset

        # A damaged dataset raises the package's own error, which names the file and the fault.
        if path not in self._opened:
            self._opened[path] = SplitDataset(path)
        return self._opened[path]

    def _parts(self) -> list[_Part]:
        """The current scene's datasets, each with its reader and TCZYX letters."""
        from splitds_dask._graph import dataset_token

        parts = []
        for channel in self._image.channels:
            dataset = self._dataset(channel.path)
            try:
                letters = bioio_dims(dataset.axes)
            except ValueError as exc:
                raise exceptions.UnsupportedFileFormatError(
                    _PLUGIN, str(channel.path), str(exc)
                ) from None
            # Stamped with the files' times, as the dataset's own dask array is: dask's names
            # change when a block file does.
            reader = dataset.reader.stamped(dataset_token(dataset))
            parts.append(_Part(channel, dataset, TczyxSource(reader, letters)))
        return parts

    def _view(self, parts: list[_Part]) -> TczyxView:
        try:
            return TczyxView([p.source for p in parts])
        except ValueError as exc:
            described = ", ".join(
                f"{p.channel.name} {p.source.letters} {p.dataset.shape} {p.dataset.dtype}"
                for p in parts
            )
            raise exceptions.UnsupportedFileFormatError(
                _PLUGIN, str(parts[0].channel.path.parent), f"{exc} ({described})"
            ) from None

    # --- data --------------------------------------------------------------------------------

    def _read_delayed(self) -> xr.DataArray:
        from dask.base import tokenize

        from splitds_dask._daskmodes import from_reader

        parts = self._parts()
        view = self._view(parts)
        # from_reader (and the windows it reads in dask's array-expr mode) uses only the shape,
        # dtype, numpy indexing and dask token of what it reads, which the view has: a
        # selection of the dask array is read as a window in both dask modes.
        data = from_reader(
            cast("BlockReader", view),
            chunks=view.chunks(),
            name=f"splitds-bioio-{tokenize(view)}",
            meta=np.empty((0,) * view.ndim, dtype=view.dtype),
            # Small readers (names by a rule) ride in every task, as the dataset's array does.
            inline_array=all(p.source.reader.names.is_rule for p in parts),
        )
        return self._to_xarray(data, parts)

    @property
    def xarray_data(self) -> xr.DataArray:
        """The image read into memory (``xarray_dask_data`` stays the lazy, file-backed array).

        bioio's base reader would also wrap the data read in a new dask array, which hashes all
        of it (dask names arrays by content): as long as reading it again, for nothing.
        """
        if self._xarray_data is None:
            self._xarray_data = self._read_immediate()
        return self._xarray_data

    def _read_immediate(self) -> xr.DataArray:
        parts = self._parts()
        return self._to_xarray(self._view(parts)[...], parts)

    def _to_xarray(self, data: Any, parts: list[_Part]) -> Any:
        import xarray as xr

        first = parts[0].dataset
        coords: dict[str, Any] = {DimensionNames.Channel: self._channel_names(parts)}
        for letter, n, step in zip(parts[0].source.letters, first.shape, first.scale, strict=True):
            if letter != DimensionNames.Channel:
                coords[letter] = np.arange(n) * step
        if len(parts) == 1:
            metadata: Any = first.metadata
        else:
            metadata = {p.channel.name: p.dataset.metadata for p in parts}
        return xr.DataArray(
            data,
            dims=tuple(DEFAULT_DIMENSION_ORDER),
            coords=coords,
            attrs={constants.METADATA_UNPROCESSED: metadata},
        )

    def _channel_names(self, parts: list[_Part]) -> list[str]:
        names: list[str] = []
        for part in parts:
            n, name = part.source.channels, part.channel.name
            if name is None:
                start = len(names)
                names += [f"Channel:{self._current_scene_index}:{start + i}" for i in range(n)]
            else:
                names += [name] if n == 1 else [f"{name}:{i}" for i in range(n)]
        return names

    # --- physical metadata ---------------------------------------------------------------------

    def _spacing(self) -> dict[str, tuple[float, str | None]]:
        """``{letter: (spacing, unit)}`` of the current scene's axes (the first channel's)."""
        dataset = self._dataset(self._image.channels[0].path)
        letters = bioio_dims(dataset.axes)
        return {
            letter: (float(step), unit)
            for letter, step, unit in zip(letters, dataset.scale, dataset.units, strict=True)
        }

    @property
    def physical_pixel_sizes(self) -> types.PhysicalPixelSizes:
        """Spacing along Z, Y and X in the axes' units (None for an axis the data lacks)."""
        spacing = self._spacing()
        z, y, x = (spacing[d][0] if d in spacing else None for d in "ZYX")
        return types.PhysicalPixelSizes(Z=z, Y=y, X=x)

    @property
    def time_interval(self) -> types.TimeInterval:
        """The time step, when the ``t`` axis has a time unit; else None."""
        dataset = self._dataset(self._image.channels[0].path)
        if "T" not in bioio_dims(dataset.axes) or dataset.time_step is None:
            return None
        return datetime.timedelta(seconds=dataset.time_step)

    @property
    def dimension_properties(self) -> types.DimensionProperties:
        """Type and unit (a pint unit from bioio's registry, when known) of each dimension."""
        spacing = self._spacing()

        def unit(letter: str) -> Any:
            name = spacing[letter][1] if letter in spacing else None
            try:
                return None if name is None else types.ureg.Unit(name)
            except (pint.PintError, AttributeError, TypeError, ValueError):  # not a unit name
                return None

        def prop(letter: str, kind: str) -> types.DimensionProperty:
            present = letter in spacing or (letter == "C" and len(self._image.channels) > 1)
            if letter == "T" and self.time_interval is not None:
                return types.DimensionProperty(type=kind, unit=types.ureg.Unit("second"))
            return types.DimensionProperty(type=kind if present else None, unit=unit(letter))

        return types.DimensionProperties(
            T=prop("T", "time"),
            C=prop("C", "channel"),
            Z=prop("Z", "space"),
            Y=prop("Y", "space"),
            X=prop("X", "space"),
        )


class ReaderMetadata(reader_metadata.ReaderMetadata):
    """What bioio asks of the plugin before reading: the extensions and folders it takes."""

    @staticmethod
    def get_supported_extensions() -> list[str]:
        """``.json``: the plugin accepts a dataset's ``stack_metadata.json`` (and no other)."""
        return [".json"]

    @staticmethod
    def get_reader() -> type[reader.Reader]:  # type: ignore[override]
        """The :class:`Reader` class."""
        return Reader

    @staticmethod
    def supports_directory_images() -> bool:
        """True: a split dataset is a folder, which bioio then offers to this plugin."""
        return True

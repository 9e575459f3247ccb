"""The arrays ``splitds convert`` and ``splitds project`` read, each opened by :func:`open_source`.

Each source is read lazily, region by region, by a picklable reader that holds paths, never open
files (so the same graph runs on threads, worker processes or a cluster):

- a split dataset folder;
- ``.npy`` (memory-mapped);
- a TIFF stack: one multi-page ``.tif``/``.tiff`` file, or a folder (or glob pattern) of
  single-image TIFF files in name order, read with tifffile;
- an HDF5 dataset, ``file.h5:/path/to/dataset``;
- a zarr array (``.zarr``), and OME-Zarr (``.ome.zarr``, its full-resolution level).
"""

from __future__ import annotations

import contextlib
import glob
import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import dask.array as da
import numpy as np
from dask.base import tokenize

from splitds_dask._cli.formats import (
    TIFF_SUFFIXES,
    has_multiscales,
    is_zarr,
    require,
    split_h5_path,
)
from splitds_dask._cli.messages import one_line
from splitds_dask._cli.ome import first_level, level_metadata
from splitds_dask._cli.selection import (
    Pick,
    Selection,
    resolve,
    selected_chunks,
    selected_metadata,
    selected_shape,
    source_region,
)
from splitds_dask._errors import FormatError
from splitds_dask._format.physical import physical_metadata_kwargs
from splitds_dask._storage.block_file import H5_SUFFIXES

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset

__all__ = ["Source", "open_source"]


# --- readers: picklable, hold paths only, open per read ---------------------------------------


class _Reader:
    """Shape, dtype and ``reader[region]`` of one array in some file format."""

    path: str  # the file (or folder) read, whose modification time is part of the token
    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None = None  # the format's own chunking, if any

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, vars(self), _mtime(self.path))

    def __getitem__(self, key: Any) -> np.ndarray:
        raise NotImplementedError

    def natural_chunks(self) -> tuple[tuple[int, ...], ...]:
        """``array.chunk-size`` chunks aligned to the format's own chunks."""
        return da.core.normalize_chunks(
            "auto", self.shape, dtype=self.dtype, previous_chunks=self.chunks
        )


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


class _DatasetReader(_Reader):
    """A split dataset's numpy indexing: a region spanning blocks reads each file's part."""

    def __init__(self, dataset: SplitDataset) -> None:
        self.dataset = dataset
        self.path = str(dataset.root)
        self.shape = tuple(dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.chunks = tuple(dataset.shape_block)

    def __dask_tokenize__(self) -> Any:
        from splitds_dask._graph import dataset_token

        return ("splitds", dataset_token(self.dataset))

    def natural_chunks(self) -> tuple[tuple[int, ...], ...]:
        """The dataset's blocks."""
        return self.dataset.chunks

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.dataset[key]


class _SelectedReader(_Reader):
    """A ``--select`` of another reader: each region read is the matching region of the
    source, so only the source's blocks under the selection are read."""

    def __init__(self, base: _Reader, picks: tuple[Pick, ...]) -> None:
        self.base, self.picks = base, picks
        self.path = base.path
        self.shape = selected_shape(picks)
        self.dtype = base.dtype
        self.chunks = None

    def __dask_tokenize__(self) -> Any:
        picks = [p if isinstance(p, int) else (p.start, p.stop, p.step) for p in self.picks]
        return ("selected", tokenize(self.base), picks)

    def natural_chunks(self) -> tuple[tuple[int, ...], ...]:
        """Chunks each within one natural chunk (one block) of the source."""
        return selected_chunks(self.picks, self.base.natural_chunks())

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.base[source_region(self.picks, key)]


class _NpyReader(_Reader):
    def __init__(self, path: str) -> None:
        self.path = path
        array = self._open()
        self.shape, self.dtype = tuple(array.shape), array.dtype

    def _open(self) -> np.ndarray:
        try:
            return np.load(self.path, mmap_mode="r", allow_pickle=False)
        except (ValueError, EOFError) as exc:
            raise FormatError(f"{self.path}: not a readable .npy array: {exc}") from None

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(self._open()[key])


class _H5Reader(_Reader):
    def __init__(self, path: str, name: str) -> None:
        self.path, self.name = path, name
        with self._open() as dset:
            self.shape, self.dtype, self.chunks = dset.shape, dset.dtype, dset.chunks
            if dset.dtype.kind not in "biuf":
                raise FormatError(f"{path}:{name} holds {dset.dtype} data, not numbers")

    def _open(self) -> Any:
        from splitds_dask._storage.block_file import open_h5  # registers hdf5plugin's filters

        @contextlib.contextmanager
        def dataset() -> Iterator[Any]:
            import h5py

            with open_h5(self.path) as f:
                node = f.get(self.name)
                if not isinstance(node, h5py.Dataset):
                    what = "no such dataset" if node is None else "not a dataset"
                    names = _h5_dataset_names(f)
                    raise FormatError(
                        f"{self.path}:{self.name}: {what} (datasets in the file: "
                        f"{', '.join(names[:10]) or 'none'})"
                    )
                yield node

        return dataset()

    def __getitem__(self, key: Any) -> np.ndarray:
        with self._open() as dset:
            return np.asarray(dset[key])


def _h5_dataset_names(f: Any) -> list[str]:
    import h5py

    names: list[str] = []
    f.visititems(
        lambda name, node: names.append("/" + name) if isinstance(node, h5py.Dataset) else None
    )
    return names


class _ZarrReader(_Reader):
    def __init__(self, path: str, name: str | None = None) -> None:
        self.path, self.name = path, name
        array = self._open()
        self.shape, self.dtype, self.chunks = (
            tuple(array.shape),
            np.dtype(array.dtype),
            array.chunks,
        )

    def _open(self) -> Any:
        zarr = require("zarr", "zarr")

        try:
            return zarr.open_array(store=self.path, path=self.name or "", mode="r")
        except (ValueError, OSError) as exc:  # zarr's errors subclass these
            where = f"{self.path}/{self.name}" if self.name else self.path
            raise FormatError(f"{where}: not a readable zarr array: {one_line(exc)}") from None

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._open()[key])


class _TiffReader(_Reader):
    """A multi-page TIFF file's first series, or a sequence of TIFF files, via tifffile's zarr."""

    def __init__(self, files: tuple[str, ...]) -> None:
        self.files = files
        self.path = files[0]
        with self._open() as array:
            self.shape, self.dtype = tuple(array.shape), np.dtype(array.dtype)
            self.chunks = array.chunks

    def __dask_tokenize__(self) -> Any:
        return ("tiff", self.files, [_mtime(f) for f in self.files])

    def _open(self) -> Any:
        tifffile = require("tifffile", "tiff")
        zarr = require("zarr", "zarr")

        @contextlib.contextmanager
        def array() -> Iterator[Any]:
            try:
                if len(self.files) == 1:
                    with tifffile.TiffFile(self.files[0]) as tif, tif.series[0].aszarr() as store:
                        yield zarr.open_array(store, mode="r")
                else:
                    sequence = tifffile.TiffSequence(self.files)
                    with sequence.aszarr() as store:
                        yield zarr.open_array(store, mode="r")
            except (tifffile.TiffFileError, ValueError, IndexError) as exc:
                raise FormatError(f"{self.path}: not a readable TIFF: {one_line(exc)}") from None

        return array()

    def __getitem__(self, key: Any) -> np.ndarray:
        with self._open() as array:
            return np.asarray(array[key])


# --- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """An array to convert: where it is, how to read it, and the metadata to carry along."""

    description: str
    reader: _Reader
    metadata: dict[str, Any] = field(default_factory=dict)
    dataset: SplitDataset | None = None  # when the source is one, or a selection of one
    selection: Selection | None = None  # the --select applied, if any

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.reader.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.reader.dtype)

    def natural_chunks(self) -> tuple[tuple[int, ...], ...]:
        """The source's blocks, or ``array.chunk-size`` chunks aligned to the format's chunks
        (of a selection: those chunks' parts under the selection)."""
        return self.reader.natural_chunks()

    def select(self, selection: Selection) -> Source:
        """This source restricted to ``selection``, read lazily (see :mod:`.selection`).

        Raises
        ------
        UsageError
            The selection does not fit the shape (one line naming the axis).
        """
        picks = resolve(selection, self.shape, self.metadata.get("axes"))
        return Source(
            f"{self.description} [{selection.text}]",
            _SelectedReader(self.reader, picks),
            selected_metadata(picks, self.metadata),
            self.dataset,
            selection,
        )

    def to_dask(self, chunks: Any = None) -> da.Array:
        """The source as a dask array whose every chunk is one read of that region."""
        chunks = self.natural_chunks() if chunks is None else chunks
        if self.dataset is not None and self.selection is None:
            from splitds_dask._graph import dataset_to_dask

            chunks = da.core.normalize_chunks(chunks, self.shape)
            if chunks == self.dataset.chunks:
                return self.dataset.to_dask()  # cached: its name stats the block files once
            return dataset_to_dask(self.dataset, chunks)
        return da.from_array(
            self.reader,
            chunks=chunks,
            name=f"splitds-read-{tokenize(self.reader, chunks)}",
            lock=False,
            asarray=True,
            inline_array=True,
            meta=np.empty((0,) * len(self.shape), dtype=self.dtype),
        )


def _carry_metadata(dataset: SplitDataset) -> dict[str, Any]:
    """The writer keyword arguments that carry a split dataset's metadata into a conversion.

    Every conversion takes its metadata from here, so that what a dataset describes about itself
    reaches the converted copy.

    Parameters
    ----------
    dataset : SplitDataset
        The source.

    Returns
    -------
    dict
        ``axes``, ``scale`` and ``units`` (see :func:`~splitds_dask.physical_metadata_kwargs`),
        for :func:`~splitds_dask.to_split_dataset` and the OME-Zarr writer.
    """
    return physical_metadata_kwargs(dataset)


def _ome_source(path: str) -> Source:
    """OME-Zarr: the first (full resolution) level of the first multiscale image."""
    zarr = require("zarr", "zarr")

    try:
        group = zarr.open_group(store=path, mode="r")
    except (ValueError, OSError) as exc:
        raise FormatError(f"{path}: not a readable zarr group: {one_line(exc)}") from None
    level = first_level(dict(group.attrs), path)
    reader = _ZarrReader(path, level.path)
    return Source(f"OME-Zarr {path}", reader, level_metadata(level, len(reader.shape)))


def _tiff_files(text: str) -> tuple[str, ...] | None:
    """The TIFF files named by ``text``: one file, a glob pattern, or a folder of them."""
    if glob.has_magic(text):
        files = sorted(glob.glob(text))
        if not files:
            raise FormatError(f"{text}: no files match this pattern")
        return tuple(files)
    path = Path(text)
    if path.suffix.lower() in TIFF_SUFFIXES:
        return (text,)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
        return tuple(files) or None
    return None


def open_source(
    text: str, *, allow_external: bool = False, storage_options: dict[str, Any] | None = None
) -> Source:
    """Open what ``text`` names, by its form: see the module docstring.

    ``allow_external`` is passed to a split dataset (see :class:`SplitDataset`); a URL is a
    remote split dataset, opened with ``storage_options``.

    Raises
    ------
    FormatError, SplitDatasetError, OSError
        Nothing readable is there, or what is there is not an array of numbers.
    """
    source = _open_source(text, allow_external, storage_options)
    if source.dtype.kind not in "biufc":
        raise FormatError(f"{text}: holds {source.dtype} data, not numbers")
    return source


def _dataset_source(dataset: SplitDataset) -> Source:
    """The source of an opened split dataset (a folder, or a URL)."""
    return Source(
        f"split dataset {dataset.root}", _DatasetReader(dataset), _carry_metadata(dataset), dataset
    )


def _open_source(text: str, allow_external: bool, storage_options: dict[str, Any] | None) -> Source:
    from splitds_dask._dataset import SplitDataset
    from splitds_dask._format.metadata import is_split_dataset
    from splitds_dask._remote.location import is_url

    if is_url(text):
        return _dataset_source(SplitDataset(text, storage_options=storage_options))
    h5 = split_h5_path(text)
    if h5 is not None:
        if not Path(h5[0]).is_file():
            raise FileNotFoundError(f"{h5[0]}: no such file")
        return Source(f"HDF5 {text}", _H5Reader(*h5))
    path = Path(text)
    name = path.name.lower()
    if not glob.has_magic(text) and not path.exists():
        raise FileNotFoundError(f"{text}: no such file or folder")
    if path.is_dir() and is_split_dataset(path):
        return _dataset_source(SplitDataset(path, allow_external=allow_external))
    if name.endswith(".npy"):
        return Source(f"npy {path}", _NpyReader(text))
    if path.is_dir() and is_zarr(path):
        if name.endswith(".ome.zarr") or has_multiscales(path):
            return _ome_source(text)
        return Source(f"zarr {path}", _ZarrReader(text))
    if name.endswith(H5_SUFFIXES) and path.is_file():
        raise FormatError(f"{text}: name the dataset inside the HDF5 file, e.g. {text}:/data")
    files = _tiff_files(text)
    if files:
        what = f"TIFF {text}" if len(files) == 1 else f"{len(files)} TIFF files {text}"
        return Source(what, _TiffReader(files))
    if path.is_dir():
        # Let the split dataset reader say what is missing (metadata, block files).
        SplitDataset(path)
    raise FormatError(
        f"{text}: not a split dataset, .npy, TIFF, HDF5 (file.h5:/dataset), zarr or OME-Zarr"
    )

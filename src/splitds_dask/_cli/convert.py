"""The formats ``splitds convert`` and ``splitds project`` read and write.

Sources, each read lazily, region by region, by picklable readers that hold paths, never open
files (so the same graph runs on threads, worker processes or a cluster):

- a split dataset folder;
- ``.npy`` (memory-mapped);
- a TIFF stack: one multi-page ``.tif``/``.tiff`` file, or a folder (or glob pattern) of
  single-image TIFF files in name order, read with tifffile;
- an HDF5 dataset, ``file.h5:/path/to/dataset``;
- a zarr array (``.zarr``), and OME-Zarr (``.ome.zarr``, its full-resolution level).

Targets: a split dataset folder (any other name), ``.npy``, ``.tif``/``.tiff``, ``file.h5:/path``,
``.zarr`` and ``.ome.zarr``. Every target is written under a hidden temporary name beside it and
renamed into place when complete.

Memory stays bounded whatever the size of the data: the source is read directly in the chunks of
the target (each task reads its region from the source files), so no task holds more than one
target block, and no dask rechunk, which for a transposing change of block shape would hold most
of the dataset at once, is involved. ``.npy``, split dataset and zarr targets are written by the
tasks themselves; TIFF and HDF5 files, which one process must write in order, are written by
this process slab by slab along the first axis.
"""

from __future__ import annotations

import glob
import math
import os
import shutil
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dask
import dask.array as da
import numpy as np
from dask.base import tokenize

from splitds_dask._daskmodes import array_nbytes, store_chunks
from splitds_dask._format.physical import physical_metadata_kwargs
from splitds_dask._storage.atomic import discard
from splitds_dask._storage.filters import parse_compression

__all__ = [
    "FormatError",
    "Source",
    "open_source",
    "target_kind",
    "write_array",
]

#: Largest slab (bytes) computed at once when a TIFF or HDF5 file is written in order.
SLAB_BYTES = 64 * 2**20

_TIFF_SUFFIXES = (".tif", ".tiff")
_H5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".he5")


class FormatError(ValueError):
    """A file in another format is missing, unreadable or cannot hold the data."""


# --- readers: picklable, hold paths only, open per read ---------------------------------------


class _Reader:
    """Shape, dtype and ``reader[region]`` of one array in some file format."""

    shape: tuple[int, ...]
    dtype: np.dtype
    chunks: tuple[int, ...] | None = None  # the format's own chunking, if any

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __dask_tokenize__(self) -> Any:
        return (type(self).__name__, vars(self), _mtime(self.path))  # type: ignore[attr-defined]


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime_ns
    except OSError:
        return 0


class _DatasetReader(_Reader):
    """A split dataset's numpy indexing: a region spanning blocks reads each file's part."""

    def __init__(self, dataset: Any) -> None:
        self.dataset = dataset
        self.path = str(dataset.root)
        self.shape = tuple(dataset.shape)
        self.dtype = np.dtype(dataset.dtype)
        self.chunks = tuple(dataset.shape_block)

    def __dask_tokenize__(self) -> Any:
        from splitds_dask._graph import dataset_token

        return ("splitds", dataset_token(self.dataset))

    def __getitem__(self, key: Any) -> np.ndarray:
        return self.dataset[key]


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
        import contextlib

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
        zarr = _require("zarr", "zarr")

        try:
            return zarr.open_array(store=self.path, path=self.name or "", mode="r")
        except (ValueError, OSError) as exc:  # zarr's errors subclass these
            where = f"{self.path}/{self.name}" if self.name else self.path
            raise FormatError(f"{where}: not a readable zarr array: {_one_line(exc)}") from None

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
        import contextlib

        tifffile = _require("tifffile", "tiff")
        zarr = _require("zarr", "zarr")

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
                raise FormatError(f"{self.path}: not a readable TIFF: {_one_line(exc)}") from None

        return array()

    def __getitem__(self, key: Any) -> np.ndarray:
        with self._open() as array:
            return np.asarray(array[key])


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).splitlines()) or type(exc).__name__


def _require(module: str, extra: str) -> Any:
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise FormatError(
            f"this needs {module}; install it with: pip install 'splitds-dask[{extra}]'"
        ) from None


# --- sources ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Source:
    """An array to convert: where it is, how to read it, and the metadata to carry along."""

    description: str
    reader: _Reader
    metadata: dict[str, Any] = field(default_factory=dict)
    dataset: Any = None  # the SplitDataset, when the source is one

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.reader.shape)

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.reader.dtype)

    def natural_chunks(self) -> tuple[tuple[int, ...], ...]:
        """The source's blocks, or ``array.chunk-size`` chunks aligned to the format's chunks."""
        if self.dataset is not None:
            return self.dataset.chunks
        return da.core.normalize_chunks(
            "auto", self.shape, dtype=self.dtype, previous_chunks=self.reader.chunks
        )

    def to_dask(self, chunks: Any = None) -> da.Array:
        """The source as a dask array whose every chunk is one read of that region."""
        chunks = self.natural_chunks() if chunks is None else chunks
        if self.dataset is not None:
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


def _carry_metadata(dataset: Any) -> dict[str, Any]:
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


def _split_h5_path(text: str) -> tuple[str, str] | None:
    """``file.h5:/data`` → ``("file.h5", "/data")``; None when ``text`` is not of that form."""
    head, sep, name = text.rpartition(":")
    if sep and name.startswith("/") and head.lower().endswith(_H5_SUFFIXES):
        return head, name
    return None


def _is_zarr(path: Path) -> bool:
    return any((path / name).is_file() for name in ("zarr.json", ".zarray", ".zgroup"))


def _ome_source(path: str) -> Source:
    """OME-Zarr: the first (full resolution) level of the first multiscale image."""
    zarr = _require("zarr", "zarr")

    try:
        group = zarr.open_group(store=path, mode="r")
    except (ValueError, OSError) as exc:
        raise FormatError(f"{path}: not a readable zarr group: {_one_line(exc)}") from None
    attrs = dict(group.attrs)
    multiscales = attrs.get("ome", attrs).get("multiscales")
    try:
        image = multiscales[0]
        level = image["datasets"][0]
        axes = [a["name"] if isinstance(a, dict) else str(a) for a in image.get("axes", [])]
        scale = next(
            (
                t["scale"]
                for t in level.get("coordinateTransformations", [])
                if t["type"] == "scale"
            ),
            None,
        )
        reader = _ZarrReader(path, level["path"])
    except (TypeError, KeyError, IndexError):
        raise FormatError(f"{path}: no OME-Zarr multiscales metadata") from None
    metadata: dict[str, Any] = {}
    if scale is not None and len(scale) == len(reader.shape):
        metadata["scale"] = tuple(float(s) for s in scale)
    if len(axes) == len(reader.shape) and all(axes):
        metadata["axes"] = tuple(axes)
        units = [a.get("unit") if isinstance(a, dict) else None for a in image["axes"]]
        metadata["units"] = tuple(u if isinstance(u, str) and u else None for u in units)
    return Source(f"OME-Zarr {path}", reader, metadata)


def _tiff_files(text: str) -> tuple[str, ...] | None:
    """The TIFF files named by ``text``: one file, a glob pattern, or a folder of them."""
    if glob.has_magic(text):
        files = sorted(glob.glob(text))
        if not files:
            raise FormatError(f"{text}: no files match this pattern")
        return tuple(files)
    path = Path(text)
    if path.suffix.lower() in _TIFF_SUFFIXES:
        return (text,)
    if path.is_dir():
        files = sorted(str(p) for p in path.iterdir() if p.suffix.lower() in _TIFF_SUFFIXES)
        return tuple(files) or None
    return None


def open_source(text: str) -> Source:
    """Open what ``text`` names, by its form: see the module docstring.

    Raises
    ------
    FormatError, SplitDatasetError, OSError
        Nothing readable is there, or what is there is not an array of numbers.
    """
    source = _open_source(text)
    if source.dtype.kind not in "biufc":
        raise FormatError(f"{text}: holds {source.dtype} data, not numbers")
    return source


def _open_source(text: str) -> Source:
    from splitds_dask._dataset import SplitDataset
    from splitds_dask._format.metadata import is_split_dataset

    h5 = _split_h5_path(text)
    if h5 is not None:
        if not Path(h5[0]).is_file():
            raise FileNotFoundError(f"{h5[0]}: no such file")
        return Source(f"HDF5 {text}", _H5Reader(*h5))
    path = Path(text)
    name = path.name.lower()
    if not glob.has_magic(text) and not path.exists():
        raise FileNotFoundError(f"{text}: no such file or folder")
    if path.is_dir() and is_split_dataset(path):
        dataset = SplitDataset(path)
        return Source(
            f"split dataset {path}", _DatasetReader(dataset), _carry_metadata(dataset), dataset
        )
    if name.endswith(".npy"):
        return Source(f"npy {path}", _NpyReader(text))
    if path.is_dir() and _is_zarr(path):
        if name.endswith(".ome.zarr") or _has_multiscales(path):
            return _ome_source(text)
        return Source(f"zarr {path}", _ZarrReader(text))
    if name.endswith(_H5_SUFFIXES) and path.is_file():
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


def _has_multiscales(path: Path) -> bool:
    import json

    for name in ("zarr.json", ".zattrs"):
        try:
            attrs = json.loads((path / name).read_text())
        except (OSError, ValueError):
            continue
        attrs = attrs.get("attributes", attrs)
        if "multiscales" in attrs.get("ome", attrs):
            return True
    return False


# --- targets ----------------------------------------------------------------------------------


def target_kind(text: str) -> str:
    """``"npy"``, ``"tiff"``, ``"hdf5"``, ``"ome-zarr"``, ``"zarr"`` or ``"split"``."""
    if _split_h5_path(text) is not None:
        return "hdf5"
    name = Path(text).name.lower()
    if name.endswith(".npy"):
        return "npy"
    if name.endswith(_TIFF_SUFFIXES):
        return "tiff"
    if name.endswith(_H5_SUFFIXES):
        raise FormatError(f"{text}: name the dataset inside the HDF5 file, e.g. {text}:/data")
    if name.endswith(".ome.zarr"):
        return "ome-zarr"
    if name.endswith(".zarr"):
        return "zarr"
    return "split"


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")


def _check_new(path: Path, *, overwrite: bool, replaceable: Callable[[Path], bool]) -> None:
    """Refuse to replace anything but an earlier output of the same kind, and that only if asked."""
    if not path.exists():
        return
    if path.is_dir() and replaceable is not Path.is_file and not any(path.iterdir()):
        return  # an empty folder, where a folder is to be written: taken as the target
    if not replaceable(path):
        raise FileExistsError(
            f"{path} exists and is not a {path.suffix or 'split dataset'} output; not replacing it"
        )
    if not overwrite:
        raise FileExistsError(f"{path} exists; pass --overwrite to replace it")


def _publish(staging: Path, path: Path) -> None:
    """Move a finished output into place (replacing an old one only once the new one is whole)."""
    if path.is_dir():
        retired = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
        os.rename(path, retired)
        os.rename(staging, path)
        shutil.rmtree(retired)
    else:
        os.replace(staging, path)


class _NpyTarget:
    """A ``store`` target writing regions of a C-order ``.npy`` file with ``os.pwrite``.

    It holds only the path and the layout (a memory map pickled to another process would be a
    copy), and writes each contiguous run of a region straight to the file: a memory map of a
    strided region would keep pages of the whole file resident.
    """

    def __init__(self, path: Path, shape: tuple[int, ...], dtype: np.dtype) -> None:
        self.path, self.shape, self.dtype = path, shape, np.dtype(dtype)
        array = np.lib.format.open_memmap(path, mode="w+", dtype=self.dtype, shape=shape)
        self.offset = int(array.offset)
        array.flush()
        del array

    def __setitem__(self, region: tuple[slice, ...], value: np.ndarray) -> None:
        starts = [r.start or 0 for r in region]
        value = np.ascontiguousarray(value, dtype=self.dtype)
        if value.size == 0:
            return
        # Axes after `split` are whole in the region, so each index of the axes before it
        # addresses one contiguous run of the file.
        split = len(self.shape) - 1
        while split > 0 and value.shape[split] == self.shape[split]:
            split -= 1
        runs = value.reshape(math.prod(value.shape[:split]), -1)
        if split == 0:
            first = [int(np.ravel_multi_index(starts, self.shape))]
        else:
            lead = np.indices(value.shape[:split]).reshape(split, -1)
            lead += np.array(starts[:split])[:, None]
            rest = [np.full(lead.shape[1], s) for s in starts[split:]]
            first = np.ravel_multi_index([*lead, *rest], self.shape).tolist()
        fd = os.open(self.path, os.O_WRONLY)
        try:
            for offset, run in zip(first, runs, strict=True):
                os.pwrite(fd, run.data, self.offset + offset * self.dtype.itemsize)
        finally:
            os.close(fd)


def _zarr_compressors(compression: str | None, level: int | None) -> Any:
    codecs = _require("zarr.codecs", "zarr")
    unavailable = FormatError(
        f"compression {compression!r} is not available for zarr (blosc, gzip, zstd or none)"
    )
    try:
        choice = parse_compression(compression, level)
    except ValueError:
        raise unavailable from None
    if choice is None:
        return None
    if choice.family == "blosc":
        return codecs.BloscCodec(cname=choice.compressor, clevel=choice.level, shuffle="shuffle")
    if choice.family == "gzip":
        return codecs.GzipCodec(level=choice.level)
    if choice.family == "zstd":
        return codecs.ZstdCodec(level=choice.level)
    raise unavailable


_OME_AXIS_TYPES = {"t": "time", "c": "channel", "z": "space", "y": "space", "x": "space"}


def ome_multiscales(shape: Sequence[int], metadata: dict[str, Any], name: str) -> dict[str, Any]:
    """OME-Zarr 0.5 ``ome`` attributes for one full-resolution level at path ``0``."""
    names = metadata.get("axes")
    axis_order = (
        "".join(names)
        if names and all(len(a) == 1 for a in names)
        else {2: "yx", 3: "zyx", 4: "tzyx", 5: "tczyx"}.get(len(shape))
    )
    if not 2 <= len(shape) <= 5 or not axis_order or len(axis_order) != len(shape):
        raise FormatError(
            f"OME-Zarr needs 2 to 5 axes named from t, c, z, y, x; got shape {tuple(shape)}"
            + (f" with axis order {axis_order!r}" if axis_order else "")
        )
    axis_order = axis_order.lower()
    canonical = "".join(a for a in "tczyx" if a in axis_order)
    if (
        sorted(axis_order) != sorted(canonical)
        or axis_order != canonical
        or not set("yx") <= set(axis_order)
    ):
        raise FormatError(
            f"OME-Zarr needs axes in the order t, c, z, y, x (ending with y, x); got {axis_order!r}"
        )
    # Unknown spacing is 1 in OME-Zarr, which has no way to say "unknown".
    scale = [1.0 if s is None else float(s) for s in metadata.get("scale") or [1.0] * len(shape)]
    units = metadata.get("units") or [None] * len(shape)
    axes = []
    for a, unit in zip(axis_order, units, strict=True):
        axis: dict[str, Any] = {"name": a, "type": _OME_AXIS_TYPES[a]}
        if unit is not None:
            axis["unit"] = unit
        axes.append(axis)
    return {
        "version": "0.5",
        "multiscales": [
            {
                "name": name,
                "axes": axes,
                "datasets": [
                    {"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}
                ],
            }
        ],
    }


def _store_zarr(x: da.Array, staging: Path, *, ome: dict[str, Any] | None, compressors: Any) -> Any:
    zarr = _require("zarr", "zarr")

    if ome is None:
        array = zarr.create_array(
            store=str(staging),
            shape=x.shape,
            chunks=[c[0] for c in x.chunks],
            dtype=x.dtype,
            compressors=compressors,
            fill_value=0,
        )
    else:
        group = zarr.create_group(store=str(staging), zarr_format=3, attributes={"ome": ome})
        array = group.create_array(
            "0",
            shape=x.shape,
            chunks=[c[0] for c in x.chunks],
            dtype=x.dtype,
            compressors=compressors,
            fill_value=0,
            dimension_names=[a["name"] for a in ome["multiscales"][0]["axes"]],
        )
    return store_chunks(x, array)


def _check_codec(kind: str, compression: str | None, level: int | None, dtype: np.dtype) -> None:
    """Fail before anything is written if the target cannot use this codec and level."""
    from splitds_dask._storage.block_file import compression_options

    try:
        if kind in ("split", "hdf5"):
            import h5py

            # h5py checks some options only when it creates a dataset: create one in memory.
            options = compression_options(compression, level, dtype)
            with h5py.File(f"{uuid.uuid4().hex}.h5", "w", driver="core", backing_store=False) as f:
                f.create_dataset("probe", shape=(1,), dtype=dtype, chunks=(1,), **options)
        elif kind in ("zarr", "ome-zarr"):
            _zarr_compressors(compression, level)
    except FormatError:
        raise
    except ValueError as exc:
        raise FormatError(f"compression {compression} level {level}: {exc}") from None


def _slabs(x: da.Array, slab_bytes: int) -> Iterator[tuple[slice, da.Array]]:
    """Consecutive slabs of ``x`` along axis 0, each at most ``slab_bytes`` (at least one row).

    Slabs hold whole chunks of ``x`` where one fits: a slab cutting a chunk makes that chunk's
    task run for two slabs, and where dask fuses no slice into the read (its array-expr mode)
    reads the chunk whole for each. A chunk larger than ``slab_bytes`` is cut by rows.
    """
    row = math.prod(x.shape[1:]) * x.dtype.itemsize
    rows_per_slab = max(1, slab_bytes // max(row, 1))
    start = 0
    for stop in _chunk_groups(x.chunks[0], rows_per_slab):
        while start < stop:
            end = min(start + rows_per_slab, stop)
            yield slice(start, end), x[start:end]
            start = end


def _chunk_groups(lengths: Sequence[int], rows_per_slab: int) -> Iterator[int]:
    """Where each run of whole chunks of at most ``rows_per_slab`` rows ends (a lone larger
    chunk is a run of its own)."""
    stop = rows = 0
    for n in lengths:
        if rows and rows + n > rows_per_slab:
            yield stop
            rows = 0
        stop += n
        rows += n
    if rows:
        yield stop


_KIND_NAMES = {
    "split": "split dataset",
    "npy": "npy",
    "tiff": "TIFF",
    "hdf5": "HDF5",
    "zarr": "zarr",
    "ome-zarr": "OME-Zarr",
}


@dataclass
class Written:
    """What :func:`write_array` wrote: the target as named, its kind, the bytes of data."""

    description: str
    nbytes: int


def write_array(
    source: Source,
    target: str,
    *,
    block_shape: Sequence[int | None] | int | None = None,
    compression: str | None = "blosc",
    compression_level: int | None = None,
    overwrite: bool = False,
    compute: Callable[[Any], Any] = dask.compute,
    on_slab: Callable[[int, int], None] | None = None,
) -> Written:
    """Convert ``source`` into ``target`` (its kind from its name: see :func:`target_kind`).

    Parameters
    ----------
    source : Source
        From :func:`open_source`.
    target : str
        The output path (``file.h5:/dataset`` for HDF5).
    block_shape : int or sequence, optional
        Block shape of a split dataset target, chunk shape of a zarr or OME-Zarr target
        (default: the source's blocks, or chunks of about ``array.chunk-size``). HDF5 targets
        are chunked as block files are (about 1 MiB chunks).
    compression, compression_level : optional
        The codec of split dataset, zarr and HDF5 targets (see ``to_split_dataset``).
    overwrite : bool, optional
        Replace an earlier output of the same kind.
    compute : callable, optional
        Runs dask collections (the command line passes one with a progress bar).
    on_slab : callable, optional
        Called with ``(done, total)`` after each slab of a TIFF or HDF5 target.
    """
    from splitds_dask._format.geometry import BlockGrid

    kind = target_kind(target)
    shape = source.shape
    if not shape:
        raise FormatError("cannot convert a 0-d array")
    _check_codec(kind, compression, compression_level, source.dtype)
    if block_shape is None:
        chunks = source.natural_chunks()
        block_shape = tuple(c[0] if c else 1 for c in chunks)
    if kind in ("tiff", "hdf5"):
        # Written slab by slab along axis 0: each slab's tasks read only that slab.
        x = source.to_dask()
    else:
        x = source.to_dask(BlockGrid.from_spec(shape, block_shape).chunks)
    if kind == "split":
        from splitds_dask._format.metadata import is_split_dataset
        from splitds_dask._write.array import to_split_dataset

        folder = Path(os.path.abspath(target))
        _check_new(folder, overwrite=overwrite, replaceable=is_split_dataset)
        # to_split_dataset stages the files in a hidden folder beside the target, and cleans it
        # up only when it computes itself: remove the one this call made if the writing fails.
        pattern = f".{folder.name}.*.partial"
        earlier = set(folder.parent.glob(pattern))
        try:
            delayed = to_split_dataset(
                x,
                folder,
                compression=compression,
                compression_level=compression_level,
                overwrite=overwrite,
                compute=False,
                **source.metadata,
            )
            compute(delayed)
        except BaseException:
            for staging in set(folder.parent.glob(pattern)) - earlier:
                discard(staging, folder)
            raise
        return Written(f"{_KIND_NAMES[kind]} {target}", array_nbytes(x))
    h5 = _split_h5_path(target)
    path = Path(os.path.abspath(h5[0] if h5 else target))
    if kind in ("zarr", "ome-zarr"):
        _check_new(path, overwrite=overwrite, replaceable=lambda p: p.is_dir() and _is_zarr(p))
    else:
        _check_new(path, overwrite=overwrite, replaceable=Path.is_file)
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = _staging(path)
    try:
        if kind == "npy":
            target_file = _NpyTarget(staging, x.shape, x.dtype)
            compute(store_chunks(x, target_file))
        elif kind in ("zarr", "ome-zarr"):
            ome = ome_multiscales(shape, source.metadata, path.name) if kind == "ome-zarr" else None
            compressors = _zarr_compressors(compression, compression_level)
            compute(_store_zarr(x, staging, ome=ome, compressors=compressors))
        elif kind == "tiff":
            _write_tiff(x, staging, compute=compute, on_slab=on_slab)
        else:
            assert h5 is not None
            _write_h5(
                x,
                staging,
                h5[1],
                compression=compression,
                level=compression_level,
                compute=compute,
                on_slab=on_slab,
            )
        _publish(staging, path)
    except BaseException:
        if staging.is_dir():
            shutil.rmtree(staging, ignore_errors=True)
        else:
            staging.unlink(missing_ok=True)
        raise
    return Written(f"{_KIND_NAMES[kind]} {target}", array_nbytes(x))


def _write_tiff(
    x: da.Array,
    path: Path,
    *,
    compute: Callable[[Any], Any],
    on_slab: Callable[[int, int], None] | None,
) -> None:
    """A BigTIFF with one page per 2-D image (in C order), written slab by slab."""
    tifffile = _require("tifffile", "tiff")
    if x.ndim < 2:
        raise FormatError(f"a TIFF stack needs at least 2 axes, got shape {x.shape}")
    slabs = list(_slabs(x, SLAB_BYTES)) if x.ndim > 2 else [(slice(None), x)]

    def pages() -> Iterator[np.ndarray]:
        for i, (_, slab) in enumerate(slabs):
            (data,) = compute(slab)
            yield from data.reshape(-1, *x.shape[-2:])
            if on_slab is not None:
                on_slab(i + 1, len(slabs))

    with tifffile.TiffWriter(path, bigtiff=True) as tif:
        tif.write(pages(), shape=x.shape, dtype=x.dtype, photometric="minisblack")


def _write_h5(
    x: da.Array,
    path: Path,
    name: str,
    *,
    compression: str | None,
    level: int | None,
    compute: Callable[[Any], Any],
    on_slab: Callable[[int, int], None] | None,
) -> None:
    """One HDF5 dataset, chunked and compressed as block files are, written slab by slab."""
    import h5py

    from splitds_dask._storage.block_file import chunk_shape_for, compression_options

    options = compression_options(compression, level, x.dtype)
    chunks = chunk_shape_for(x.shape, x.dtype.itemsize) if options and x.size else None
    slabs = list(_slabs(x, SLAB_BYTES))
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(name, shape=x.shape, dtype=x.dtype, chunks=chunks, **options)
        for i, (region, slab) in enumerate(slabs):
            (data,) = compute(slab)
            dset[region] = data
            if on_slab is not None:
                on_slab(i + 1, len(slabs))


# --- projections ------------------------------------------------------------------------------

PROJECTION_SUFFIXES = (".npy", ".tif", ".tiff", ".png")


def save_projection(image: np.ndarray, target: str, *, overwrite: bool = False) -> Path:
    """Save a computed projection as ``.npy`` or TIFF (values as they are) or PNG (a preview).

    The PNG is 8-bit, contrast-stretched between the 0.5 and 99.8 percentiles; a 3-D result is
    shown as its planes tiled in a grid.

    Raises
    ------
    FormatError
        An unknown suffix, or a PNG of a result that is not 2-D or 3-D.
    FileExistsError
        ``target`` exists and ``overwrite`` is false, or it is a folder.
    """
    path = Path(os.path.abspath(target))
    suffix = path.suffix.lower()
    if suffix not in PROJECTION_SUFFIXES:
        raise FormatError(f"{target}: a projection is written as .npy, .tif, .tiff or .png")
    if suffix == ".png" and image.ndim not in (2, 3):
        raise FormatError(
            f"{target}: a PNG shows a 2-D or 3-D result, this one has shape {image.shape} "
            "(write .npy or .tif instead)"
        )
    _check_new(path, overwrite=overwrite, replaceable=Path.is_file)
    staging = _staging(path)
    try:
        if suffix == ".npy":
            with open(staging, "wb") as f:
                np.save(f, image, allow_pickle=False)
        elif suffix == ".png":
            from splitds_dask._cli.demo import mosaic, to_uint8
            from splitds_dask._cli.png import write_png

            write_png(staging, to_uint8(image if image.ndim == 2 else mosaic(image)))
        else:
            tifffile = _require("tifffile", "tiff")
            tifffile.imwrite(staging, image, photometric="minisblack")
        os.replace(staging, path)
    finally:
        staging.unlink(missing_ok=True)
    return path

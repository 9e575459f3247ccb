"""Kerchunk references: a split dataset as a virtual Zarr (v2) store over its own block files.

:func:`kerchunk_references` maps every Zarr chunk of the whole array to the byte range of one
Blosc chunk inside a block file, so that fsspec's reference file system, and through it
zarr-python and xarray, read the dataset without h5py and without a copy. The Zarr chunk grid
over the whole array is the HDF5 chunk shape of the block files, so only layouts that form one
regular grid can be described; anything else is a :class:`NotReferenceableError` naming the file
and the reason:

- blocks that overlap (``padding`` other than 0);
- HDF5 chunks that do not tile the blocks: along an axis of several blocks, the block length
  must be a multiple of the chunk length, and every block file must use the same chunk shape
  (the last block along an axis may be shorter, its chunks starting where the grid's do);
- storage a single Zarr codec cannot decode: contiguous (unchunked) arrays, any filter other
  than Blosc alone (gzip, shuffle + deflate, bzip2, Blosc2...), a byte order other than the
  machine's, a file with a user block, a chunk whose filter mask says Blosc was skipped (HDF5
  stores a chunk raw when the optional filter could not shrink it; Zarr would decompress it);
- a block file that holds less than its part of the array (a "short" file), or whose array
  lies outside the file (external links, virtual datasets, external storage).

The package's own writers chunk every block file of a dataset for the full block, in lengths
that divide it (:func:`~splitds_dask._storage.block_file.block_chunk_shape`), so what they write
with Blosc is expressible, but for blocks of tiny rows whose length has no fitting divisor.

Chunks never written are left out of the references: Zarr reads them as the fill value, which
is the HDF5 array's, as HDF5 does (written as ``null`` when it is 0, the usual case, so that
xarray does not take every 0 of the data for a missing value; zarr-python 3 reads 0 there). Chunks a block file holds beyond its part of the array (a
last block written whole, then the dataset cut short) are left out too.

The references point at the block files where they are (absolute paths, or the URL of a dataset
opened at one), or under ``url``, the place the same files are served from
(``s3://bucket/dataset``, ``https://host/dataset``).
Block files pass the same checks as a read first (see :mod:`splitds_dask._storage.containment`):
without ``allow_external`` no reference leaves the dataset folder. Nothing checks the chunks'
bytes (that would read the whole dataset): ``splitds verify`` does.
"""

from __future__ import annotations

import base64
import json
import math
import os
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import Any, NamedTuple, NoReturn

import h5py
import numpy as np
from numcodecs import blosc

from splitds_dask._dataset import SplitDataset
from splitds_dask._errors import BlockError, NotReferenceableError, damaged_block
from splitds_dask._remote.location import is_url
from splitds_dask._storage.block_file import checked_dataset, stored_dtype
from splitds_dask._storage.blosc import (
    BLOSC_FILTER,
    BloscOptions,
    ChunkError,
    ChunkIndexError,
    ChunkMap,
)
from splitds_dask._storage.filters import BLOSC_COMPRESSORS

__all__ = ["KERCHUNK_VERSION", "kerchunk_references"]

#: The version of the kerchunk reference format written (``{"version": 1, "refs": {...}}``).
KERCHUNK_VERSION = 1


class _Layout(NamedTuple):
    """What every block file must share: the Zarr array's chunk shape, codec and fill value."""

    chunk_shape: tuple[int, ...]
    options: BloscOptions
    fill_value: Any  # as .zarray writes it
    fill_text: str  # as HDF5 holds it, for messages
    first: str  # the name of the block file they were taken from, for messages


def kerchunk_references(
    dataset: SplitDataset | str | os.PathLike[str],
    *,
    url: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """Kerchunk (version 1) references describing the dataset as a Zarr v2 group.

    The group holds one array, ``name``, whose chunks are the Blosc chunks of the block files,
    referenced by byte range (``"<name>/i.j.k": [url, offset, length]``). Read it with fsspec's
    reference file system, e.g. in xarray::

        xr.open_dataset("reference://", engine="zarr", backend_kwargs={"consolidated": False,
                        "storage_options": {"fo": "refs.json"}})

    Parameters
    ----------
    dataset : SplitDataset or path
        The dataset (a path is opened with :class:`~splitds_dask.SplitDataset`). Its
        ``allow_external`` decides whether block files may be links leading out of the folder.
    url : str, optional
        Where the block files will be read from: the references name ``<url>/<file name>``
        (e.g. ``"s3://bucket/experiment/original"``). Default: the absolute path of the
        dataset folder on this machine, or the URL of a dataset opened at one (its block files'
        chunk indexes are then read over the store, not their chunks). Readers of remote files pass ``"remote_protocol":
        "s3"`` (or ``"http"``...) and ``"remote_options": {"asynchronous": True}`` in the
        ``storage_options`` beside ``"fo"``: zarr's store is asynchronous, and fsspec's
        reference file system wants its targets alike.
    name : str, optional
        The array's name in the group (xarray's variable name). Default: the folder's name, as
        :meth:`~splitds_dask.SplitDataset.to_xarray` names it.

    Returns
    -------
    dict
        ``{"version": 1, "refs": {...}}``: ``.zgroup``, ``<name>/.zarray`` and
        ``<name>/.zattrs`` (``_ARRAY_DIMENSIONS``: the dataset's axis names) as JSON text,
        one ``[url, offset, length]`` per stored chunk, and one coordinate array per axis
        (element index times spacing, with its ``units``, as
        :meth:`~splitds_dask.SplitDataset.to_xarray` gives), stored inline. ``json.dump`` it
        to a file.

    Raises
    ------
    NotReferenceableError
        The layout cannot be expressed as one regular Zarr chunk grid with one codec (see the
        module's description for the cases); the message names the file and why.
    BlockError
        A block file is missing, unreadable, damaged, or refused by the folder checks.
    ValueError
        ``name`` or ``url`` is unusable.

    Examples
    --------
    >>> import json, splitds_dask as sd
    >>> refs = sd.kerchunk_references("experiment/original")  # 30 x 4 x 64 x 64, 3 blocks
    >>> [key for key in refs["refs"] if key.startswith("original/")]  # doctest: +NORMALIZE_WHITESPACE
    ['original/.zarray', 'original/.zattrs',
     'original/0.0.0.0', 'original/1.0.0.0', 'original/2.0.0.0']
    >>> json.loads(refs["refs"]["original/.zarray"])["chunks"]
    [10, 4, 64, 64]
    >>> path, offset, length = refs["refs"]["original/2.0.0.0"]
    >>> path.endswith("0002.h5")
    True
    >>> with open("refs.json", "w") as f:
    ...     json.dump(refs, f)
    """
    ds = dataset if isinstance(dataset, SplitDataset) else SplitDataset(dataset)
    source = _Source.of(ds)
    var = _variable_name(ds, source.folder, name)
    base = _base_url(source.folder, url)
    grid = ds.grid
    if any(grid.padding):
        raise NotReferenceableError(
            f"{source.folder}: blocks overlap (padding {grid.padding}), which one Zarr chunk "
            "grid cannot express",
            path=source.folder,
        )
    layout: _Layout | None = None
    chunks: dict[str, list[Any]] = {}
    for index, block in enumerate(grid.blocks()):
        file_name = ds.block_names[index]
        target = f"{base}/{file_name}"
        layout = _block_chunks(ds, source, block, file_name, target, layout, var, chunks)
    assert layout is not None  # a grid has at least one block
    refs: dict[str, Any] = {
        ".zgroup": json.dumps({"zarr_format": 2}),
        f"{var}/.zarray": json.dumps(_zarray(ds, layout)),
        f"{var}/.zattrs": json.dumps({"_ARRAY_DIMENSIONS": list(ds.axes)}),
    }
    refs.update(sorted(chunks.items(), key=lambda item: _chunk_order(item[0])))
    refs.update(_coordinates(ds))
    return {"version": KERCHUNK_VERSION, "refs": refs}


def _coordinates(ds: SplitDataset) -> dict[str, str]:
    """One coordinate array per axis, as :meth:`SplitDataset.to_xarray` gives: element index
    times spacing, with the unit as ``units``; its few bytes are stored in the references.

    An axis whose name cannot name a Zarr array (``/`` in it, or a leading ``.``) gets none.
    """
    refs: dict[str, str] = {}
    for axis, n, step, unit in zip(ds.axes, ds.shape, ds.scale, ds.units, strict=True):
        if "/" in axis or axis.startswith("."):
            continue
        zarray = {
            "zarr_format": 2,
            "shape": [n],
            "chunks": [max(n, 1)],
            "dtype": "<f8",
            "compressor": None,
            "fill_value": None,
            "order": "C",
            "filters": None,
        }
        attrs: dict[str, Any] = {"_ARRAY_DIMENSIONS": [axis]}
        if unit is not None:
            attrs["units"] = unit
        refs[f"{axis}/.zarray"] = json.dumps(zarray)
        refs[f"{axis}/.zattrs"] = json.dumps(attrs)
        if n:
            values = np.arange(n, dtype="<f8") * step
            refs[f"{axis}/0"] = "base64:" + base64.b64encode(values.tobytes()).decode("ascii")
    return refs


def _chunk_order(key: str) -> tuple[int, ...]:
    return tuple(int(i) for i in key.rpartition("/")[2].split("."))


class _Source(NamedTuple):
    """Where the block files are read from: a local folder, or a URL the dataset was opened at."""

    folder: str  # the absolute path or the URL
    where: Callable[[str], str]  # a block file's path or URL, for messages
    open: Callable[[str, tuple[int, ...]], AbstractContextManager[h5py.File]]

    @classmethod
    def of(cls, ds: SplitDataset) -> _Source:
        root = str(ds.root)
        if is_url(root):  # the dataset's own URLs for its files
            return cls(root, lambda name: str(ds._block_location(name)), ds._open_block_file)
        folder = os.path.abspath(root)
        return cls(folder, lambda name: os.path.join(folder, name), ds._open_block_file)


def _variable_name(ds: SplitDataset, folder: str, name: str | None) -> str:
    var = (
        folder.rstrip("/" + os.sep).replace(os.sep, "/").rpartition("/")[2]
        if name is None
        else name
    )
    if not var or "/" in var or var.startswith(".") or var in ds.axes:
        raise ValueError(
            f"{var!r} cannot name the array: it must be non-empty, without '/', not start with "
            f"'.' and differ from the axis names {ds.axes}"
        )
    return var


def _base_url(folder: str, url: str | None) -> str:
    if url is None:
        return folder.rstrip(os.sep) or os.sep
    if not url.strip() or url != url.strip():
        raise ValueError(f"url {url!r} must be a non-empty URL or folder without spaces around it")
    return url.rstrip("/")


def _block_chunks(
    ds: SplitDataset,
    source: _Source,
    block: tuple[int, ...],
    name: str,
    target: str,
    layout: _Layout | None,
    var: str,
    out: dict[str, list[Any]],
) -> _Layout:
    """Add the references of one block file's chunks to ``out``; return the layout it shares."""
    path = source.where(name)
    with damaged_block(path, block), source.open(name, block) as f:
        checked = checked_dataset(
            f, ds.data_key, path=path, block=block, allow_external=ds.allow_external
        )
        if checked is None:
            raise BlockError(
                f"block {block} ({path}): no array '{ds.data_key}'", path=path, block=block
            )
        if not checked.in_file:
            _refuse(path, "its array's data lies in other files, which references cannot name")
        dset = checked.dataset
        here = _layout_of(ds, dset, path, layout)
        try:
            chunk_map = ChunkMap.of(dset, ds.dtype)
        except (ChunkError, ChunkIndexError) as exc:
            raise BlockError(f"block {block} ({path}): {exc}", path=path, block=block) from None
        if chunk_map is None:  # _layout_of refused every case ChunkMap does not map
            _refuse(path, "its chunks cannot be mapped")
        _add_chunks(ds, block, path, target, here.chunk_shape, chunk_map, f"{var}/", out)
    return here


def _refuse(path: str, reason: str) -> NoReturn:
    raise NotReferenceableError(f"{path}: cannot be referenced as Zarr chunks: {reason}", path=path)


def _filter_names(dset: h5py.Dataset) -> str:
    plist = dset.id.get_create_plist()
    names = []
    for k in range(plist.get_nfilters()):
        code, _, _, label = plist.get_filter(k)
        text = label.decode(errors="replace") if isinstance(label, bytes) else str(label)
        names.append(f"{text or 'filter'} ({code})")
    return " + ".join(names)


def _layout_of(ds: SplitDataset, dset: h5py.Dataset, path: str, layout: _Layout | None) -> _Layout:
    """The chunk shape, codec and fill value of one block file's array, checked against the
    dataset's geometry and the layout of the files before it."""
    if dset.ndim != ds.ndim:
        _refuse(path, f"its array has {dset.ndim} axes, the dataset {ds.ndim}")
    if stored_dtype(dset) != ds.dtype:
        _refuse(path, f"its array holds {stored_dtype(dset)}, the dataset {ds.dtype}")
    if dset.chunks is None:
        _refuse(path, "its array is stored contiguous, not in Blosc chunks")
    plist = dset.id.get_create_plist()
    filters = [plist.get_filter(k)[0] for k in range(plist.get_nfilters())]
    if filters != [BLOSC_FILTER]:
        what = _filter_names(dset) if filters else "no compression"
        _refuse(path, f"its chunks are stored with {what}; only Blosc alone ({BLOSC_FILTER}) is")
    if dset.dtype.newbyteorder("=") != dset.dtype:
        _refuse(path, f"its items are stored in non-native byte order ({dset.dtype.str})")
    if dset.file.userblock_size:
        _refuse(path, f"a user block of {dset.file.userblock_size} bytes shifts its chunks")
    options = _blosc_options(dset)
    if options.cname not in blosc.list_compressors():
        _refuse(path, f"its Blosc compressor {options.cname} is not in this numcodecs' Blosc")
    chunk_shape = tuple(int(c) for c in dset.chunks)
    if layout is not None and chunk_shape != layout.chunk_shape:
        _refuse(
            path,
            f"HDF5 chunks {chunk_shape}, but {layout.first} has {layout.chunk_shape} "
            "(one Zarr array has one chunk shape)",
        )
    grid = ds.grid
    for axis, (b, c, g) in enumerate(zip(grid.block_shape, chunk_shape, grid.grid, strict=True)):
        if g > 1 and b % c:
            _refuse(
                path,
                f"HDF5 chunks {chunk_shape} do not tile blocks {grid.block_shape}: along axis "
                f"{axis} blocks of {b} are not a multiple of chunks of {c}",
            )
    fill_value = _fill_value(dset, ds.dtype)
    fill_text = str(np.asarray(dset.fillvalue).reshape(()).item())
    if layout is None:
        return _Layout(chunk_shape, options, fill_value, fill_text, _name_of(path))
    if fill_value != layout.fill_value:  # what their unwritten chunks read as
        _refuse(path, f"fill value {fill_text}, but {layout.first} has {layout.fill_text}")
    return layout


def _name_of(path: str) -> str:
    return path.replace(os.sep, "/").rpartition("/")[2]


def _blosc_options(dset: h5py.Dataset) -> BloscOptions:
    """The Blosc filter's settings, with hdf5-blosc's defaults for those it leaves out.

    Decompressing needs none of them (each chunk's header says how it was made); they document
    how the chunks were compressed.
    """
    values = dset.id.get_create_plist().get_filter(0)[2]
    # hdf5-blosc's cd_values: [version, version, typesize, chunk bytes, clevel, shuffle, codec];
    # writers leave out the last ones for the defaults (level 5, byte shuffle, blosclz).
    clevel = int(values[4]) if len(values) > 4 else 5
    shuffle = int(values[5]) if len(values) > 5 else 1
    code = int(values[6]) if len(values) > 6 else 0
    names = BLOSC_COMPRESSORS
    return BloscOptions(names[code] if 0 <= code < len(names) else f"code {code}", clevel, shuffle)


def _add_chunks(
    ds: SplitDataset,
    block: tuple[int, ...],
    path: str,
    target: str,
    chunk_shape: tuple[int, ...],
    chunk_map: ChunkMap,
    prefix: str,
    out: dict[str, list[Any]],
) -> None:
    """Add ``prefix + "i.j.k"`` for each stored chunk of the block's part of the array."""
    grid = ds.grid
    extents = [grid.owned_extent(axis, k) for axis, k in enumerate(block)]
    owned = [e.stop - e.start for e in extents]
    held = chunk_map.shape
    if any(h < n for h, n in zip(held, owned, strict=True)):
        _refuse(
            path,
            f"the file holds {tuple(held)}, less than its block's {tuple(owned)} (a short file)",
        )
    file_grid = tuple(-(-n // c) for n, c in zip(held, chunk_shape, strict=True))
    first = [e.start // c for e, c in zip(extents, chunk_shape, strict=True)]
    numbers = np.arange(chunk_map.n_chunks) if chunk_map.numbers is None else chunk_map.numbers
    for i, number in enumerate(numbers.tolist()):
        where = np.unravel_index(number, file_grid)
        if any(int(w) * c >= n for w, c, n in zip(where, chunk_shape, owned, strict=True)):
            continue  # beyond the block's part of the array: never read
        mask = int(chunk_map.masks[i])
        if mask:
            _refuse(
                path,
                f"chunk {number} is stored without Blosc (filter mask {mask:#x}), which one "
                "Zarr codec cannot decode alongside the others",
            )
        key = ".".join(str(s + int(w)) for s, w in zip(first, where, strict=True))
        out[prefix + key] = [target, int(chunk_map.offsets[i]), int(chunk_map.sizes[i])]


def _fill_value(dset: h5py.Dataset, values: np.dtype) -> Any:
    """The HDF5 fill value as Zarr v2 metadata writes it; None (``null``) for zero.

    xarray's zarr engine takes a Zarr v2 ``fill_value`` for a missing-value marker and turns
    every element equal to it into NaN (an integer array into floats): with HDF5's default fill
    of 0, every real 0 of the data. ``null`` avoids that, and zarr-python 3 reads an unwritten
    chunk of such an array as 0, as HDF5 does. A non-zero fill value is written as such.
    """
    fill = np.asarray(dset.fillvalue).reshape(())
    if values == bool:
        fill = fill.view(np.uint8) if fill.dtype.itemsize == 1 else fill
    if not fill.any():
        return None
    fill = fill.astype(values)
    if values == bool:
        return True
    if values.kind == "c":
        return [_float(fill.real.item()), _float(fill.imag.item())]
    if values.kind == "f":
        return _float(fill.item())
    return fill.item()


def _float(value: float) -> float | str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def _zarray(ds: SplitDataset, layout: _Layout) -> dict[str, Any]:
    options = layout.options
    return {
        "zarr_format": 2,
        "shape": list(ds.shape),
        "chunks": list(layout.chunk_shape),
        "dtype": ds.dtype.str,
        "compressor": {
            "id": "blosc",
            "cname": options.cname,
            "clevel": options.clevel,
            "shuffle": options.shuffle,
            "blocksize": 0,
        },
        "fill_value": layout.fill_value,
        "order": "C",
        "filters": None,
        "dimension_separator": ".",
    }

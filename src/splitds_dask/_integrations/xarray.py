"""xarray: :meth:`SplitDataset.to_xarray` and the ``splitds`` backend engine.

``to_xarray`` wraps the dataset's dask array (one chunk per block). The backend, registered as the
``xarray.backends`` entry point ``splitds``, makes ``xr.open_dataset(path, engine="splitds")`` and
``xr.open_dataarray(...)`` work the way they do for netCDF or zarr: without ``chunks`` the variable
is lazily indexed (each selection reads only the blocks it needs); with ``chunks={}`` it is a dask
array with one chunk per block (or per group of ``blocks_per_chunk`` blocks along the first
axis). Both use dims from the axis names and 1-D numpy coordinates
``index * scale`` whose ``units`` attribute is the axis' unit. Nothing is read on opening.

Needs the optional dependency xarray (``pip install "splitds-dask[xarray]"``).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr
from xarray.backends import BackendArray, BackendEntrypoint
from xarray.core import indexing

from splitds_dask._format.metadata import is_split_dataset
from splitds_dask._remote.location import is_url

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset

__all__ = ["SplitDatasetBackendArray", "SplitDatasetBackendEntrypoint", "dataset_to_xarray"]


def _coords(dataset: SplitDataset) -> dict[str, xr.Variable]:
    """One coordinate per axis: element index times spacing, with the unit as an attribute."""
    coords = {}
    for axis, n, step, unit in zip(
        dataset.axes, dataset.shape, dataset.scale, dataset.units, strict=True
    ):
        attrs = {} if unit is None else {"units": unit}
        coords[axis] = xr.Variable(axis, np.arange(n, dtype=np.float64) * step, attrs=attrs)
    return coords


def _name(dataset: SplitDataset) -> str:
    """The folder's name (``original``, ``dff``, ``aligned``... in imaging pipelines)."""
    if is_url(str(dataset.root)):
        return str(dataset.root).rstrip("/").rsplit("/", 1)[-1]
    return Path(os.path.abspath(dataset.root)).name


def _attrs(dataset: SplitDataset) -> dict[str, Any]:
    return {"split_dataset": str(dataset.root)}


def dataset_to_xarray(
    dataset: SplitDataset,
    *,
    name: str | None = None,
    blocks_per_chunk: int | Sequence[int] | None = None,
    chunk_size: int | str | None = None,
) -> xr.DataArray:
    """``dataset`` as a lazy DataArray over its dask array (see :meth:`SplitDataset.to_xarray`)."""
    return xr.DataArray(
        dataset.to_dask(blocks_per_chunk=blocks_per_chunk, chunk_size=chunk_size),
        dims=dataset.axes,
        coords=_coords(dataset),
        name=_name(dataset) if name is None else name,
        attrs=_attrs(dataset),
    )


class SplitDatasetBackendArray(BackendArray):
    """The lazily indexed array xarray holds: each selection reads only what it needs.

    Holds the dataset's small picklable reader, never an open file (nor the list of block files,
    when they are numbered by a rule). Indexing is outer indexing with at most one index array,
    which the reader answers exactly as numpy does.
    """

    def __init__(self, dataset: SplitDataset) -> None:
        self.reader = dataset.reader
        self.shape = dataset.shape
        self.dtype = dataset.dtype

    def __getitem__(self, key: indexing.ExplicitIndexer) -> np.ndarray:
        return indexing.explicit_indexing_adapter(
            key, self.shape, indexing.IndexingSupport.OUTER_1VECTOR, self._read
        )

    def _read(self, key: tuple) -> np.ndarray:
        # Outer indexing: numpy would move an index array beside an int to the front, so read
        # ints as length-1 slices and drop those axes afterwards.
        ints = tuple(isinstance(k, (int, np.integer)) for k in key)
        widened = tuple(slice(k, k + 1) if i else k for k, i in zip(key, ints, strict=True))
        data = np.asarray(self.reader[widened])
        return data[tuple(0 if i else slice(None) for i in ints)] if any(ints) else data


class SplitDatasetBackendEntrypoint(BackendEntrypoint):
    """``xr.open_dataset(path, engine="splitds")``: a split dataset as one data variable.

    The variable is named after the dataset's folder; its dims are the axis names. Extra
    arguments: ``prefix``, ``locking`` and ``allow_external``, as for :class:`SplitDataset`, and
    ``blocks_per_chunk``: the chunks ``chunks={}`` gives hold that many blocks along the first
    axis (one task reading several small block files pays on a cluster).
    """

    description = "Split datasets (folders of numbered HDF5 block files) via splitds-dask"
    url = "https://github.com/portugueslab/split_dataset"
    open_dataset_parameters = (
        "filename_or_obj",
        "drop_variables",
        "prefix",
        "locking",
        "allow_external",
        "blocks_per_chunk",
        "storage_options",
    )

    def open_dataset(
        self,
        filename_or_obj: Any,
        *,
        drop_variables: str | Iterable[str] | None = None,
        prefix: str | None = None,
        locking: bool | str | None = None,
        allow_external: bool = False,
        blocks_per_chunk: int | None = None,
        storage_options: dict[str, Any] | None = None,
    ) -> xr.Dataset:
        from splitds_dask._dataset import SplitDataset
        from splitds_dask._graph import group_blocks

        if is_url(filename_or_obj):
            dataset = SplitDataset(filename_or_obj, prefix, storage_options=storage_options)
        else:
            dataset = SplitDataset(
                _as_path(filename_or_obj), prefix, locking=locking, allow_external=allow_external
            )
        group = group_blocks(
            dataset.grid, dataset.dtype.itemsize, blocks_per_chunk=blocks_per_chunk
        )
        preferred = [b * g for b, g in zip(dataset.shape_block, group, strict=True)]
        data = indexing.LazilyIndexedArray(SplitDatasetBackendArray(dataset))
        variable = xr.Variable(
            dataset.axes,
            data,
            encoding={"preferred_chunks": dict(zip(dataset.axes, preferred, strict=True))},
        )
        result = xr.Dataset(
            {_name(dataset): variable}, coords=_coords(dataset), attrs=_attrs(dataset)
        )
        if drop_variables is not None:
            result = result.drop_vars(drop_variables, errors="ignore")
        return result

    def guess_can_open(self, filename_or_obj: Any) -> bool:
        """A folder with a ``*stack_metadata.json`` (legacy folders, and URLs, which are not
        fetched to guess, need ``engine="splitds"``)."""
        if is_url(filename_or_obj):
            return False
        try:
            path = _as_path(filename_or_obj)
        except TypeError:
            return False
        return is_split_dataset(path)


def _as_path(filename_or_obj: Any) -> Path:
    if isinstance(filename_or_obj, (str, os.PathLike)):
        return Path(os.fspath(filename_or_obj))
    raise TypeError(
        f"a split dataset is opened from a folder path, not a {type(filename_or_obj).__name__}"
    )

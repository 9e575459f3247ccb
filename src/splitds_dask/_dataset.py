"""``SplitDataset``: a split dataset opened lazily, indexed like numpy, viewed as a dask array."""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import numpy as np

from splitds_dask._compat.blocks import BlocksOfDataset
from splitds_dask._errors import BlockError, MetadataError, NotASplitDatasetError, damaged_block
from splitds_dask._format.experiments import survey
from splitds_dask._format.files import BlockFiles, BlockNames, NoBlockFilesError, find_block_files
from splitds_dask._format.geometry import BlockGrid
from splitds_dask._format.metadata import (
    DatasetMetadata,
    find_metadata_file,
    read_legacy_metadata,
    read_metadata_json,
)
from splitds_dask._format.physical import PhysicalMetadata, read_physical_metadata
from splitds_dask._reader import BlockReader
from splitds_dask._remote.location import is_url
from splitds_dask._storage.block_file import (
    checked_dataset,
    find_data_key,
    open_block,
    stored_dtype,
)
from splitds_dask._storage.containment import (
    check_block_file,
    check_folder,
    check_metadata_file,
    folder_identity,
)
from splitds_dask._storage.filters import missing_filters

if TYPE_CHECKING:
    import dask.array as da
    import h5py
    import xarray as xr

    from splitds_dask._compat.blocks import Blocks

__all__ = ["IncompleteDatasetWarning", "SplitDataset"]


class IncompleteDatasetWarning(UserWarning):
    """The files hold less data than the metadata declares (e.g. an acquisition stopped early)."""


class _Declared(NamedTuple):
    """What a folder declares: its metadata, the block grid it describes, the files listed."""

    metadata: DatasetMetadata
    grid: BlockGrid
    files: BlockFiles


def _check_folder(root: Path) -> None:
    if not root.exists():
        raise NotASplitDatasetError(f"{root}: no such folder")
    if not root.is_dir():
        raise NotASplitDatasetError(f"{root}: not a folder (a split dataset is a folder)")


# A folder that holds datasets, opened as one, is answered with their names: at most this many
# named, found at most this deep (``<exp>/original/green``), counted up to _COUNTED.
_NAMED_INSIDE = 4
_SEARCH_DEPTH = 2
_COUNTED = 64


def _not_a_dataset(root: Path, reason: str) -> NotASplitDatasetError:
    """The error for a folder that is no dataset: ``reason``, or the datasets it holds.

    The one place that says a folder is not a split dataset, so that every way of opening one
    (``SplitDataset``, ``splitds info``, the xarray engine) names what an experiment folder holds.
    """
    found = survey(root, max_depth=_SEARCH_DEPTH, limit=_COUNTED)
    inside, unreadable = found.datasets, found.unreadable
    # A dataset that failed to open (a stray block number, say) is not an experiment folder.
    if found.is_dataset or (not inside and not unreadable):
        return NotASplitDatasetError(reason)
    parts = []
    if inside:
        count = f"{len(inside)}{'' if found.complete else ' or more'}"
        named = ", ".join(f"{d.name} {d.shape}" for d in inside[:_NAMED_INSIDE])
        more = f" and {len(inside) - _NAMED_INSIDE} more" if len(inside) > _NAMED_INSIDE else ""
        parts.append(f"it holds {count}: {named}{more}")
    if unreadable:
        named = ", ".join(u.name for u in unreadable[:_NAMED_INSIDE])
        more = ", ..." if len(unreadable) > _NAMED_INSIDE else ""
        parts.append(f"{len(unreadable)} with unreadable metadata: {named}{more}")
    return NotASplitDatasetError(f"{root} is not a split dataset; " + "; ".join(parts))


def _declared_by_json(metadata_path: Path, root: Path, prefix: str | None) -> _Declared:
    """The dataset declared by a ``stack_metadata.json`` file, with the block files listed."""
    # Writers commit the metadata of a block before its file, so a listing that holds more
    # blocks than the metadata read before it means a block was committed in between: read the
    # metadata again, once, before calling it a mismatch.
    for _ in range(2):
        metadata = read_metadata_json(metadata_path)
        grid = BlockGrid.from_spec(metadata.shape, metadata.block_shape, metadata.padding)
        files = find_block_files(root, prefix=prefix, expected=grid.n_blocks)
        if files.count <= grid.n_blocks:
            break
    return _Declared(metadata, grid, files)


def _declared_by_last_file(
    root: Path, prefix: str | None, locking: bool | str | None, allow_external: bool
) -> _Declared:
    """The dataset declared by the metadata group of its last block file (older writers)."""
    try:
        files = find_block_files(root, prefix=prefix)
    except NoBlockFilesError:  # other errors (duplicate or stray numbers) name the files
        raise _not_a_dataset(
            root,
            f"{root}: not a split dataset (no *stack_metadata.json and no numbered .h5 "
            "block files)",
        ) from None
    last = next(
        n for n, ok in zip(reversed(files.names), reversed(files.present), strict=True) if ok
    )
    last_row = (files.count - 1,)
    try:
        check_block_file(root / last, block=last_row, allow_external=allow_external)
    except BlockError as exc:
        raise MetadataError(f"{root}: cannot read the legacy metadata: {exc}") from exc
    try:
        metadata = read_legacy_metadata(root / last, locking=locking)
    except NotASplitDatasetError as exc:  # numbered .h5 files (shifts_2.h5) but no dataset
        raise _not_a_dataset(root, str(exc)) from None
    grid = BlockGrid.from_spec(metadata.shape, metadata.block_shape, metadata.padding)
    return _Declared(metadata, grid, files)


class SplitDataset(BlocksOfDataset):
    """A split dataset: one N-d array stored as a folder of numbered HDF5 block files.

    Opening reads the metadata and lists the folder; block files are only read when data is
    requested (the first block file is opened to learn the dtype, and the first block file of the
    last block row to find out whether an acquisition stopped early). Nothing is ever written to
    the folder and nothing in it is unpickled.

    Parameters
    ----------
    root : str or Path
        The dataset folder, or its URL on object storage or a web server (``s3://``, ``gs://``,
        ``https://``, any protocol fsspec reads; see the README's "Remote storage").
    prefix : str, optional
        Only use block files named ``<prefix>_<number>.h5``.
    locking : bool or str, optional
        Passed to :class:`h5py.File` for every block file opened (``False`` for file systems
        without ``flock``).
    allow_external : bool, default False
        Read data that lies outside the dataset folder. By default a block file that is a link
        to a file outside the folder, or whose array is an HDF5 external link, a virtual
        dataset or stored in external files, is refused with a :class:`BlockError` naming it
        and where it points (as is a metadata file linking outside). With ``True`` these are
        read, through h5py; FIFOs and devices are refused either way, and a virtual dataset
        whose source file is missing is an error instead of its fill value. Not for URLs: a
        remote dataset is read from its own folder only.
    storage_options : dict, optional
        For a URL: the options of its fsspec filesystem (credentials, ``endpoint_url``...).

    Raises
    ------
    NotASplitDatasetError
        ``root`` is not a folder holding a split dataset.
    MetadataError
        The metadata is malformed or does not fit the block files.
    BlockError
        The first block file cannot be read, or (without ``allow_external``) reads data
        outside the folder.

    Notes
    -----
    The folder is identified when opened: a read after the folder was replaced (a writer's
    ``overwrite=True`` swaps whole folders) raises :class:`SplitDatasetError` saying so,
    instead of mixing blocks of two versions. Open it again to read the new one.

    Examples
    --------
    >>> from splitds_dask import SplitDataset
    >>> ds = SplitDataset("experiment/original")
    >>> ds.shape, ds.dtype
    ((30, 4, 64, 64), dtype('uint16'))
    >>> ds[10, 3].shape                            # one plane, read from one block file
    (64, 64)
    >>> ds.to_dask().mean(axis=0).compute().shape  # one task per block file
    (4, 64, 64)
    """

    def __new__(cls, *args: Any, **kwargs: Any) -> SplitDataset:  # noqa: PYI034 - a URL makes a subclass
        root = args[0] if args else kwargs.get("root")
        if cls is SplitDataset and is_url(root):
            from splitds_dask._remote.dataset import RemoteSplitDataset

            return super().__new__(RemoteSplitDataset)
        return super().__new__(cls)

    def __init__(
        self,
        root: str | os.PathLike[str],
        prefix: str | None = None,
        *,
        locking: bool | str | None = None,
        allow_external: bool = False,
        storage_options: dict[str, Any] | None = None,
    ) -> None:
        if storage_options is not None:
            raise ValueError(f"{root}: storage_options are for URLs (s3://...), not local folders")
        root = Path(root)
        _check_folder(root)
        self._root = root
        self._folder = folder_identity(root)
        self._allow_external = bool(allow_external)
        # Reads use the absolute folder: a later chdir, or a worker process started elsewhere,
        # must not change which files the dataset (and its pickled dask graph) reads.
        self._abs_root = os.path.abspath(root)
        self._locking = locking
        metadata_path = find_metadata_file(root)
        if metadata_path is not None:
            if not allow_external:
                check_metadata_file(metadata_path, root)
            declared = _declared_by_json(metadata_path, root, prefix)
        else:
            declared = _declared_by_last_file(root, prefix, locking, self._allow_external)
        metadata = self._metadata = declared.metadata
        self._physical = read_physical_metadata(
            metadata.raw, metadata.ndim, source=metadata.source or root
        )
        self._grid, self._names = self._match_files(declared.grid, declared.files)
        self._start_lazy_state()

    def _start_lazy_state(self) -> None:
        """What is learned or built on first use (the first block's header, the reader...)."""
        self._files: np.ndarray | None = None
        self._data_key: str | None = None
        self._dtype: np.dtype | None = None
        self._reader: BlockReader | None = None
        self._dask: dict[tuple[int, ...], da.Array] = {}
        self._blocks: Blocks | None = None

    # --- opening -----------------------------------------------------------------------------

    def _match_files(self, declared: BlockGrid, files: BlockFiles) -> tuple[BlockGrid, BlockNames]:
        """Fit the declared grid to the files present, shortening axis 0 if data stops early."""
        where = self._metadata.source or self._root
        if files.count > declared.n_blocks:
            raise MetadataError(
                f"{where}: the folder holds block files up to number {files.count - 1} "
                f"({files.names[-1]}), but the metadata declares {declared.n_blocks} blocks "
                f"(grid {declared.grid} for shape {declared.shape}, blocks {declared.block_shape})"
            )
        per_row = math.prod(declared.grid[1:])
        rows = files.count // per_row
        if rows == 0:
            raise MetadataError(
                f"{where}: {files.count} block files do not fill one block row of the grid "
                f"{declared.grid} declared for shape {declared.shape}"
            )
        grid = declared
        if rows < declared.grid[0]:
            b0 = declared.block_shape[0]
            grid = self._regrid(declared, rows * b0)
        grid = self._trim_last_row(grid, files.names)
        if grid.shape != declared.shape:
            if grid.grid[0] != min(rows, declared.grid[0]):
                raise MetadataError(
                    f"{where}: the files hold {grid.shape[0]} elements along axis 0, which does "
                    f"not fit the padded block grid declared for shape {declared.shape}"
                )
            warnings.warn(
                f"{self._root}: the metadata declares shape {declared.shape} but the block files "
                f"hold {grid.shape}; opening the {grid.shape[0]} elements along axis 0 found on "
                "disk (an acquisition that stopped early?)",
                IncompleteDatasetWarning,
                stacklevel=3,
            )
        return grid, files.names.head(grid.n_blocks)

    @staticmethod
    def _regrid(grid: BlockGrid, length0: int) -> BlockGrid:
        return BlockGrid.from_spec((length0, *grid.shape[1:]), grid.block_shape, grid.padding)

    def _trim_last_row(self, grid: BlockGrid, names: BlockNames) -> BlockGrid:
        """Shorten axis 0 to what the first file of the last block row really holds.

        Also fails early when that file's compression filter is not available.
        """
        last_row = (grid.grid[0] - 1,) + (0,) * (grid.ndim - 1)
        name = names[grid.cartesian_to_linear(last_row)]
        shape = self._stored_shape(name, last_row, grid.ndim)
        if shape is None:
            return grid
        self._check_block_extents(grid, name, shape)
        start, stop = grid.file_extent(0, last_row[0])
        held = shape[0]
        if start + held >= stop:
            return grid
        if held == 0:
            if last_row[0] == 0:
                raise MetadataError(
                    f"{self._block_location(name)}: the first block holds no data along axis 0"
                )
            return self._regrid(grid, start)
        return self._regrid(grid, start + held)

    def _block_location(self, name: str) -> Path | str:
        """The block file ``name`` as errors name it."""
        return self._root / name

    @contextmanager
    def _open_block_file(self, name: str, block: tuple[int, ...]) -> Iterator[h5py.File]:
        """Open the block file ``name`` read-only, after the containment checks; a missing or
        unreadable file is a :class:`BlockError`."""
        path = os.path.join(self._abs_root, name)
        check_block_file(path, block=block, allow_external=self._allow_external, missing_ok=True)
        with open_block(path, block=block, locking=self._locking) as f:
            yield f

    def _check_opened_folder(self) -> None:
        """Fail, saying so, if the folder was replaced since it was opened."""
        check_folder(self._abs_root, self._folder)

    def _stored_shape(self, name: str, block: tuple[int, ...], ndim: int) -> tuple[int, ...] | None:
        """The shape of the array in the block file ``name``; None if it cannot tell.

        Raises BlockError when the file's compression filter is not available.
        """
        where = self._block_location(name)
        try:
            with self._open_block_file(name, block) as f:
                key = find_data_key(f, ndim)
                checked = None
                if key is not None:
                    checked = checked_dataset(
                        f, key, path=where, block=block, allow_external=self._allow_external
                    )
                if checked is None or checked.dataset.ndim != ndim:
                    return None  # not an array block (fimpy traces): geometry from metadata only
                shape = tuple(checked.dataset.shape)
                missing = missing_filters(checked.dataset)
        except Exception:  # noqa: BLE001 - unreadable, missing or damaged: reported when read
            return None
        if missing:
            # Every writer compresses all blocks alike: fail at opening, not at the first read.
            raise BlockError(
                f"block {block} ({where}): cannot decompress, missing {'; '.join(missing)}",
                path=where,
                block=block,
            )
        return shape

    def _check_block_extents(self, grid: BlockGrid, name: str, shape: tuple[int, ...]) -> None:
        """Fail unless the block file ``name`` holds ``grid``'s first block extent on axes 1..."""
        for axis in range(1, grid.ndim):
            # Metadata declaring more than the files hold (absurd shapes from a damaged or
            # hostile file) fails here, before any read allocates for it.
            need = grid.file_extent(axis, 0).stop
            if shape[axis] < need:
                raise MetadataError(
                    f"{self._metadata.source or self._root}: the metadata declares blocks of "
                    f"{grid.block_shape} for shape {grid.shape}, but {name} holds "
                    f"{tuple(shape)}"
                )

    # --- array surface -----------------------------------------------------------------------

    @property
    def root(self) -> Path:
        """The dataset folder."""
        return self._root

    @property
    def allow_external(self) -> bool:
        """Whether reads may follow links and external storage out of the folder."""
        return self._allow_external

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data on disk (the declared shape unless the files hold less)."""
        return self._grid.shape

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.size * self.dtype.itemsize

    @property
    def dtype(self) -> np.dtype:
        """The dtype of the blocks (read from the first block file on first use)."""
        if self._dtype is None:
            self._probe()
        assert self._dtype is not None
        return self._dtype

    @property
    def data_key(self) -> str:
        """Name of the array inside the block files (``stack_4D``, ``stack_3D``, ``stack``...)."""
        if self._data_key is None:
            self._probe()
        assert self._data_key is not None
        return self._data_key

    def _probe(self) -> None:
        path = self._block_path(0)
        block = (0,) * self.ndim
        self._check_opened_folder()  # a replaced folder: say so, not "missing"
        with damaged_block(path, block), self._open_block_file(self._names[0], block) as f:
            key = find_data_key(f, self.ndim)
            checked = None
            if key is not None:
                checked = checked_dataset(
                    f, key, path=path, block=block, allow_external=self._allow_external
                )
            if key is None or checked is None:
                keys = ", ".join(sorted(f.keys())) or "nothing"
                raise BlockError(
                    f"block {block} ({path}): no array named like 'stack' (the file holds: {keys})",
                    path=path,
                    block=block,
                )
            self._data_key = key
            self._dtype = stored_dtype(checked.dataset)

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d dataset")
        return self.shape[0]

    def __array__(self, dtype: Any = None, copy: bool | None = None) -> np.ndarray:
        data = self[...]
        return data if dtype is None else data.astype(dtype, copy=False)

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(len(self)):
            yield self[i]

    def __repr__(self) -> str:
        return (
            f"<SplitDataset {str(self._root)!r} shape={self.shape} blocks={self._grid.grid} "
            f"block_shape={self.shape_block}>"
        )

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_dask"] = {}  # rebuilt on demand; keeps pickles small
        state["_reader"] = None
        state["_files"] = None
        state["_blocks"] = None
        return state

    # --- geometry ------------------------------------------------------------------------------

    @property
    def grid(self) -> BlockGrid:
        """The block geometry of the data on disk."""
        return self._grid

    @property
    def chunks(self) -> tuple[tuple[int, ...], ...]:
        """Dask chunks: one per block."""
        return self._grid.chunks

    @property
    def shape_block(self) -> tuple[int, ...]:
        """Block shape (clamped to the data shape), as a tuple."""
        return self._grid.block_shape

    @property
    def shape_full(self) -> tuple[int, ...]:
        """Shape of the dataset (same as ``shape``; the original package's name)."""
        return self.shape

    @property
    def padding(self) -> tuple[int, ...]:
        """Overlap of each block file with the next one, per axis."""
        return self._grid.padding

    @property
    def files(self) -> np.ndarray:
        """The block files as an object array of ``Path`` (URLs, for a remote dataset) shaped
        like the block grid."""
        if self._files is None:
            out = np.empty(len(self._names), dtype=object)
            out[:] = [self._block_location(name) for name in self._names.as_tuple()]
            self._files = out.reshape(self._grid.grid)
        return self._files.copy()

    @property
    def block_names(self) -> tuple[str, ...]:
        """File names of the blocks in block-number (C) order."""
        return self._names.as_tuple()

    @property
    def block_naming(self) -> BlockNames:
        """The block file names as a compact record (a naming rule where the files follow one)."""
        return self._names

    def _block_path(self, index: int) -> str:
        return os.path.join(self._abs_root, self._names[index])

    def _identity(self) -> tuple[Any, ...]:
        """What a dask token needs to tell versions of this dataset apart: the folder, and
        the times and sizes of (up to a thousand of) its block files."""
        from splitds_dask._graph import local_stamps

        root = os.path.realpath(self._root)
        return (root, local_stamps(self, root))

    @property
    def resolution(self) -> tuple[float, ...]:
        """The metadata's ``resolution`` as written, else ``(1, 1, 1)``, as the original.

        Kept as the original package reported it, because programs built on it copy it into
        the datasets they write: without the key that is 3 entries whatever the number of axes
        (a tuple of the json's values otherwise, where the original gave the json list). The
        spacing of every axis, with units, is :attr:`scale`.
        """
        raw = self._metadata.raw.get("resolution")
        if raw is None:
            return (1, 1, 1)
        return tuple(raw)  # numbers, checked when the metadata was parsed

    @property
    def axes(self) -> tuple[str, ...]:
        """Axis names, e.g. ``("t", "z", "y", "x")`` (see "Physical metadata" in the README)."""
        return self._physical.axes

    @property
    def scale(self) -> tuple[float, ...]:
        """Spacing between neighbouring elements along each axis, in :attr:`units`.

        1 where it is not known.
        """
        return self._physical.scale

    @property
    def units(self) -> tuple[str | None, ...]:
        """Unit of each axis' spacing (``"micrometer"``, ``"second"``...), None where unknown."""
        return self._physical.units

    @property
    def time_step(self) -> float | None:
        """Seconds between time points: the scale of the ``t`` axis when it has a time unit."""
        return self._physical.time_step

    @property
    def physical_metadata(self) -> PhysicalMetadata:
        """Axis names, spacing and units together."""
        return self._physical

    @property
    def metadata(self) -> dict[str, Any]:
        """The parsed metadata file, as written (keys in file order)."""
        return dict(self._metadata.raw)

    @property
    def parsed_metadata(self) -> DatasetMetadata:
        """The validated metadata, with its source file."""
        return self._metadata

    @property
    def blocks(self) -> Blocks:
        """The geometry as the original package's :class:`Blocks` object."""
        if self._blocks is None:
            from splitds_dask._compat.blocks import Blocks

            self._blocks = Blocks(
                self.shape, shape_block=self.shape_block, padding=list(self.padding)
            )
        return self._blocks

    @property
    def block_starts(self) -> np.ndarray:
        return self.blocks.block_starts

    @property
    def block_ends(self) -> np.ndarray:
        return self.blocks.block_ends

    @property
    def n_blocks(self) -> int:
        return self._grid.n_blocks

    def slices(self, as_tuples: bool = False) -> Iterator[Any]:
        """Iterate over ``(block_index, slices)`` of every block, as :meth:`Blocks.slices`."""
        return self.blocks.slices(as_tuples=as_tuples)

    # --- reading -------------------------------------------------------------------------------

    def __getitem__(self, key: Any) -> Any:
        """Exactly ``numpy.asarray(self)[key]``, reading only the blocks and parts it needs."""
        return self.reader[key]

    @property
    def reader(self) -> BlockReader:
        """The small picklable object that reads selections (what each dask task carries)."""
        if self._reader is None:
            self._reader = BlockReader(
                root=self._abs_root,
                names=self._names,
                grid=self._grid,
                dtype=self.dtype,
                data_key=self.data_key,
                locking=self._locking,
                folder=self._folder,
                allow_external=self._allow_external,
            )
        return self._reader

    # --- dask ----------------------------------------------------------------------------------

    def to_dask(
        self,
        *,
        blocks_per_chunk: int | Sequence[int] | None = None,
        chunk_size: int | str | None = None,
    ) -> da.Array:
        """This dataset as a dask array; by default one chunk (one read task) per block file.

        Building it does no I/O beyond listing file times for the graph's name; slicing it
        culls the graph to the blocks touched and, in dask's default (legacy graph) mode, reads
        only the selected part of each. Every task carries the same small reader (no list of
        block files where they are numbered by a rule), so a task costs the same whatever the
        number of blocks.

        Parameters
        ----------
        blocks_per_chunk : int or sequence of int, optional
            Group neighbouring block files into one chunk: an int groups along axis 0, a
            sequence gives the group per axis (missing trailing entries are 1). One task then
            reads several files, which pays on a cluster when blocks are small (each task costs
            a few milliseconds of scheduling there, whatever it reads).
        chunk_size : int or str, optional
            Instead of ``blocks_per_chunk``: the largest chunk wanted, in bytes or as a string
            such as ``"64 MiB"``; blocks are grouped along axis 0, then the next axes, as far as
            chunks stay within it (at least one block per chunk).

        Returns
        -------
        dask.array.Array
            Cached: the same grouping returns the same array.
        """
        from splitds_dask._graph import dataset_to_dask, group_blocks, grouped_chunks

        group = group_blocks(
            self._grid,
            self.dtype.itemsize,
            blocks_per_chunk=blocks_per_chunk,
            chunk_size=chunk_size,
        )
        if group not in self._dask:
            self._dask[group] = dataset_to_dask(self, grouped_chunks(self._grid, group))
        return self._dask[group]

    @property
    def dask(self) -> da.Array:
        """Same as :meth:`to_dask`."""
        return self.to_dask()

    def to_xarray(
        self,
        *,
        name: str | None = None,
        blocks_per_chunk: int | Sequence[int] | None = None,
        chunk_size: int | str | None = None,
    ) -> xr.DataArray:
        """This dataset as a lazy :class:`xarray.DataArray` over :meth:`to_dask` (needs xarray).

        Dims are :attr:`axes`; each has a coordinate ``index * scale`` whose ``units`` attribute
        is the axis' unit. Nothing is read until the array is computed. ``blocks_per_chunk`` and
        ``chunk_size`` group blocks into chunks as in :meth:`to_dask`.

        Raises
        ------
        ModuleNotFoundError
            xarray is not installed (the message names the install command).
        """
        try:
            from splitds_dask._integrations.xarray import dataset_to_xarray
        except ModuleNotFoundError as exc:
            if exc.name != "xarray":  # xarray is there, but something it imports is not
                raise
            raise ModuleNotFoundError(
                'SplitDataset.to_xarray needs xarray: pip install "splitds-dask[xarray]"',
                name="xarray",
            ) from None

        return dataset_to_xarray(
            self, name=name, blocks_per_chunk=blocks_per_chunk, chunk_size=chunk_size
        )

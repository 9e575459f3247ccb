"""The original package's writers: :class:`EmptySplitDataset` and :func:`save_to_split_dataset`.

Same signatures, folder and file names, data keys and metadata as ``split_dataset`` 0.4.4, so
that code written for it (fimpy's block-by-block workers, its ``StackContainerLs`` subclass)
runs unchanged on numpy 2, and what it writes is read by old installs of the original package.

Differences from the original:

* Works on numpy 2 (the original failed in ``Blocks.n_blocks`` and in flammkuchen).
* Block files are written atomically (temporary name, then rename) by h5py, in the layout
  PyTables writes (Blosc as HDF5 filter 32001, bool as a bitfield).
* ``save_to_split_dataset(..., padding=p)`` writes overlapping blocks *and* opens the result (the
  original wrote the files, then failed to open them); the ``padding`` argument is honoured also
  when ``data`` is a dataset (the original silently used ``data.padding`` instead).
* More than 9,999 blocks get wider file names (``00000.h5`` ...) so that names still sort.
* The folder's writer lock (:mod:`splitds_dask._storage.lock`) is held from the creation of an
  :class:`EmptySplitDataset` until :meth:`~EmptySplitDataset.finalize`, so that no other writer
  of this package replaces or writes the folder meanwhile.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from splitds_dask._compat.blocks import Blocks
from splitds_dask._daskmodes import to_numpy
from splitds_dask._errors import MetadataError
from splitds_dask._format.metadata import original_metadata_dict, write_metadata_json
from splitds_dask._format.physical import add_physical_metadata, resolve_physical_metadata
from splitds_dask._storage.block_file import compression_options, write_block
from splitds_dask._storage.hdf5_errors import system_errors
from splitds_dask._storage.lock import WriterLock
from splitds_dask._write.array import block_file_name

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset

__all__ = ["EmptySplitDataset", "save_to_split_dataset"]


def _compression_args(compression: Any) -> tuple[str | None, int | None]:
    """Translate a flammkuchen ``compression=`` value into :func:`write_block` arguments.

    ``"blosc"``/``"blosc:lz4"``..., ``("blosc", 5)`` (name and level), ``"zlib"``, ``True`` and
    ``"default"`` (zlib, flammkuchen's default), ``None``/``False``/``"none"`` (uncompressed).
    """
    level = None
    if isinstance(compression, tuple) and len(compression) == 2:
        compression, level = compression
    if compression is None or compression is False or compression == "none":
        return None, None
    if compression is True or compression == "default":
        return "zlib", level
    if not isinstance(compression, str):
        raise TypeError(f"unsupported compression {compression!r}")
    return compression, level


class EmptySplitDataset(Blocks):
    """A split dataset being written block by block (the original's ``EmptySplitDataset``).

    Creates the folder ``root / name``; block files are then written with
    :meth:`save_block_data` (or by any writer to ``root / files[i]``, key ``stack_{N}D`` or
    ``stack``), and :meth:`finalize` writes ``stack_metadata.json`` and opens the dataset.

    Parameters
    ----------
    root : str or Path
        Parent folder.
    name : str
        Name of the dataset folder inside ``root``.
    *args, **kwargs
        The :class:`Blocks` arguments: ``shape_full``, ``shape_block``, ``padding``, ``crop``...
        With a crop, block slices are in uncropped coordinates and the dataset written is the
        cropped region.
    resolution : sequence of float, optional
        Stored in the metadata; default ``(1,) * ndim``.
    axes, scale, units, time_step : optional
        Physical metadata, as for :func:`to_split_dataset` (not in the original).

    Attributes
    ----------
    root : Path
        The dataset folder (``Path(root) / name``).
    files : list of str
        The block file names, ``"0000.h5"``, ``"0001.h5"``..., one per block in C order.
    resolution : sequence of float or None

    Warns
    -----
    UserWarning
        "Existing directory" if the folder already exists (files in it are left alone).

    Raises
    ------
    splitds_dask._storage.lock.WriterLockedError
        A ``BlockingIOError``: another writer is writing the folder.

    Notes
    -----
    The folder's writer lock is held by this object until :meth:`finalize` (or until it is
    garbage collected). A pickled copy (sent to a worker process) does not hold it; its
    :meth:`finalize` takes the lock for the metadata write, refused while the original holds it.

    Examples
    --------
    >>> import numpy as np
    >>> from splitds_dask import Blocks, EmptySplitDataset
    >>> source = np.arange(10 * 4 * 8 * 8, dtype=np.uint16).reshape(10, 4, 8, 8)
    >>> new = EmptySplitDataset("out", "dff", shape_full=(10, 4, 8, 8), shape_block=(5, 4, 8, 8))
    >>> for i, (_, block) in enumerate(new.slices(as_tuples=True)):
    ...     new.save_block_data(i, source[Blocks.block_to_slices(block)])
    >>> ds = new.finalize()
    >>> ds.n_blocks, np.array_equal(ds[...], source)
    (2, True)
    """

    def __init__(
        self,
        root: str | os.PathLike[str],
        name: str,
        *args: Any,
        resolution: Sequence[float] | None = None,
        axes: Sequence[str] | None = None,
        scale: Sequence[float | None] | None = None,
        units: Sequence[str | None] | None = None,
        time_step: float | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._physical: dict[str, Any] = {
            "axes": axes,
            "scale": scale,
            "units": units,
            "time_step": time_step,
        }
        if any(v is not None for v in self._physical.values()):
            # Checked now, not at finalize(), after all blocks were written.
            resolve_physical_metadata(
                len(self.shape_cropped), **self._physical, resolution=resolution
            )
        self.root = Path(root) / name
        self._writer_lock = WriterLock(self.root)
        if self.root.exists():
            warnings.warn("Existing directory", stacklevel=2)
        self.root.mkdir(parents=True, exist_ok=True)
        self._n_names = self.n_blocks
        self.files: list[str] = [self._file_name(i) for i in range(self.n_blocks)]
        self.resolution = resolution

    def release_lock(self) -> None:
        """Free the folder's writer lock without finalizing (a write abandoned)."""
        self._writer_lock.release()

    def _file_name(self, n: int) -> str:
        return block_file_name(n, self._n_names)

    def save_block_data(self, n: int, data: np.ndarray, verbose: bool = False) -> None:
        """Write ``data`` as block file number ``n`` (``root / "{n:04d}.h5"``, key ``stack``).

        The name comes from ``n``, not from :attr:`files` (subclasses number blocks from 1).
        Compressed with Blosc, written atomically.
        """
        path = self.root / self._file_name(n)
        if verbose:
            print(f"Saving {path}")
        with system_errors(path):  # a full disk stays an OSError with its errno
            write_block(
                path,
                to_numpy(data),
                key="stack",
                compression="blosc",
                block_shape=self.grid.file_shape,
            )

    def _metadata_dict(self) -> dict[str, Any]:
        """The ``stack_metadata.json`` content :meth:`finalize` writes.

        ``shape_full`` is the cropped shape (the crop was applied while writing), ``crop_start``
        and ``crop_end`` are zeros, ``padding`` is the blocks' padding.
        """
        resolution = None if self.resolution is None else list(self.resolution)
        metadata = original_metadata_dict(
            self.shape_cropped,
            self.shape_block,
            padding=self.padding,
            resolution=resolution,
        )
        return add_physical_metadata(metadata, {**self._physical, "resolution": resolution})

    def finalize(self) -> SplitDataset:
        """Write ``stack_metadata.json`` (atomically) and open the finished dataset.

        Returns
        -------
        SplitDataset

        Raises
        ------
        splitds_dask.SplitDatasetError
            A ``ValueError``, if the block files written do not make up the dataset, e.g. some
            are missing (the json is written first, as in the original, which raised
            ``ValueError`` too). Reading such a folder later opens the blocks present, with an
            ``IncompleteDatasetWarning``; a writer that has not written them all is an error.
        """
        from splitds_dask._dataset import IncompleteDatasetWarning, SplitDataset

        lock = self._writer_lock if self._writer_lock.held else WriterLock(self.root)
        try:
            write_metadata_json(self.root, self._metadata_dict())
        finally:
            lock.release()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            dataset = SplitDataset(self.root)
        for w in caught:
            if issubclass(w.category, IncompleteDatasetWarning):
                raise MetadataError(
                    f"{self.root}: the block files hold shape {dataset.shape}, not the "
                    f"{tuple(self.shape_cropped)} declared: some block files were not written"
                )
        missing = [Path(f).name for f in dataset.files.flat if not Path(f).is_file()]
        if missing:
            shown = ", ".join(missing[:5]) + (", ..." if len(missing) > 5 else "")
            raise MetadataError(
                f"{self.root}: {len(missing)} block file(s) were not written: {shown}"
            )
        for w in caught:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno, source=w.source)
        return dataset


def save_to_split_dataset(
    data: Any,
    root_name: str | os.PathLike[str],
    block_size: int | Sequence[int | None] | None = None,
    crop: Sequence[tuple[int, int]] | None = None,
    padding: int | Sequence[int] = 0,
    prefix: str = "",
    compression: Any = "blosc",
    *,
    axes: Sequence[str] | None = None,
    scale: Sequence[float | None] | None = None,
    units: Sequence[str | None] | None = None,
    time_step: float | None = None,
) -> SplitDataset:
    """Save an array as a split dataset (the original's ``save_to_split_dataset``).

    Parameters
    ----------
    data : array-like
        Anything with ``shape`` supporting ``data[tuple_of_slices]``: a numpy or dask array, a
        :class:`SplitDataset`, an h5py dataset...
    root_name : str or Path
        Parent folder of the dataset.
    block_size : int or sequence of int or None, optional
        Block shape (see :class:`Blocks`). Default: ``data.shape_block`` (``data`` must then be
        a dataset).
    crop : sequence of (int, int), optional
        ``(start, end)`` amounts to crop from each axis before saving.
    padding : int or sequence of int, default 0
        Overlap of each block with its successor (see :class:`Blocks`).
    prefix : str, default ""
        Name of the dataset folder inside ``root_name``; ``"_cropped"`` is appended when
        ``crop`` is given (so ``prefix=""`` without crop writes into ``root_name`` itself).
    compression : str or tuple or bool or None, default "blosc"
        ``"blosc"`` (``"blosc:zstd"``...), ``("blosc", level)``, ``"zlib"``/``True``, or
        ``None``/``False`` for none.
    axes, scale, units, time_step : optional
        Physical metadata, as for :func:`to_split_dataset` (not in the original; pass
        ``**physical_metadata_kwargs(data)`` to keep those of a dataset).

    Returns
    -------
    SplitDataset
        The saved dataset, opened. Block files hold the key ``stack_{ndim}D``.

    Raises
    ------
    ValueError
        If ``block_size`` is not given and ``data`` has no ``shape_block``.
    """
    if block_size is None:
        block_size = getattr(data, "shape_block", None)
        if block_size is None:
            raise ValueError(
                "save_to_split_dataset needs block_size unless data has a shape_block "
                f"(got {type(data).__name__})"
            )
    shape = tuple(int(n) for n in data.shape)
    name = prefix + ("_cropped" if crop is not None else "")
    codec, level = _compression_args(compression)
    compression_options(codec, level, np.dtype(np.uint8))  # unknown names: fail before writing
    blocks = EmptySplitDataset(
        root_name,
        name,
        shape_full=shape,
        shape_block=block_size,
        crop=crop,
        padding=padding,
        axes=axes,
        scale=scale,
        units=units,
        time_step=time_step,
    )
    key = f"stack_{len(shape)}D"
    try:
        for i, (_, slices) in enumerate(blocks.slices()):
            path = blocks.root / blocks.files[i]
            with system_errors(path):  # a full disk stays an OSError with its errno
                write_block(
                    path,
                    to_numpy(data[slices]),
                    key=key,
                    compression=codec,
                    compression_level=level,
                    block_shape=blocks.grid.file_shape,
                )
    except BaseException:
        blocks.release_lock()
        raise
    return blocks.finalize()

"""Checking a split dataset file by file: ``verify(path)`` and ``splitds verify PATH``.

Every block file is opened and checked: present, an HDF5 file, holding the data key, with the
shape and dtype the geometry needs, its compression filters available, and (unless
``read_data=False``) every chunk matching its recorded CRC32C (the block's own checksums or the
folder's seal, see :mod:`splitds_dask._storage.checksums`; checked whatever the
``splitds.checksums`` setting) and decompressing. Problems are collected, not raised, so that
one run lists everything wrong with a dataset.
"""

from __future__ import annotations

import math
import os
import sys
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import h5py
import numpy as np

from splitds_dask._errors import BlockError, SplitDatasetError
from splitds_dask._storage.block_file import checked_dataset, find_data_key, stored_dtype
from splitds_dask._storage.blosc import (
    ChecksumMismatch,
    ChunkError,
    ChunkIndexError,
    ChunkMap,
    read_chunks,
)
from splitds_dask._storage.checksums import check_all
from splitds_dask._storage.containment import OutsideFolderError, check_block_file
from splitds_dask._storage.filters import missing_filters

if TYPE_CHECKING:
    from splitds_dask._dataset import SplitDataset

__all__ = ["Problem", "verify"]

# Bytes decompressed per read while checking a block (bounds memory for huge blocks).
_CHECK_BYTES = 64 << 20


@dataclass(frozen=True)
class Problem:
    """One thing wrong with a dataset.

    Attributes
    ----------
    path : Path
        The file concerned (a block file, the metadata file, or the folder).
    kind : str
        ``"dataset"`` (cannot be opened), ``"incomplete"`` (the files hold less than the
        metadata declares), ``"missing"``, ``"unreadable"``, ``"data-key"``, ``"shape"``,
        ``"dtype"``, ``"filter"``, ``"checksum"`` (a chunk's bytes differ from its recorded
        CRC32C), ``"data"`` (a chunk does not decompress) or ``"outside"`` (the block reads
        data outside the folder, see ``allow_external``).
    message : str
        What is wrong, naming the file.
    block : tuple of int or None
        The block's grid position, for block files.
    """

    path: Path
    kind: str
    message: str
    block: tuple[int, ...] | None = None

    def __str__(self) -> str:
        return self.message


@dataclass
class _Tally:
    """How much the checksums covered."""

    chunks: int = 0  # chunks whose checksum was checked
    blocks: int = 0  # block files with checksums
    without: int = 0  # block files without checksums


def _check_checksums(
    dset: h5py.Dataset, path: Path, block: tuple[int, ...], tally: _Tally
) -> list[Problem]:
    checksums, count, bad = check_all(dset)
    if checksums is None:
        tally.without += 1
        return []
    tally.blocks += 1
    tally.chunks += count
    return [
        Problem(
            path,
            "checksum",
            f"{path}: block {block}: '{dset.name[1:]}' chunk {m.number} ({m.size} bytes at "
            f"offset {m.offset}): {m.problem}",
            block,
        )
        for m in bad
    ]


def _check_stored(
    dset: h5py.Dataset, path: Path, block: tuple[int, ...], tally: _Tally
) -> list[Problem]:
    """Every stored chunk checked as the reader checks it: its index entry and header, its
    CRC32C, then its decoding. One problem per block: the first check that fails."""
    if dset.size == 0:
        return []
    name = dset.name[1:]
    where = f"{path}: block {block}: '{name}'"
    try:
        chunk_map = ChunkMap.of(dset, stored_dtype(dset))
        if chunk_map is None:
            # h5py decodes this block: the stored bytes are checked first, filters or not.
            problems = _check_checksums(dset, path, block, tally)
            missing = missing_filters(dset)
            if problems or missing:
                return problems or [
                    Problem(
                        path,
                        "filter",
                        f"{where}: cannot decompress, missing {'; '.join(missing)}",
                        block,
                    )
                ]
            _check_values(dset)
            return []
        if chunk_map.checksums is None:
            tally.without += 1
        else:
            tally.blocks += 1
            tally.chunks += chunk_map.n_chunks
        _check_chunks(dset, chunk_map)
    except ChecksumMismatch as exc:
        return [Problem(path, "checksum", f"{where} {exc}", block)]
    except (ChunkError, ChunkIndexError) as exc:
        return [Problem(path, "data", f"{where} {exc}", block)]
    except Exception as exc:  # noqa: BLE001 - any failure to decode is what we report
        return [Problem(path, "data", f"{where} does not decompress: {exc}", block)]
    return []


def _check_values(dset: h5py.Dataset) -> None:
    """Read every chunk (or slab) of ``dset`` once through h5py."""
    regions = dset.iter_chunks() if dset.chunks is not None else _slabs(dset.shape, 1, _rows(dset))
    for region in regions:
        out = np.empty(tuple(s.stop - s.start for s in region), dset.dtype)
        dset.read_direct(out, region)


def _rows(dset: h5py.Dataset) -> int:
    """Rows (items of the first axis) per slab of at most ``_CHECK_BYTES``."""
    return max(1, _CHECK_BYTES // max(1, dset.dtype.itemsize * math.prod(dset.shape[1:])))


def _slabs(shape: tuple[int, ...], align: int, rows: int) -> Iterator[tuple[slice, ...]]:
    """Slabs of ``shape`` along its first axis, ``rows`` long rounded down to ``align``."""
    step = max(align, rows // align * align)
    rest = tuple(slice(0, n, 1) for n in shape[1:])
    return ((slice(i, min(i + step, shape[0]), 1), *rest) for i in range(0, shape[0], step))


def _check_chunks(dset: h5py.Dataset, chunk_map: ChunkMap) -> None:
    """Read every stored chunk through the fast path (h5py for what it leaves, e.g. a codec
    this Blosc lacks: the sound rest was checked by then)."""
    fd = dset.file.id.get_vfd_handle()
    if chunk_map.numbers is None:  # every chunk stored: slabs of whole chunks
        regions: Iterator[tuple[slice, ...]] = _slabs(
            dset.shape, chunk_map.chunk_shape[0], _rows(dset)
        )
    else:  # only the stored ones, however large the grid the file declares
        regions = (_chunk_region(chunk_map, int(n)) for n in chunk_map.numbers)
    for region in regions:
        out = np.empty(tuple(s.stop - s.start for s in region), chunk_map.dtype)
        whole = tuple(slice(0, n, 1) for n in out.shape)
        if not read_chunks(fd, chunk_map, region, out, whole):
            dset.read_direct(out, region)


def _chunk_region(chunk_map: ChunkMap, number: int) -> tuple[slice, ...]:
    region = []
    for stride, c, n in zip(chunk_map.strides, chunk_map.chunk_shape, chunk_map.shape, strict=True):
        k, number = divmod(number, stride)
        region.append(slice(k * c, min(k * c + c, n), 1))
    return tuple(region)


def _check_block(
    ds: SplitDataset,
    path: Path,
    block: tuple[int, ...],
    extent: tuple[int, ...],
    *,
    locking: bool | str | None,
    read_data: bool,
    tally: _Tally,
) -> list[Problem]:
    try:  # before anything opens it: a FIFO would block, a link may lead anywhere
        check_block_file(path, block=block, allow_external=ds.allow_external, missing_ok=True)
    except BlockError as exc:
        kind = "outside" if isinstance(exc, OutsideFolderError) else "unreadable"
        return [Problem(path, kind, str(exc), block)]
    if not path.is_file():
        return [Problem(path, "missing", f"{path}: block {block}: the file is missing", block)]
    try:
        f = h5py.File(path, "r", locking=locking)
    except Exception as exc:  # noqa: BLE001 - reported
        return [
            Problem(path, "unreadable", f"{path}: block {block}: not a readable HDF5 file: {exc}")
        ]
    with f:
        try:
            return _inspect(ds, f, path, block, extent, read_data=read_data, tally=tally)
        except Exception as exc:  # noqa: BLE001 - a damaged file fails in any h5py call
            return [
                Problem(
                    path,
                    "unreadable",
                    f"{path}: block {block}: damaged file: {type(exc).__name__}: {exc}",
                    block,
                )
            ]


def _inspect(
    ds: SplitDataset,
    f: h5py.File,
    path: Path,
    block: tuple[int, ...],
    extent: tuple[int, ...],
    *,
    read_data: bool,
    tally: _Tally,
) -> list[Problem]:
    # getlink: testing the name does not follow an external link.
    has_key = f.get(ds.data_key, getlink=True) is not None
    key = ds.data_key if has_key else find_data_key(f, len(extent))
    try:
        checked = (
            checked_dataset(f, key, path=path, block=block, allow_external=ds.allow_external)
            if key is not None
            else None
        )
    except BlockError as exc:
        kind = "outside" if isinstance(exc, OutsideFolderError) else "unreadable"
        return [Problem(path, kind, str(exc), block)]
    node = checked.dataset if checked is not None else None
    if not isinstance(node, h5py.Dataset):
        keys = ", ".join(sorted(f.keys())) or "nothing"
        return [
            Problem(
                path,
                "data-key",
                f"{path}: block {block}: no array '{ds.data_key}' (the file holds: {keys})",
                block,
            )
        ]
    problems = []
    if len(node.shape) != len(extent) or any(
        s < e for s, e in zip(node.shape, extent, strict=True)
    ):
        problems.append(
            Problem(
                path,
                "shape",
                f"{path}: block {block}: '{key}' has shape {node.shape}, the block needs {extent}",
                block,
            )
        )
    found = stored_dtype(node)
    if found != ds.dtype:
        problems.append(
            Problem(
                path,
                "dtype",
                f"{path}: block {block}: dtype {found} differs from the dataset's {ds.dtype}",
                block,
            )
        )
    if read_data:
        return problems + _check_stored(node, path, block, tally)
    missing = missing_filters(node)
    if missing:
        problems.append(
            Problem(
                path,
                "filter",
                f"{path}: block {block}: cannot decompress, missing {'; '.join(missing)}",
                block,
            )
        )
    return problems


def verify(
    path: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    locking: bool | str | None = None,
    read_data: bool = True,
    allow_external: bool = False,
) -> list[Problem]:
    """Check a split dataset block by block and list every problem found.

    Parameters
    ----------
    path : str or Path
        The dataset folder.
    prefix : str, optional
        As for :class:`SplitDataset`.
    locking : bool or str, optional
        Passed to :class:`h5py.File`.
    read_data : bool, optional
        Decompress every chunk of every block (default). False checks only that each file opens
        and describes the right array.
    allow_external : bool, optional
        As for :class:`SplitDataset`: without it, a block reading data outside the folder is a
        problem of kind ``"outside"``.

    Returns
    -------
    list of Problem
        Empty when the dataset is sound. Each problem names its file.
    """
    return _verify(
        path, prefix=prefix, locking=locking, read_data=read_data, allow_external=allow_external
    )[0]


def _verify(
    path: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    locking: bool | str | None = None,
    read_data: bool = True,
    allow_external: bool = False,
) -> tuple[list[Problem], _Tally]:
    from splitds_dask._dataset import IncompleteDatasetWarning, SplitDataset

    root = Path(path)
    problems: list[Problem] = []
    tally = _Tally()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IncompleteDatasetWarning)
            ds = SplitDataset(root, prefix, locking=locking, allow_external=allow_external)
        for warning in caught:
            if issubclass(warning.category, IncompleteDatasetWarning):
                problems.append(Problem(root, "incomplete", str(warning.message)))
        ds.dtype  # noqa: B018 - opens the first block: its failure is the dataset's
    except SplitDatasetError as exc:
        where = getattr(exc, "path", None)
        problems.append(Problem(Path(where) if where else root, "dataset", str(exc)))
        return problems, tally
    grid = ds.grid
    for index, block in enumerate(grid.blocks()):
        extent = tuple(b - a for a, b in (grid.file_extent(i, k) for i, k in enumerate(block)))
        file = root / ds.block_names[index]
        problems += _check_block(
            ds, file, block, extent, locking=locking, read_data=read_data, tally=tally
        )
    return problems, tally


def print_report(
    path: str | os.PathLike[str],
    *,
    read_data: bool = True,
    out: TextIO | None = None,
    allow_external: bool = False,
) -> int:
    """``splitds verify``: print every problem (one line each) and return the exit status."""
    out = out if out is not None else sys.stdout
    problems, tally = _verify(path, read_data=read_data, allow_external=allow_external)
    for problem in problems:
        print(f"{problem.kind}: {' '.join(problem.message.splitlines())}", file=out)
    if read_data and tally.blocks + tally.without:  # some block was examined
        print(
            f"{path}: checksums: {tally.chunks} chunk(s) checked in {tally.blocks} block(s); "
            f"{tally.without} block(s) without checksums"
            + (" (record them with 'splitds seal')" if tally.without else ""),
            file=out,
        )
    if problems:
        print(f"{path}: {len(problems)} problem(s)", file=out)
        return 1
    print(f"{path}: ok", file=out)
    return 0

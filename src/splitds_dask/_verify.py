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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

import h5py
import numpy as np

from splitds_dask._errors import SplitDatasetError
from splitds_dask._storage.block_file import find_data_key, stored_dtype
from splitds_dask._storage.checksums import check_all
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
        CRC32C) or ``"data"`` (a chunk does not decompress).
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


def _check_values(dset: h5py.Dataset, path: Path, block: tuple[int, ...]) -> list[Problem]:
    """Read every chunk (or slab) of ``dset`` once."""
    if dset.size == 0:
        return []
    if dset.chunks is not None:
        regions = dset.iter_chunks()
    else:
        row = max(1, dset.dtype.itemsize * math.prod(dset.shape[1:]))
        step = max(1, _CHECK_BYTES // row)
        rest = tuple(slice(0, n) for n in dset.shape[1:])
        regions = (
            (slice(i, min(i + step, dset.shape[0])), *rest) for i in range(0, dset.shape[0], step)
        )
    try:
        for region in regions:
            out = np.empty(tuple(s.stop - s.start for s in region), dset.dtype)
            dset.read_direct(out, region)
    except Exception as exc:  # noqa: BLE001 - any failure to decode is what we report
        return [
            Problem(
                path,
                "data",
                f"{path}: block {block}: '{dset.name[1:]}' does not decompress: {exc}",
                block,
            )
        ]
    return []


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
    key = ds.data_key if ds.data_key in f else find_data_key(f, len(extent))
    node = f.get(key) if key is not None else None
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
    if read_data:  # the stored bytes: checkable even without the filters
        problems += _check_checksums(node, path, block, tally)
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
    elif read_data:
        problems += _check_values(node, path, block)
    return problems


def verify(
    path: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    locking: bool | str | None = None,
    read_data: bool = True,
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

    Returns
    -------
    list of Problem
        Empty when the dataset is sound. Each problem names its file.
    """
    return _verify(path, prefix=prefix, locking=locking, read_data=read_data)[0]


def _verify(
    path: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    locking: bool | str | None = None,
    read_data: bool = True,
) -> tuple[list[Problem], _Tally]:
    from splitds_dask._dataset import IncompleteDatasetWarning, SplitDataset

    root = Path(path)
    problems: list[Problem] = []
    tally = _Tally()
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", IncompleteDatasetWarning)
            ds = SplitDataset(root, prefix, locking=locking)
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
    path: str | os.PathLike[str], *, read_data: bool = True, out: TextIO | None = None
) -> int:
    """``splitds verify``: print every problem (one line each) and return the exit status."""
    out = out if out is not None else sys.stdout
    problems, tally = _verify(path, read_data=read_data)
    for problem in problems:
        print(f"{problem.kind}: {' '.join(problem.message.splitlines())}", file=out)
    if read_data:
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

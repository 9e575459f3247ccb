"""Checking a split dataset file by file: ``verify(path)`` and ``splitds verify PATH``.

Every block file is opened and checked: present, an HDF5 file, holding the data key, with the
shape and dtype the geometry needs, its compression filters available, and (unless
``read_data=False``) every chunk matching its recorded CRC32C (the block's own checksums or the
folder's seal, see :mod:`splitds_dask._storage.checksums`; checked whatever the
``splitds.checksums`` setting) and decompressing. Problems are collected, not raised, so that
one run lists everything wrong with a dataset.
"""

from __future__ import annotations

import dataclasses
import math
import os
import uuid
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import dask
import h5py
import numpy as np
from dask.delayed import Delayed, delayed

from splitds_dask._errors import BlockError, SplitDatasetError
from splitds_dask._format.files import BlockNames
from splitds_dask._format.geometry import BlockGrid
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

__all__ = ["Problem", "VerifyPlan", "VerifyResult", "plan_verify", "verify"]

# Bytes decompressed per read while checking a block (bounds memory for huge blocks).
_CHECK_BYTES = 64 << 20
# Check tasks at most: enough to keep every worker busy and the progress bar moving, few enough
# that a million small blocks do not make a million tasks.
_MAX_TASKS = 1024


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

    def add(self, other: _Tally) -> None:
        self.chunks += other.chunks
        self.blocks += other.blocks
        self.without += other.without


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
    checks: _Checks,
    path: Path,
    block: tuple[int, ...],
    extent: tuple[int, ...],
    *,
    tally: _Tally,
) -> list[Problem]:
    try:  # before anything opens it: a FIFO would block, a link may lead anywhere
        check_block_file(path, block=block, allow_external=checks.allow_external, missing_ok=True)
    except BlockError as exc:
        kind = "outside" if isinstance(exc, OutsideFolderError) else "unreadable"
        return [Problem(path, kind, str(exc), block)]
    if not path.is_file():
        return [Problem(path, "missing", f"{path}: block {block}: the file is missing", block)]
    try:
        f = h5py.File(path, "r", locking=checks.locking)
    except Exception as exc:  # noqa: BLE001 - reported
        return [
            Problem(
                path, "unreadable", f"{path}: block {block}: not a readable HDF5 file: {exc}", block
            )
        ]
    with f:
        try:
            return _inspect(checks, f, path, block, extent, tally=tally)
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
    checks: _Checks,
    f: h5py.File,
    path: Path,
    block: tuple[int, ...],
    extent: tuple[int, ...],
    *,
    tally: _Tally,
) -> list[Problem]:
    # getlink: testing the name does not follow an external link.
    has_key = f.get(checks.data_key, getlink=True) is not None
    key = checks.data_key if has_key else find_data_key(f, len(extent))
    try:
        checked = (
            checked_dataset(f, key, path=path, block=block, allow_external=checks.allow_external)
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
                f"{path}: block {block}: no array '{checks.data_key}' (the file holds: {keys})",
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
    if found != checks.dtype:
        problems.append(
            Problem(
                path,
                "dtype",
                f"{path}: block {block}: dtype {found} differs from the dataset's {checks.dtype}",
                block,
            )
        )
    if checks.read_data:
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
    scheduler: Any = None,
) -> list[Problem]:
    """Check a split dataset block by block and list every problem found.

    The blocks are checked in parallel, as dask tasks of a few blocks each; the problems come
    back in block order whatever the scheduler.

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
    scheduler : str or distributed.Client, optional
        Where the checks run: ``"sync"``, ``"threads"``, ``"processes"`` or a
        ``distributed.Client`` (its workers must see the folder at the same path). Default:
        dask's current scheduler (a default ``Client`` if one is open, else threads).

    Returns
    -------
    list of Problem
        Empty when the dataset is sound. Each problem names its file; at most one per block.

    Examples
    --------
    >>> import numpy as np
    >>> from splitds_dask import to_split_dataset, verify
    >>> _ = to_split_dataset(np.zeros((6, 4, 4), np.uint16), "checked", block_shape=2)
    >>> verify("checked", scheduler="sync")
    []
    """
    plan = plan_verify(
        path, prefix=prefix, locking=locking, read_data=read_data, allow_external=allow_external
    )
    return plan.finish(dask.compute(*plan.tasks, scheduler=scheduler)).problems


class _Checks(NamedTuple):
    """What every check task needs besides its blocks (a few hundred bytes pickled)."""

    root: str  # absolute: the tasks may run in other processes, other working directories
    grid: tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]  # shape, block shape, padding
    dtype: np.dtype
    data_key: str
    locking: bool | str | None
    read_data: bool
    allow_external: bool


class _Checked(NamedTuple):
    """What one check task returns: its blocks' problems in block order, and its tally."""

    problems: list[Problem]
    tally: _Tally


def _check_blocks(checks: _Checks, names: BlockNames, start: int, stop: int) -> _Checked:
    """Check blocks ``start`` to ``stop - 1``; ``names`` holds their names from ``start`` on (a
    naming rule holds them all: see :func:`_task_names`)."""
    grid = BlockGrid(*checks.grid)
    offset = 0 if names.explicit is None else start
    tally = _Tally()
    problems: list[Problem] = []
    for index in range(start, stop):
        block = tuple(int(k) for k in np.unravel_index(index, grid.grid))
        extent = tuple(b - a for a, b in (grid.file_extent(i, k) for i, k in enumerate(block)))
        path = Path(checks.root) / names[index - offset]
        problems += _check_block(checks, path, block, extent, tally=tally)
    return _Checked(problems, tally)


def _task_names(names: BlockNames, start: int, stop: int) -> BlockNames:
    """The names a task checking blocks ``start:stop`` needs: the rule, or its slice of a list."""
    if names.explicit is None:
        return names
    return dataclasses.replace(names, count=stop - start, explicit=names.explicit[start:stop])


@dataclass
class VerifyPlan:
    """A verification ready to compute: the dataset's own problems and one task per group of
    blocks (see :func:`plan_verify`)."""

    problems: list[Problem]
    """Problems found on opening (``"dataset"``, ``"incomplete"``)."""
    tasks: list[Delayed]
    """Each computes a :class:`_Checked` for its blocks; in block order."""
    root: str = ""
    """The folder as the tasks name it (absolute)."""
    shown: str = ""
    """The folder as it was given, which the problems name."""

    def finish(self, results: Sequence[_Checked]) -> VerifyResult:
        """Every problem in block order, and the tally, from the results of :attr:`tasks`."""
        problems = list(self.problems)
        tally = _Tally()
        for checked in results:
            problems += map(self._as_given, checked.problems)
            tally.add(checked.tally)
        return VerifyResult(problems, tally)

    def _as_given(self, problem: Problem) -> Problem:
        """``problem`` naming its file under the folder as given (a relative path stays one)."""
        if self.root == self.shown or not problem.path.is_relative_to(self.root):
            return problem
        path = Path(self.shown) / problem.path.relative_to(self.root)
        message = problem.message.replace(self.root + os.sep, self.shown + os.sep)
        return Problem(path, problem.kind, message, problem.block)


class VerifyResult(NamedTuple):
    """Every problem of a dataset in block order, and how much the checksums covered."""

    problems: list[Problem]
    tally: _Tally


def plan_verify(
    path: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    locking: bool | str | None = None,
    read_data: bool = True,
    allow_external: bool = False,
    max_tasks: int = _MAX_TASKS,
) -> VerifyPlan:
    """Open the dataset (its problems are found at once) and plan the block checks as tasks.

    The options are :func:`verify`'s. Blocks are grouped into at most ``max_tasks`` tasks of
    consecutive blocks; each carries a :class:`_Checks`, its range and the block names' rule, so
    its pickled size does not grow with the number of blocks.
    """
    from splitds_dask._dataset import IncompleteDatasetWarning, SplitDataset

    root = Path(path)
    problems: list[Problem] = []
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
        return VerifyPlan(problems, [])
    grid = ds.grid
    checks = _Checks(
        root=os.path.abspath(root),
        grid=(grid.shape, grid.block_shape, grid.padding),
        dtype=ds.dtype,
        data_key=ds.data_key,
        locking=locking,
        read_data=read_data,
        allow_external=allow_external,
    )
    names = ds.block_naming
    n = grid.n_blocks
    per_task = -(-n // max(1, max_tasks))
    # A new name every time: a file repaired since the last check must be checked again, never
    # answered from a distributed cluster's memory.
    name = f"verify-blocks-{uuid.uuid4().hex}"
    tasks = [
        delayed(_check_blocks)(
            checks,
            _task_names(names, start, min(n, start + per_task)),
            start,
            min(n, start + per_task),
            dask_key_name=(name, start // per_task),
        )
        for start in range(0, n, per_task)
    ]
    return VerifyPlan(problems, tasks, root=checks.root, shown=str(root))

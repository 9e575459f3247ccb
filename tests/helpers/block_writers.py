"""Every writer of split datasets in the package behind one signature, and small chunks.

``WRITERS[name](data, block_shape, folder)`` writes ``data`` as a split dataset at ``folder``
with Blosc (the default), through ``to_split_dataset``, ``SplitDatasetWriter`` (blocks along
axis 0 alone, of ``block_shape[0]`` frames), ``EmptySplitDataset``, ``save_to_split_dataset`` or
``splitds convert`` from a ``.npy`` beside the folder. Inside :func:`small_chunks` block files
are chunked for a target of ``SMALL_TARGET`` bytes instead of 1 MiB.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._storage import block_file
from tests.helpers.cli import run_main

__all__ = ["SMALL_TARGET", "WRITERS", "sample_array", "small_chunks"]

# Small arrays then get several chunks per block, as datasets of megabytes do with 1 MiB.
SMALL_TARGET = 1024


@contextmanager
def small_chunks() -> Iterator[None]:
    """Chunks of at most ``SMALL_TARGET`` bytes in the block files written meanwhile."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(block_file, "_CHUNK_BYTES", SMALL_TARGET)
        yield


def sample_array(shape: tuple[int, ...], dtype: str, seed: int) -> np.ndarray:
    """Values Blosc compresses a little, every element of its own (complex: both parts)."""
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 200, size=shape)
    if dtype == "bool":
        return values % 3 == 0
    if np.dtype(dtype).kind == "c":
        return (values + 1j * rng.integers(-50, 50, size=shape)).astype(dtype)
    return values.astype(dtype)


def _to_split_dataset(data: np.ndarray, block: tuple[int, ...], folder: Path) -> None:
    sd.to_split_dataset(data, folder, block)


def _stream(data: np.ndarray, block: tuple[int, ...], folder: Path) -> None:
    with sd.SplitDatasetWriter(
        folder, frame_shape=data.shape[1:], dtype=data.dtype, block_length=block[0]
    ) as writer:
        for start in range(0, len(data), 3):  # three frames at a time
            writer.append(data[start : start + 3])


def _empty_split_dataset(data: np.ndarray, block: tuple[int, ...], folder: Path) -> None:
    new = sd.EmptySplitDataset(folder.parent, folder.name, shape_full=data.shape, shape_block=block)
    for i, (_, slices) in enumerate(new.slices()):
        new.save_block_data(i, data[slices])
    new.finalize()


def _save_to_split_dataset(data: np.ndarray, block: tuple[int, ...], folder: Path) -> None:
    sd.save_to_split_dataset(data, folder, block_size=block)


def _convert(data: np.ndarray, block: tuple[int, ...], folder: Path) -> None:
    source = folder.parent / f"{folder.name}.npy"
    np.save(source, data)
    run = run_main("convert", str(source), str(folder), "--block-shape", ",".join(map(str, block)))
    assert run.code == 0, run


WRITERS: dict[str, Callable[[np.ndarray, tuple[int, ...], Path], None]] = {
    "to_split_dataset": _to_split_dataset,
    "SplitDatasetWriter": _stream,
    "EmptySplitDataset": _empty_split_dataset,
    "save_to_split_dataset": _save_to_split_dataset,
    "convert": _convert,
}

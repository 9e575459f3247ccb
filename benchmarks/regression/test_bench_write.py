"""Writing the movie (64 x 4 x 256 x 256 uint16, 33.5 MB) as a split dataset in blocks of 8 time
points, with Blosc: ``to_split_dataset``, ``SplitDatasetWriter`` appending one time point at a
time, and converting the Blosc split dataset to zarr. Each round writes a new folder; what was
written is read back with h5py or zarr, not with this package."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import zarr
from regression_data import BLOCK_FRAMES, Movie

import splitds_dask as sd
from splitds_dask._cli.sources import open_source
from splitds_dask._cli.targets import write_array

ROUNDS = 5


@pytest.mark.benchmark(group="write")
@pytest.mark.parametrize("durable", [True, False], ids=["durable", "not-durable"])
def test_to_split_dataset(
    benchmark,
    movie: Movie,
    fresh_path: Callable[[str], Path],
    read_with_h5py: Callable[[Path], np.ndarray],
    durable: bool,
) -> None:
    """``durable=True`` (the default) flushes every file to stable storage before publishing."""
    block = (BLOCK_FRAMES, *movie.array.shape[1:])
    written: list[Path] = []

    def write(path: Path) -> None:
        sd.to_split_dataset(movie.array, path, block, compression="blosc", durable=durable)
        written.append(path)

    benchmark.pedantic(write, setup=lambda: ((fresh_path(""),), {}), rounds=ROUNDS)
    assert np.array_equal(read_with_h5py(written[-1]), movie.array)
    benchmark.extra_info["nbytes"] = movie.array.nbytes


@pytest.mark.benchmark(group="write")
def test_writer_append(
    benchmark,
    movie: Movie,
    fresh_path: Callable[[str], Path],
    read_with_h5py: Callable[[Path], np.ndarray],
) -> None:
    """``SplitDatasetWriter``: 64 ``append(frame)`` calls and ``close()`` (every block flushed to
    stable storage, as the writer always does)."""
    written: list[Path] = []

    def write(path: Path) -> None:
        with sd.SplitDatasetWriter(
            path,
            frame_shape=movie.array.shape[1:],
            dtype=movie.array.dtype,
            block_length=BLOCK_FRAMES,
            compression="blosc",
        ) as writer:
            for frame in movie.array:
                writer.append(frame)
        written.append(path)

    benchmark.pedantic(write, setup=lambda: ((fresh_path(""),), {}), rounds=ROUNDS)
    assert np.array_equal(read_with_h5py(written[-1]), movie.array)
    benchmark.extra_info["nbytes"] = movie.array.nbytes


@pytest.mark.benchmark(group="write")
def test_convert_to_zarr(benchmark, movie: Movie, fresh_path: Callable[[str], Path]) -> None:
    """What ``splitds convert movie-blosc out.zarr`` runs: one zarr chunk per block, Blosc."""
    written: list[Path] = []

    def convert(path: Path) -> None:
        write_array(open_source(str(movie.blosc)), str(path))
        written.append(path)

    benchmark.pedantic(convert, setup=lambda: ((fresh_path(".zarr"),), {}), rounds=ROUNDS)
    z = zarr.open_array(str(written[-1]), mode="r")
    assert z.chunks == (BLOCK_FRAMES, *movie.array.shape[1:])
    assert np.array_equal(z[...], movie.array)
    benchmark.extra_info["nbytes"] = movie.array.nbytes

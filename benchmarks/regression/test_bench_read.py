"""Reading the movie (64 x 4 x 256 x 256 uint16 in blocks of 8 time points): one time point, the
whole movie (Blosc and uncompressed), a strided selection and the threaded mean through dask."""

from __future__ import annotations

import numpy as np
import pytest
from regression_data import Movie

import splitds_dask as sd

#: A time point inside a block, not its first.
T = 21
#: Every 7th time point (several per block, none of the blocks whole), every other row and column.
STRIDED = (slice(3, None, 7), slice(None), slice(None, None, 2), slice(1, None, 2))


def _bytes(benchmark, array: np.ndarray) -> None:
    """Record the bytes one call returns: MB/s = bytes / mean time."""
    benchmark.extra_info["nbytes"] = array.nbytes


@pytest.mark.benchmark(group="read")
def test_one_time_point(benchmark, movie: Movie) -> None:
    ds = sd.SplitDataset(movie.blosc)
    out = benchmark(ds.__getitem__, T)
    assert np.array_equal(out, movie.array[T])
    _bytes(benchmark, out)


@pytest.mark.benchmark(group="read")
@pytest.mark.parametrize("codec", ["blosc", "raw"])
def test_full_read(benchmark, movie: Movie, codec: str) -> None:
    ds = sd.SplitDataset(movie.blosc if codec == "blosc" else movie.raw)
    out = benchmark(ds.__getitem__, Ellipsis)
    assert np.array_equal(out, movie.array)
    _bytes(benchmark, out)


@pytest.mark.benchmark(group="read")
def test_strided(benchmark, movie: Movie) -> None:
    ds = sd.SplitDataset(movie.blosc)
    out = benchmark(ds.__getitem__, STRIDED)
    assert np.array_equal(out, movie.array[STRIDED])
    _bytes(benchmark, out)


@pytest.mark.benchmark(group="compute")
def test_mean_threaded(benchmark, movie: Movie) -> None:
    """``to_dask().mean(axis=0).compute()`` on the threaded scheduler (one task per block)."""
    x = sd.SplitDataset(movie.blosc).to_dask()
    out = benchmark(lambda: x.mean(axis=0).compute(scheduler="threads"))
    assert np.allclose(out, movie.array.mean(axis=0))
    benchmark.extra_info["nbytes"] = movie.array.nbytes  # the bytes read

"""Data for the regression benchmarks: small, deterministic, made once per session.

Run from the repository root (the default ``pytest`` collects only ``tests/``)::

    pytest benchmarks/regression                     # timed, a table per group
    pytest benchmarks/regression --benchmark-disable  # each body once, as a test

See benchmarks/README.md for saving and comparing runs.
"""

from __future__ import annotations

import itertools
import shutil
from collections.abc import Callable
from pathlib import Path

import h5py
import numpy as np
import pytest
from regression_data import BLOCK_FRAMES, MANY, MOVIE_SHAPE, Movie, hard_linked, make_movie

import splitds_dask as sd


@pytest.fixture(scope="session")
def data_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("regression")


@pytest.fixture(scope="session")
def movie(data_root: Path) -> Movie:
    array = make_movie()
    block = (BLOCK_FRAMES, *MOVIE_SHAPE[1:])
    blosc, raw = data_root / "movie-blosc", data_root / "movie-raw"
    sd.to_split_dataset(array, blosc, block, compression="blosc", durable=False)
    sd.to_split_dataset(array, raw, block, compression=None, durable=False)
    return Movie(array, blosc, raw)


@pytest.fixture(scope="session")
def many_blocks(data_root: Path) -> dict[int, Path]:
    """Block count -> folder of that many hard-linked blocks."""
    folders = {}
    for n in MANY:
        folders[n] = data_root / f"linked-{n}"
        hard_linked(folders[n], n)
    return folders


@pytest.fixture
def fresh_path(tmp_path: Path) -> Callable[[str], Path]:
    """``fresh_path(suffix)``: a new output path on each call; the previous one is removed, so
    that a write benchmark never fills the disk with its rounds."""
    counter = itertools.count()
    previous: list[Path] = []

    def make(suffix: str = "") -> Path:
        for path in previous:
            shutil.rmtree(path, ignore_errors=True)
        previous.clear()
        path = tmp_path / f"out{next(counter)}{suffix}"
        previous.append(path)
        return path

    return make


def _read_with_h5py(folder: Path) -> np.ndarray:
    """The block files' arrays in file-name order, concatenated along axis 0: read with h5py
    alone, so that the checks do not rely on the reader being measured."""
    blocks = []
    for path in sorted(folder.glob("*.h5")):
        with h5py.File(path, "r") as f:
            (key,) = f.keys()
            blocks.append(f[key][...])
    return np.concatenate(blocks)


@pytest.fixture(scope="session")
def read_with_h5py() -> Callable[[Path], np.ndarray]:
    """``read_with_h5py(folder)``: a written split dataset (blocks along axis 0 only), as one
    array read with h5py alone."""
    return _read_with_h5py

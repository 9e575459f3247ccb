"""The regression benchmarks' data: small and deterministic (the same bytes on every run).

Made once per session by the fixtures in ``conftest.py``; the constants are imported by the
benchmark modules for their parameters and checks.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import NamedTuple

import h5py
import numpy as np

#: The movie: t x z x y x x uint16, 33.5 MB, in blocks of 8 time points (4.2 MB each).
MOVIE_SHAPE = (64, 4, 256, 256)
BLOCK_FRAMES = 8
#: Block counts of the many-blocks datasets.
MANY = (1_000, 10_000)
#: A tiny block, hard-linked many times: opening and graph building cost what the block count
#: costs, not what reading costs.
TINY_BLOCK = np.arange(4 * 3 * 2, dtype="u2").reshape(1, 4, 3, 2)
#: ext4 allows 65,000 hard links to one file: a fresh copy of the block file every 60,000.
_LINKS_PER_COPY = 60_000


class Movie(NamedTuple):
    """The movie in memory and the same movie written as split datasets."""

    array: np.ndarray
    blosc: Path
    raw: Path


def make_movie() -> np.ndarray:
    """A smooth background plus noise: compresses about as camera data does, in milliseconds."""
    rng = np.random.default_rng(0)
    t, z, y, x = MOVIE_SHAPE
    background = 100 + np.add.outer(np.linspace(0, 200, y), np.linspace(0, 100, x))
    depth = np.linspace(1.0, 0.5, z)[:, None, None]
    noise = rng.integers(0, 64, size=MOVIE_SHAPE, dtype=np.uint16)
    drift = np.arange(t, dtype=np.uint16)[:, None, None, None]
    return (background * depth).astype(np.uint16)[None] + noise + drift


def hard_linked(folder: Path, n: int) -> None:
    """``n`` one-time-point blocks, all hard links to a few copies of one tiny block file."""
    folder.mkdir(parents=True)
    first = folder / "0000.h5"
    with h5py.File(first, "w") as f:
        f.create_dataset("stack_4D", data=TINY_BLOCK)
    source = first
    for i in range(1, n):
        path = folder / f"{i:04d}.h5"
        if i % _LINKS_PER_COPY == 0:
            shutil.copyfile(first, path)
            source = path
        else:
            os.link(source, path)
    metadata = {"shape_full": [n, *TINY_BLOCK.shape[1:]], "shape_block": list(TINY_BLOCK.shape)}
    (folder / "stack_metadata.json").write_text(json.dumps(metadata))

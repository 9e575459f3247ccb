"""Opening a dataset and building its dask graph, at 1,000 and 10,000 block files.

The blocks are hard links to one tiny file, so what is timed is what the block count costs:
reading the metadata, listing the folder, one array per block in the graph.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from regression_data import MANY, TINY_BLOCK

import splitds_dask as sd


@pytest.mark.benchmark(group="open")
@pytest.mark.parametrize("n_blocks", MANY)
def test_open(benchmark, many_blocks: dict[int, Path], n_blocks: int) -> None:
    """``SplitDataset(root)``: the metadata, the listing, the last block file's header."""
    ds = benchmark(sd.SplitDataset, many_blocks[n_blocks])
    assert ds.shape == (n_blocks, *TINY_BLOCK.shape[1:])
    assert ds.dtype == TINY_BLOCK.dtype


@pytest.mark.benchmark(group="graph")
def test_to_dask_graph(benchmark, many_blocks: dict[int, Path]) -> None:
    """``ds.to_dask()`` at 10,000 blocks, on a freshly opened dataset each round (the dataset
    keeps the array it built)."""
    n = 10_000
    x = benchmark.pedantic(
        lambda ds: ds.to_dask(),
        setup=lambda: ((sd.SplitDataset(many_blocks[n]),), {}),
        rounds=10,
    )
    assert x.shape == (n, *TINY_BLOCK.shape[1:])
    assert x.numblocks == (n, 1, 1, 1)
    # Cheap: the last block, against the block every file holds.
    assert np.array_equal(x[n - 1 :].compute(), TINY_BLOCK)

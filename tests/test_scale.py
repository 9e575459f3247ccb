"""A dataset of 100,000 block files: what opening it and its dask graph hold, per block.

The block files are hard links to a few copies of one tiny block file (file systems cap the links
per file: ext4 at 65,000). Memory is measured with tracemalloc, i.e. the Python and numpy
allocations of opening, not the process's RSS nor any time.
"""

from __future__ import annotations

import gc
import pickle
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from dask._task_spec import convert_legacy_graph
from dask.highlevelgraph import HighLevelGraph

import splitds_dask as sd

pytestmark = [pytest.mark.slow]

#: The bound on what an opened dataset and its dask array hold, per block file.
_BYTES_PER_BLOCK = 200


@pytest.fixture(scope="module")
def linked(tmp_path_factory: pytest.TempPathFactory, hard_linked_dataset) -> dict[int, Path]:
    """Linked datasets of 1,000, 70,000 and 100,000 blocks."""
    tmp = tmp_path_factory.mktemp("scale")
    # Folder names of one length, so that the paths in the tasks are too.
    counts = (1_000, 70_000, 100_000)
    folders = {n: tmp / f"many_{n:07d}" for n in counts}
    for n, folder in folders.items():
        hard_linked_dataset(folder, n, name="{:06d}.h5")
    return folders


def _held_by_opening(root: Path) -> tuple[int, object]:
    """Bytes still allocated after ``SplitDataset(root).to_dask()``, and the dask array."""
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        ds = sd.SplitDataset(root)
        x = ds.to_dask()
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    return held, x


def test_opened_dataset_holds_under_200_bytes_per_block(linked):
    n = 100_000
    held, x = _held_by_opening(linked[n])
    assert x.numblocks == (n, 1, 1, 1)
    # The last block is really read from its own file name, so the names were not lost.
    np.testing.assert_array_equal(
        x[n - 1].compute(), np.arange(24, dtype=np.uint16).reshape(4, 3, 2), strict=True
    )
    assert held / n < _BYTES_PER_BLOCK, f"{held / n:.0f} bytes per block"


def _read_task_sizes(root: Path, blocks: tuple[int, ...]) -> list[int]:
    """Pickled sizes of the materialized read tasks of ``blocks``."""
    x = sd.SplitDataset(root).to_dask()
    keys = [(x.name, b, 0, 0, 0) for b in blocks]
    graph = x.__dask_graph__()
    if isinstance(graph, HighLevelGraph):
        # Culled to those tasks first: materializing all 100,000 takes dask seconds.
        graph = graph.cull(set(keys))
    graph = convert_legacy_graph(dict(graph))
    return [len(pickle.dumps(graph[key])) for key in keys]


def test_read_task_does_not_grow_with_the_block_count(linked):
    blocks = (0, 999)
    sizes = {n: _read_task_sizes(root, blocks) for n, root in linked.items()}
    # Same size at 70,000 and 100,000 blocks, exactly. At 1,000 the task is a few bytes smaller
    # only because pickle writes the block count (in the reader's naming rule and grid) in 2
    # bytes below 65,536 and in 4 above: no per-block list rides in a task.
    for i, _ in enumerate(blocks):
        assert sizes[70_000][i] == sizes[100_000][i]
        assert 0 <= sizes[100_000][i] - sizes[1_000][i] <= 8
        assert sizes[100_000][i] < 1_000

"""The dask graph: one chunk and one read task per block file, deterministic names, culling,
selection pushed into the read, and every local scheduler."""

from __future__ import annotations

import itertools
import json
import math
import os
import pickle

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
from dask._task_spec import Task, convert_legacy_graph
from dask.array.utils import assert_eq
from dask.local import get_sync

import splitds_dask as sd
from splitds_dask._daskmodes import array_expr_enabled  # dask < 2025.7 has no public one


def _tasks(array):
    """Keys of the graph that are real tasks (not aliases of other keys)."""
    graph = dict(array.__dask_graph__())
    return [k for k, v in graph.items() if type(v).__name__ != "Alias"]


def _culled_tasks(array):
    # dask.optimize leaves an array-expr collection as it is; compute() simplifies it first.
    (optimized,) = (array.optimize(),) if array_expr_enabled() else dask.optimize(array)
    return _tasks(optimized)


@pytest.fixture
def dataset(tmp_path, write_plain, random_array):
    a = random_array((10, 6, 5), "i4")
    write_plain(tmp_path / "ds", a, (3, 2))  # grid (4, 3, 1)
    return sd.SplitDataset(tmp_path / "ds"), a


@pytest.mark.parametrize(
    ("shape", "block", "padding"),
    [((10, 6, 5), (3, 2), 0), ((7,), (7,), 0), ((9, 4), (4, 1), 0), ((11, 3), (4,), 2)],
)
def test_chunks_are_blocks_one_task_per_file(
    tmp_path, write_plain, random_array, shape, block, padding
):
    a = random_array(shape, "u2")
    paths = write_plain(tmp_path, a, block, padding=padding)
    ds = sd.SplitDataset(tmp_path)
    x = ds.to_dask()
    assert isinstance(x, da.Array)
    assert x.chunks == ds.chunks
    assert x.numblocks == ds.files.shape
    assert math.prod(x.numblocks) == len(paths)  # dask's array-expr Array has no npartitions
    keys = _tasks(x)
    assert len(keys) == len(paths)
    assert sorted(k[1:] for k in keys) == sorted(np.ndindex(*ds.files.shape))
    # In both modes (array-expr: named from the expression's operands, the reader's token
    # among them, see test_name_is_deterministic).
    assert x.name.startswith("splitds-")
    assert isinstance(x._meta, np.ndarray)
    assert x._meta.dtype == a.dtype
    assert x._meta.ndim == a.ndim
    assert x.dtype == a.dtype
    # Each chunk is exactly its block file's part of the array.
    for block_index in np.ndindex(*x.numblocks):
        owned = tuple(
            slice(sum(c[:k]), sum(c[: k + 1])) for c, k in zip(x.chunks, block_index, strict=True)
        )
        # The chunk's own task (dask's array-expr Array has no .blocks).
        chunk = get_sync(x.__dask_graph__(), (x.name, *block_index))
        np.testing.assert_array_equal(chunk, a[owned], strict=True)
    assert ds.to_dask() is x  # cached


def test_name_is_deterministic(tmp_path, write_plain, random_array):
    a = random_array((10, 6), "f4")
    paths = write_plain(tmp_path / "ds", a, (3, 2))
    name = sd.SplitDataset(tmp_path / "ds").to_dask().name
    assert sd.SplitDataset(tmp_path / "ds").to_dask().name == name
    assert pickle.loads(pickle.dumps(sd.SplitDataset(tmp_path / "ds"))).to_dask().name == name
    assert sd.SplitDataset(str(tmp_path / "ds")).to_dask().name == name
    # Same files elsewhere: another dataset.
    write_plain(tmp_path / "copy", a, (3, 2))
    assert sd.SplitDataset(tmp_path / "copy").to_dask().name != name
    # A block file touched (rewritten): another name.
    st = os.stat(paths[4])
    os.utime(paths[4], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    touched = sd.SplitDataset(tmp_path / "ds").to_dask().name
    assert touched != name
    assert sd.SplitDataset(tmp_path / "ds").to_dask().name == touched
    # Metadata changed: another name.
    meta = tmp_path / "ds" / "stack_metadata.json"
    meta.write_text(json.dumps({**json.loads(meta.read_text()), "resolution": [2, 1]}))
    assert sd.SplitDataset(tmp_path / "ds").to_dask().name not in (name, touched)


def test_name_stamps_a_bounded_sample_of_files(tmp_path, write_plain, random_array, monkeypatch):
    """Past the stamped sample, a block replaced by rename still changes the name (folder time)."""
    from splitds_dask import _graph

    monkeypatch.setattr(_graph, "_STAMPED_FILES", 3)
    a = random_array((20, 4), "u2")
    paths = write_plain(tmp_path / "ds", a, (1,))  # 20 blocks; files 0, 9 and 19 are stamped
    name = sd.SplitDataset(tmp_path / "ds").to_dask().name
    # Rewritten in place, unstamped: the folder does not change, so neither does the name.
    st = os.stat(paths[4])
    os.utime(paths[4], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    assert sd.SplitDataset(tmp_path / "ds").to_dask().name == name
    # Rewritten in place, stamped: another name.
    st = os.stat(paths[9])
    os.utime(paths[9], ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))
    stamped = sd.SplitDataset(tmp_path / "ds").to_dask().name
    assert stamped != name
    # Replaced by rename, as every atomic writer does: the folder's time changes, and the name.
    replacement = tmp_path / "ds" / ".new.h5"
    replacement.write_bytes(paths[5].read_bytes())
    folder = os.stat(tmp_path / "ds")
    os.replace(replacement, paths[5])
    os.utime(tmp_path / "ds", ns=(folder.st_atime_ns, folder.st_mtime_ns + 1_000_000))
    assert sd.SplitDataset(tmp_path / "ds").to_dask().name not in (name, stamped)


def test_building_the_graph_reads_no_block(dataset):
    ds, a = dataset
    _ = ds.dtype  # the one read opening needs: the dtype probe of the first block
    for path in ds.files.flat:
        path.write_bytes(b"garbage" * 50)
    x = ds.to_dask()
    y = (x[2:, ::2] + 1).mean(axis=0)
    assert x.shape == a.shape
    with pytest.raises(sd.BlockError, match=r"\.h5"):
        y.compute(scheduler="sync")


@pytest.mark.parametrize(
    ("index", "touched"),
    [
        (5, 3),  # one block row (grid (4, 3, 1))
        ((5, 3), 1),
        ((slice(3, 5), 0, 2), 1),
        ((9, slice(None), 4), 3),
        ((slice(None), 5), 4),
    ],
)
def test_selection_culls_to_touched_blocks(dataset, index, touched):
    ds, a = dataset
    x = ds.to_dask()
    assert len(_tasks(x)) == 12
    y = x[index]
    assert len(_culled_tasks(y)) == touched
    # Which block holds each element, by brute force over the grid (4, 3, 1) of (3, 2) blocks.
    owner = np.arange(12).reshape(4, 3)[np.arange(10)[:, None] // 3, np.arange(6)[None, :] // 2]
    owner = np.broadcast_to(owner[:, :, None], a.shape)
    needed = np.unique(owner[index])
    assert len(needed) == touched
    for number, path in enumerate(ds.files.flat):
        if number not in needed:
            path.write_bytes(b"garbage" * 50)
    for scheduler in ("sync", "threads"):
        np.testing.assert_array_equal(y.compute(scheduler=scheduler), a[index], strict=True)


def test_selection_is_pushed_into_the_read(tmp_path, random_array):
    """Every chunk but one time point per block file is corrupt: x[t] must still work."""
    a = random_array((40, 3, 5), "u2")
    for i in range(2):
        path = tmp_path / f"{i:04d}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset(
                "stack_3D", data=a[20 * i : 20 * i + 20], chunks=(1, 3, 5), compression="gzip"
            )
            spans = [f["stack_3D"].id.get_chunk_info(j) for j in range(20)]
        with open(path, "r+b") as f:
            for j, info in enumerate(spans):
                if j != 5:
                    f.seek(info.byte_offset)
                    f.write(b"\x5a" * info.size)
    (tmp_path / "stack_metadata.json").write_text('{"shape_full": [40, 3, 5], "shape_block": [20]}')
    x = sd.SplitDataset(tmp_path).to_dask()
    # Default mode: dask fuses the slice into the read; array-expr mode: the package does
    # (splitds_dask._daskmodes.from_reader).
    for scheduler in ("sync", "threads"):
        np.testing.assert_array_equal(x[5].compute(scheduler=scheduler), a[5], strict=True)
        np.testing.assert_array_equal(
            x[25, 1:].compute(scheduler=scheduler), a[25, 1:], strict=True
        )
        np.testing.assert_array_equal(
            x[5:45:20, :, ::2].compute(scheduler=scheduler), a[5:45:20, :, ::2], strict=True
        )
    with pytest.raises(sd.BlockError):
        x[6].compute(scheduler="sync")
    with pytest.raises(sd.BlockError):
        x.compute(scheduler="sync")


@pytest.mark.parametrize(
    "scheduler",
    [
        "sync",
        "threads",
        pytest.param("processes", marks=[pytest.mark.slow, pytest.mark.subprocess]),
    ],
)
@pytest.mark.parametrize("dtype", ["u2", "f4", "bool"])
def test_reductions_on_every_scheduler(tmp_path, write_plain, random_array, scheduler, dtype):
    a = random_array((13, 4, 6), dtype)
    if a.dtype.kind == "f":
        a = np.round(a)  # integral values: sums are exact in any order
    write_plain(tmp_path, a, (4, 3), compression="gzip")
    x = sd.SplitDataset(tmp_path).to_dask()
    with dask.config.set(scheduler=scheduler):
        mean = x.mean(axis=0).compute()
        total = x.sum().compute()
        whole = x.compute()
        part = x[3:11, 1, ::-2].compute()
    np.testing.assert_array_equal(mean, a.mean(axis=0), strict=True)
    assert total == a.sum()
    np.testing.assert_array_equal(whole, a, strict=True)
    np.testing.assert_array_equal(part, a[3:11, 1, ::-2], strict=True)


def test_map_blocks_and_rechunk(dataset):
    ds, a = dataset
    x = ds.to_dask()
    assert_eq(x.map_blocks(lambda b: b * 2, dtype=x.dtype), a * 2)
    assert_eq(x.rechunk((5, 6, 5)), a)
    assert_eq(da.concatenate([x, x], axis=0)[8:12], np.concatenate([a, a])[8:12])


def test_graph_pickles_small(dataset):
    ds, a = dataset
    x = ds.to_dask()
    graph = dict(x.__dask_graph__())
    blob = pickle.dumps(graph)
    assert b"HDF" not in blob
    assert len(blob) < 12 * 4000  # paths and geometry per task, never data or handles
    back = pickle.loads(pickle.dumps(x))
    np.testing.assert_array_equal(back.compute(scheduler="sync"), a, strict=True)


# --- grouping blocks into chunks ---------------------------------------------------------------


def _expected_group_chunks(lengths, group):
    """Chunks of ``group`` neighbouring blocks, by walking the block lengths one at a time."""
    out, current, count = [], 0, 0
    for n in lengths:
        current += n
        count += 1
        if count == group:
            out.append(current)
            current, count = 0, 0
    if count:
        out.append(current)
    return tuple(out)


@pytest.mark.parametrize(
    ("shape", "block", "group"),
    [
        ((23, 6, 5), (2, 3), 4),  # last group short, last block short
        ((23, 6, 5), (2, 3), (3, 2)),
        ((23, 6, 5), (2, 3), (1, 2, 1)),
        ((8, 4), (1,), 100),  # more than there are: one chunk
        ((9, 4), (4, 1), (2, 3)),
    ],
)
@pytest.mark.parametrize("scheduler", ["sync", "threads"])
def test_blocks_per_chunk(tmp_path, write_plain, random_array, shape, block, group, scheduler):
    a = random_array(shape, "u2")
    write_plain(tmp_path, a, block, compression="gzip")
    ds = sd.SplitDataset(tmp_path)
    x = ds.to_dask(blocks_per_chunk=group)
    groups = [group] if isinstance(group, int) else list(group)
    groups += [1] * (len(shape) - len(groups))
    assert x.chunks == tuple(
        _expected_group_chunks(c, g) for c, g in zip(ds.chunks, groups, strict=True)
    )
    assert x.name != ds.to_dask().name
    assert ds.to_dask(blocks_per_chunk=group) is x  # cached per grouping
    with dask.config.set(scheduler=scheduler):
        np.testing.assert_array_equal(x.compute(), a, strict=True)
        np.testing.assert_array_equal(x[3:17:3, 1].compute(), a[3:17:3, 1], strict=True)
        np.testing.assert_array_equal(x.sum(axis=0).compute(), a.sum(axis=0), strict=True)


@pytest.mark.parametrize(
    ("limit", "group"),
    [
        (60, (1, 1, 1)),
        (59, (1, 1, 1)),  # smaller than one block: one block per chunk
        (120, (2, 1, 1)),
        ("240 B", (4, 1, 1)),
        ("1 KiB", (12, 1, 1)),  # axis 0 whole (12 blocks = 720 B); two rows do not fit
        (1440, (12, 2, 1)),
        (10**9, (12, 2, 1)),
    ],
)
def test_chunk_size_groups_along_the_first_axes(tmp_path, write_plain, random_array, limit, group):
    a = random_array((23, 6, 5), "u2")
    write_plain(tmp_path, a, (2, 3))  # blocks of 2 x 3 x 5 uint16 = 60 bytes; grid (12, 2, 1)
    ds = sd.SplitDataset(tmp_path)
    x = ds.to_dask(chunk_size=limit)
    assert x.chunks == tuple(
        _expected_group_chunks(c, g) for c, g in zip(ds.chunks, group, strict=True)
    )
    largest = max(math.prod(shape) for shape in itertools.product(*x.chunks)) * 2
    assert largest <= max(60, dask.utils.parse_bytes(limit) if isinstance(limit, str) else limit)
    np.testing.assert_array_equal(x.compute(scheduler="sync"), a, strict=True)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"blocks_per_chunk": 0}, "positive"),
        ({"blocks_per_chunk": (1, -2)}, "positive"),
        ({"blocks_per_chunk": 2.5}, "positive"),
        ({"blocks_per_chunk": True}, "positive"),
        ({"blocks_per_chunk": (1, 1, 1, 1)}, "more than 3 axes"),
        ({"chunk_size": 0}, "positive"),
        ({"chunk_size": "-1 MiB"}, "positive"),
        ({"blocks_per_chunk": 2, "chunk_size": "1 MiB"}, "not both"),
    ],
)
def test_grouping_arguments_are_checked(dataset, kwargs, match):
    ds, _ = dataset
    with pytest.raises(ValueError, match=match):
        ds.to_dask(**kwargs)


def test_grouped_tasks_read_only_the_blocks_they_hold(tmp_path, write_plain, random_array):
    """A slice of a grouped array reads only the block files under it."""
    a = random_array((40, 3, 5), "u2")
    paths = write_plain(tmp_path, a, (2,))  # 20 blocks
    ds = sd.SplitDataset(tmp_path)
    x = ds.to_dask(blocks_per_chunk=5)  # 4 chunks of 5 blocks: rows 10-19 are blocks 5-9
    _ = ds.dtype
    # Blocks 5-7 hold rows 10-15 (in both dask modes: the slice is moved into the read).
    needed = range(5, 8)
    for i, path in enumerate(paths):
        if i not in needed:
            path.write_bytes(b"garbage" * 50)
    np.testing.assert_array_equal(x[10:16].compute(scheduler="sync"), a[10:16], strict=True)
    with pytest.raises(sd.BlockError):
        x[10:21].compute(scheduler="sync")


# --- what a task carries -----------------------------------------------------------------------


def _one_task_pickled(array):
    graph = convert_legacy_graph(dict(array.__dask_graph__()))
    reads = [v for v in graph.values() if isinstance(v, Task)]
    return len(pickle.dumps(reads[0])), len(reads)


@pytest.mark.slow
def test_names_without_a_rule_are_shared_not_copied_into_tasks(tmp_path, hard_linked_dataset):
    """Irregular names: the reader holding them is one graph key that every task refers to."""
    sizes = []
    for n in (10, 2000):
        folder = tmp_path / str(n)
        block = hard_linked_dataset(folder, n)
        (folder / "0001.h5").rename(folder / "1.h5")  # the family follows no naming rule now
        ds = sd.SplitDataset(folder)
        assert not ds.block_naming.is_rule
        x = ds.to_dask()
        size, reads = _one_task_pickled(x)
        assert reads == n
        sizes.append(size)
        assert int(x.sum().compute(scheduler="sync")) == n * int(block.sum())
    assert abs(sizes[1] - sizes[0]) <= 8, sizes


@pytest.mark.parametrize("count", [1_000, 100_000])
@pytest.mark.parametrize("dtype", ["<u2", ">f8", "?", [("a", "<i4"), ("b", "<f8")]])
def test_reader_pickles_to_plain_values(count, dtype):
    """Every read task carries the reader: it pickles to its values, not to nested objects."""
    from splitds_dask._format.files import BlockNames
    from splitds_dask._format.geometry import BlockGrid
    from splitds_dask._reader import BlockReader

    reader = BlockReader(
        root="/data/fish/run_1",
        names=BlockNames(stem="", first=0, width=len(str(count - 1)), count=count),
        grid=BlockGrid(shape=(count, 4, 8, 8), block_shape=(1, 4, 8, 8), padding=(0, 0, 0, 0)),
        dtype=np.dtype(dtype),
        data_key="stack_4D",
        locking=None,
        token="0123456789abcdef0123456789abcdef",
    )
    blob = pickle.dumps(reader)
    back = pickle.loads(blob)
    for name in BlockReader.__slots__:
        assert getattr(back, name) == getattr(reader, name), name
    assert back.block_path(count - 1) == reader.block_path(count - 1)
    # Measured: 186 bytes for a plain dtype (395 when the grid, names and dtype pickled as
    # objects); a structured dtype pickles as a numpy dtype.
    assert len(blob) < (260 if isinstance(dtype, str) else 360)

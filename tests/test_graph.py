"""The dask graph: one chunk and one read task per block file, deterministic names, culling,
selection pushed into the read, and every local scheduler."""

from __future__ import annotations

import json
import os
import pickle

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
from dask.array.utils import assert_eq

import splitds_dask as sd


def _tasks(array):
    """Keys of the graph that are real tasks (not aliases of other keys)."""
    graph = dict(array.__dask_graph__())
    return [k for k, v in graph.items() if type(v).__name__ != "Alias"]


def _culled_tasks(array):
    (optimized,) = dask.optimize(array)
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
    assert x.npartitions == len(paths)
    keys = _tasks(x)
    assert len(keys) == len(paths)
    assert sorted(k[1:] for k in keys) == sorted(np.ndindex(*ds.files.shape))
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
        np.testing.assert_array_equal(x.blocks[block_index].compute(), a[owned], strict=True)
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
    reads = _culled_tasks(y)
    assert len(reads) == touched
    assert_eq(y, a[index])


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


@pytest.mark.parametrize("scheduler", ["sync", "threads", "processes"])
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


@pytest.mark.parametrize("count", [1_000, 100_000])
@pytest.mark.parametrize("dtype", ["<u2", ">f8", "?", [("a", "<i4"), ("b", "<f8")]])
def test_reader_pickles_to_plain_values(count, dtype):
    """Every read task carries the reader: it pickles to its values, not to nested objects."""
    from splitds_dask._files import BlockNames
    from splitds_dask._geometry import BlockGrid
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

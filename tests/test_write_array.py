"""to_split_dataset: sources, block shapes, delayed writes, overwrite rules, what lands on disk
(checked with plain h5py and json, independently of the reader)."""

from __future__ import annotations

import json
import os
from itertools import product

import dask
import dask.array as da
import h5py
import numpy as np
import pytest
from dask.core import get_dependencies
from dask.delayed import Delayed

import splitds_dask as sd
from splitds_dask._daskmodes import array_expr_enabled  # dask < 2025.7 has no public one
from splitds_dask._write.array import block_file_name
from tests.helpers.format_facts import ORIGINAL_METADATA_KEYS

DTYPES = ["bool", "u1", "i2", "u2", "i4", "u8", "f2", "f4", "f8", "c8"]


def _expected_blocks(shape, block):
    """Brute-force block slices in C order (no package code)."""
    block = list(block) + [None] * (len(shape) - len(block))
    per_axis = []
    for n, b in zip(shape, block, strict=True):
        b = n if b is None else min(b, n)
        per_axis.append([slice(s, min(s + b, n)) for s in range(0, n, b)] if n else [slice(0, 0)])
    return list(product(*per_axis))


def _check_on_disk(folder, a, block, *, key=None, resolution=None, axis_order=None):
    """The files and json, read with h5py/json only."""
    blocks = _expected_blocks(a.shape, block)
    names = sorted(p for p in os.listdir(folder))
    width = max(4, len(str(len(blocks) - 1)))
    assert names == sorted(
        [f"{i:0{width}d}.h5" for i in range(len(blocks))] + ["stack_metadata.json"]
    )
    key = key or f"stack_{a.ndim}D"
    for i, region in enumerate(blocks):
        with h5py.File(folder / f"{i:0{width}d}.h5", "r") as f:
            assert list(f.keys()) == [key]
            stored = f[key][()]
            if a.dtype == bool:
                assert isinstance(f[key].id.get_type(), h5py.h5t.TypeBitfieldID)
                stored = stored.astype(bool)
            np.testing.assert_array_equal(stored, a[region], strict=True)
    text = (folder / "stack_metadata.json").read_text()
    meta = json.loads(text)
    assert list(meta) == ORIGINAL_METADATA_KEYS
    full_block = [max(1, s.stop - s.start) for s in blocks[0]]  # 1 for a zero-length axis
    assert meta == {
        "shape_full": list(a.shape),
        "shape_block": full_block,
        "crop_start": [0] * a.ndim,
        "crop_end": [0] * a.ndim,
        "padding": [0] * a.ndim,
        "resolution": list(resolution) if resolution is not None else [1] * a.ndim,
        "axis_order": axis_order or ("tzyx" if a.ndim == 4 else meta["axis_order"]),
    }
    return meta


def _listing(folder):
    return sorted(os.listdir(folder))


# --- sources and block shapes ----------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("compression", ["blosc", "gzip", None])
def test_numpy_round_trip(tmp_path, random_array, dtype, compression):
    a = random_array((9, 5, 6), dtype)
    ds = sd.to_split_dataset(a, tmp_path / "out", (4, 2), compression=compression)
    assert isinstance(ds, sd.SplitDataset)
    assert _listing(tmp_path) == ["out"]  # no staging folder left
    _check_on_disk(tmp_path / "out", a, (4, 2))
    assert ds.shape == a.shape
    assert ds.dtype == a.dtype
    assert ds.shape_block == (4, 2, 6)
    np.testing.assert_array_equal(ds[...], a, strict=True)
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "out")[...], a, strict=True)


@pytest.mark.parametrize(
    ("block_shape", "expected"),
    [
        (None, (9, 5, 6)),
        (4, (4, 5, 6)),
        (np.int64(4), (4, 5, 6)),
        ((4,), (4, 5, 6)),
        ((4, None), (4, 5, 6)),
        ((None, 2), (9, 2, 6)),
        ((None, 2, None), (9, 2, 6)),
        ([2, 3, 4], (2, 3, 4)),
        ((20, 20, 20), (9, 5, 6)),  # clamped
    ],
)
def test_block_shapes(tmp_path, random_array, block_shape, expected):
    a = random_array((9, 5, 6), "i2")
    ds = sd.to_split_dataset(a, tmp_path / "out", block_shape)
    assert ds.shape_block == expected
    meta = _check_on_disk(tmp_path / "out", a, expected)
    assert meta["shape_block"] == list(expected)


@pytest.mark.parametrize("block_shape", [(0,), (-1,), (2, 2, 2, 2), (1.5,), (True,)])
def test_invalid_block_shapes(tmp_path, block_shape):
    with pytest.raises(ValueError, match="block shape"):
        sd.to_split_dataset(np.zeros((4, 4, 4)), tmp_path / "out", block_shape)
    assert _listing(tmp_path) == []


def test_from_dask_with_other_chunks(tmp_path, random_array):
    a = random_array((10, 7, 3), "f4")
    x = da.from_array(a, chunks=(3, 4, 2))
    ds = sd.to_split_dataset(x, tmp_path / "out", (4, 5))
    _check_on_disk(tmp_path / "out", a, (4, 5))
    assert ds.chunks == ((4, 4, 2), (5, 2), (3,))
    np.testing.assert_array_equal(ds[...], a, strict=True)


def test_from_dask_default_blocks_are_its_chunks(tmp_path, random_array):
    a = random_array((10, 7, 3), "u2")
    ds = sd.to_split_dataset(da.from_array(a, chunks=(3, 4, 3)), tmp_path / "out")
    assert ds.shape_block == (3, 4, 3)
    _check_on_disk(tmp_path / "out", a, (3, 4))


def test_from_dask_expression(tmp_path, random_array):
    a = random_array((6, 8), "i4")
    # Numpy scalars: dask's array-expr mode promotes int32 * 2 to int64 (numpy keeps int32).
    x = (da.from_array(a, chunks=3) * np.int32(2) + np.int32(1)).T
    ds = sd.to_split_dataset(x, tmp_path / "out", (3, 2))
    _check_on_disk(tmp_path / "out", (a * 2 + 1).T, (3, 2))
    np.testing.assert_array_equal(ds[...], (a * 2 + 1).T, strict=True)


def test_from_split_dataset_keeps_its_blocks(tmp_path, write_plain, random_array):
    a = random_array((9, 4, 5), "u2")
    write_plain(tmp_path / "src", a, (2, 3))
    source = sd.SplitDataset(tmp_path / "src")
    copy = sd.to_split_dataset(source, tmp_path / "copy")
    assert copy.shape_block == (2, 3, 5)
    _check_on_disk(tmp_path / "copy", a, (2, 3))
    rechunked = sd.to_split_dataset(source, tmp_path / "re", (5,))
    _check_on_disk(tmp_path / "re", a, (5,))
    np.testing.assert_array_equal(rechunked[...], a, strict=True)


class _MinimalArray:
    """Only shape, dtype and numpy-style slicing."""

    def __init__(self, data):
        self._data = data
        self.shape = data.shape
        self.dtype = data.dtype
        self.reads = 0

    def __getitem__(self, key):
        self.reads += 1
        return self._data[key]


def test_from_minimal_array_like(tmp_path, random_array):
    a = random_array((7, 6), "f8")
    source = _MinimalArray(a)
    ds = sd.to_split_dataset(source, tmp_path / "out", (3, 4))
    _check_on_disk(tmp_path / "out", a, (3, 4))
    np.testing.assert_array_equal(ds[...], a, strict=True)
    assert source.reads >= 6


def test_from_nested_list(tmp_path):
    data = [[1, 2, 3], [4, 5, 6]]
    ds = sd.to_split_dataset(data, tmp_path / "out", (1,))
    np.testing.assert_array_equal(ds[...], np.array(data), strict=True)


def test_resolution_axis_order_data_key(tmp_path, random_array):
    a = random_array((4, 3, 5, 6), "u2")
    ds = sd.to_split_dataset(
        a,
        tmp_path / "out",
        (2, 1),
        resolution=(2.0, 1, 0.5, 0.5),
        axis_order="tczy",
        data_key="stack",
    )
    _check_on_disk(
        tmp_path / "out", a, (2, 1), key="stack", resolution=(2.0, 1, 0.5, 0.5), axis_order="tczy"
    )
    assert ds.data_key == "stack"
    assert ds.resolution == (2.0, 1.0, 0.5, 0.5)
    default = sd.to_split_dataset(a, tmp_path / "default", (2, 1))
    assert default.data_key == "stack_4D"
    meta = json.loads((tmp_path / "default" / "stack_metadata.json").read_text())
    assert meta["axis_order"] == "tzyx"
    assert meta["resolution"] == [1, 1, 1, 1]


def test_exact_json_text_like_the_original(tmp_path):
    sd.to_split_dataset(np.zeros((6, 4, 5), "u2"), tmp_path / "out", (4,))
    assert (tmp_path / "out" / "stack_metadata.json").read_text() == (
        '{"shape_full": [6, 4, 5], "shape_block": [4, 4, 5], "crop_start": [0, 0, 0], '
        '"crop_end": [0, 0, 0], "padding": [0, 0, 0], "resolution": [1, 1, 1], '
        '"axis_order": "zyx"}'
    )


@pytest.mark.parametrize("shape", [(0, 3), (4, 0), (1,), (1, 1, 1, 1, 1)])
def test_degenerate_shapes(tmp_path, shape):
    a = np.arange(int(np.prod(shape)), dtype="i2").reshape(shape)
    ds = sd.to_split_dataset(a, tmp_path / "out", (2,))
    assert ds.shape == shape
    np.testing.assert_array_equal(ds[...], a, strict=True)
    # From a dask array, with its chunks as the default block shape.
    lazy = sd.to_split_dataset(da.from_array(a, chunks=2), tmp_path / "lazy")
    assert lazy.shape == shape
    np.testing.assert_array_equal(lazy[...], a, strict=True)


def test_zero_d_and_object_data_rejected(tmp_path):
    with pytest.raises(ValueError, match="0-d"):
        sd.to_split_dataset(np.float32(3), tmp_path / "a")
    with pytest.raises(TypeError):
        sd.to_split_dataset(np.array([["a"]]), tmp_path / "b")
    with pytest.raises(TypeError):
        sd.to_split_dataset(np.array([[None]], dtype=object), tmp_path / "c")
    assert _listing(tmp_path) == []


def test_dtype_given_to_dask_as_a_scalar_type(tmp_path):
    # When calling the function on an empty block fails, dask's array-expr map_blocks reports
    # the dtype as given (np.uint8, a scalar type, not a dtype): the writer still writes uint8.
    def add_block_number(block, block_info=None):
        return block + np.uint8(block_info[0]["chunk-location"][0])

    x = da.zeros((6, 3), dtype=np.uint8, chunks=(2, 3))
    x = x.map_blocks(add_block_number, dtype=np.uint8)
    ds = sd.to_split_dataset(x, tmp_path / "out")
    expected = np.repeat(np.arange(3, dtype=np.uint8), 2)[:, None].repeat(3, axis=1)
    np.testing.assert_array_equal(ds[...], expected, strict=True)


# --- compute=False and the graph -------------------------------------------------------------


def _reachable(graph, key):
    seen, todo = set(), [key]
    while todo:
        k = todo.pop()
        if k in seen:
            continue
        seen.add(k)
        # get_dependencies: dask's array-expr mode also puts tuple tasks in the graph.
        todo.extend(get_dependencies(graph, k))
    return seen


def _name(key):
    return key[0] if isinstance(key, tuple) else key


def test_compute_false_returns_delayed(tmp_path, random_array):
    a = random_array((10, 6, 4), "u2")
    delayed = sd.to_split_dataset(a, tmp_path / "sub" / "out", (3, 4), compute=False)
    assert isinstance(delayed, Delayed)
    assert not (tmp_path / "sub" / "out").exists()  # nothing at the path before compute
    # One store task per block: 4 x 2 x 1 blocks.
    graph = dict(delayed.__dask_graph__())
    used = _reachable(graph, delayed.key)
    # dask's array-expr mode has no store: the writer's map_blocks tasks take the block_info,
    # and dask names those pass_extra_kwargs-... whatever name it is given.
    prefix = "pass_extra_kwargs" if array_expr_enabled() else "store-map"
    stores = [k for k in used if _name(k).startswith(prefix) and type(graph[k]).__name__ != "Alias"]
    assert len(stores) == 8
    assert len({k[1:] for k in stores}) == 8
    ds = delayed.compute()
    assert isinstance(ds, sd.SplitDataset)
    assert _listing(tmp_path) == ["sub"]
    assert _listing(tmp_path / "sub") == ["out"]
    _check_on_disk(tmp_path / "sub" / "out", a, (3, 4))
    np.testing.assert_array_equal(ds[...], a, strict=True)


def test_compute_false_writes_the_array_as_it_was(tmp_path, random_array):
    """A deferred write snapshots a numpy array; changing it afterwards changes nothing."""
    a = random_array((10, 6), "i4")
    original = a.copy()
    delayed = sd.to_split_dataset(a, tmp_path / "out", (3,), compute=False)
    a[:] = -1
    np.testing.assert_array_equal(delayed.compute()[...], original, strict=True)


# In dask's array-expr mode, dask.compute of a Delayed (what compute=False returns) together with
# an expression-backed array warns "Computing mixed collections" and materialises the expression
# first; the answers stay numpy's, which is what this test checks.
@pytest.mark.filterwarnings("ignore:Computing mixed collections:UserWarning")
def test_compute_false_with_other_collections(tmp_path, random_array):
    a = random_array((8, 3), "f4")
    w1 = sd.to_split_dataset(a, tmp_path / "one", (3,), compute=False)
    w2 = sd.to_split_dataset(a[::-1], tmp_path / "two", (5,), compute=False)
    one, two, total = dask.compute(w1, w2, da.from_array(a, chunks=2).sum())
    np.testing.assert_array_equal(one[...], a, strict=True)
    np.testing.assert_array_equal(two[...], a[::-1], strict=True)
    assert np.isclose(total, a.sum())


@pytest.mark.parametrize(
    "scheduler", ["sync", "threads", pytest.param("processes", marks=pytest.mark.subprocess)]
)
def test_write_on_every_scheduler(tmp_path, random_array, scheduler):
    a = random_array((9, 4), "i4")
    with dask.config.set(scheduler=scheduler):
        ds = sd.to_split_dataset(a, tmp_path / "out", (2, 3))
    _check_on_disk(tmp_path / "out", a, (2, 3))
    np.testing.assert_array_equal(ds[...], a, strict=True)


# --- overwrite rules and atomicity -----------------------------------------------------------


def test_existing_dataset_needs_overwrite(tmp_path, random_array, snapshot):
    a = random_array((6, 4), "u1")
    sd.to_split_dataset(a, tmp_path / "out", (2,))
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError):
        sd.to_split_dataset(a + 1, tmp_path / "out", (3,))
    with pytest.raises(FileExistsError):
        sd.to_split_dataset(a + 1, tmp_path / "out", (3,), compute=False)
    assert snapshot(tmp_path) == before
    b = random_array((5, 7), "f4", seed=9)
    ds = sd.to_split_dataset(b, tmp_path / "out", (4,), overwrite=True)
    assert _listing(tmp_path) == ["out"]
    _check_on_disk(tmp_path / "out", b, (4,))  # no leftover files of the old dataset
    np.testing.assert_array_equal(ds[...], b, strict=True)


def test_overwrite_a_dataset_with_itself(tmp_path, random_array):
    a = random_array((12, 5), "i2")
    sd.to_split_dataset(a, tmp_path / "out", (3,))
    source = sd.SplitDataset(tmp_path / "out")
    ds = sd.to_split_dataset(source, tmp_path / "out", (5, 2), overwrite=True)
    _check_on_disk(tmp_path / "out", a, (5, 2))
    np.testing.assert_array_equal(ds[...], a, strict=True)
    # A numpy scalar: dask's array-expr mode promotes int16 * 2 to int64 (numpy keeps int16).
    lazy = sd.SplitDataset(tmp_path / "out").to_dask()[::-1] * np.int16(2)
    with pytest.raises(ValueError, match="irregular"):  # chunks (2, 5, 5): no default blocks
        sd.to_split_dataset(lazy, tmp_path / "out", overwrite=True)
    ds = sd.to_split_dataset(lazy, tmp_path / "out", (5, 2), overwrite=True)
    _check_on_disk(tmp_path / "out", a[::-1] * 2, (5, 2))
    assert _listing(tmp_path) == ["out"]


@pytest.mark.parametrize("overwrite", [False, True])
def test_refuses_non_dataset_folder(tmp_path, snapshot, overwrite):
    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "notes.txt").write_text("precious")
    (folder / "0000.h5").write_bytes(b"not ours")
    before = snapshot(tmp_path)
    with pytest.raises(FileExistsError):
        sd.to_split_dataset(np.zeros((4, 4)), folder, (2,), overwrite=overwrite)
    with pytest.raises(FileExistsError):
        sd.to_split_dataset(np.zeros((4, 4)), tmp_path / "data" / "notes.txt", overwrite=True)
    assert snapshot(tmp_path) == before


def test_writes_into_empty_existing_folder(tmp_path, random_array):
    (tmp_path / "out").mkdir()
    a = random_array((4, 4), "u2")
    sd.to_split_dataset(a, tmp_path / "out", (2,))
    _check_on_disk(tmp_path / "out", a, (2,))
    assert _listing(tmp_path) == ["out"]


def _fail_on_block(block, block_info=None):
    if block_info[0]["chunk-location"] == (1, 0):
        raise RuntimeError("boom")
    return block


@pytest.mark.parametrize("scheduler", ["sync", "threads"])
@pytest.mark.parametrize("existing", [False, True])
def test_failed_write_leaves_target_as_it_was(
    tmp_path, random_array, snapshot, existing, scheduler
):
    a = random_array((6, 4), "u2")
    if existing:
        sd.to_split_dataset(a, tmp_path / "out", (2,))
        before = snapshot(tmp_path / "out")
    bad = da.from_array(a + 1, chunks=(2, 4)).map_blocks(_fail_on_block, dtype=a.dtype)
    with dask.config.set(scheduler=scheduler), pytest.raises(RuntimeError, match="boom"):
        sd.to_split_dataset(bad, tmp_path / "out", (2,), overwrite=True)
    if existing:
        assert snapshot(tmp_path / "out") == before  # the old dataset is untouched
        np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "out")[...], a, strict=True)
    else:
        assert not (tmp_path / "out").exists()
    if scheduler == "sync":  # no write still in flight: the staging folder is gone too
        assert _listing(tmp_path) == (["out"] if existing else [])


# --- file names ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n_blocks", "first", "last"),
    [
        (1, "0000.h5", "0000.h5"),
        (10, "0000.h5", "0009.h5"),
        (10_000, "0000.h5", "9999.h5"),
        (10_001, "00000.h5", "10000.h5"),
        (123_457, "000000.h5", "123456.h5"),
    ],
)
def test_block_file_name_widens(n_blocks, first, last):
    assert block_file_name(0, n_blocks) == first
    assert block_file_name(n_blocks - 1, n_blocks) == last
    names = [block_file_name(i, n_blocks) for i in range(0, n_blocks, max(1, n_blocks // 997))]
    names.append(block_file_name(n_blocks - 1, n_blocks))
    assert names == sorted(names)  # text order is block order
    assert len({len(n) for n in names}) == 1


@pytest.mark.slow
def test_more_than_9999_blocks_written_and_read(tmp_path):
    n = 10_001
    a = np.arange(n, dtype=np.uint16)
    ds = sd.to_split_dataset(a, tmp_path / "out", (1,), compression=None)
    names = sorted(os.listdir(tmp_path / "out"))
    assert names[0] == "00000.h5"
    assert names[-2] == "10000.h5"
    assert names[-1] == "stack_metadata.json"
    assert len(names) == n + 1
    with h5py.File(tmp_path / "out" / "09999.h5", "r") as f:
        assert f["stack_1D"][()].tolist() == [9999]
    np.testing.assert_array_equal(ds[9990:], a[9990:], strict=True)
    np.testing.assert_array_equal(ds[[0, 5000, 10_000]], a[[0, 5000, 10_000]], strict=True)


def test_relative_path_and_chdir_before_compute(tmp_path, random_array, monkeypatch):
    a = random_array((6, 4), "u2")
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path)
    delayed = sd.to_split_dataset(a, "rel/out", (2,), compute=False)
    monkeypatch.chdir(tmp_path / "elsewhere")
    ds = delayed.compute()
    assert _listing(tmp_path / "elsewhere") == []
    _check_on_disk(tmp_path / "rel" / "out", a, (2,))
    np.testing.assert_array_equal(ds[...], a, strict=True)


@pytest.mark.parametrize("durable", [True, False])
def test_durable_flushes_before_publishing(tmp_path, random_array, monkeypatch, durable):
    """The flush to stable storage runs before the dataset appears, and only when asked for."""
    from splitds_dask._storage import atomic as _durable

    flushed = []
    real = _durable.sync_folder

    def record(folder):
        assert not (tmp_path / "out").exists()  # not yet published
        flushed.append(folder)
        real(folder)

    monkeypatch.setattr(_durable, "sync_folder", record)
    a = random_array((10, 6), "u2")
    ds = sd.to_split_dataset(a, tmp_path / "out", (3,), durable=durable)
    np.testing.assert_array_equal(ds[...], a, strict=True)
    assert len(flushed) == (1 if durable else 0)

"""One block file: write_block / read_block_region round trips, storage details and errors."""

from __future__ import annotations

import math
import os

import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import splitds_dask as sd
from splitds_dask._storage.block_file import (
    COMPRESSIONS,
    chunk_shape_for,
    compression_options,
    find_data_key,
    open_h5,
    read_block_region,
    stored_dtype,
    write_block,
)

DTYPES = ["bool", "u1", "i2", "u2", "i4", "u8", "f2", "f4", "f8", "c8"]

# HDF5 filter id each codec must put into the file (None: no filter, contiguous layout).
FILTER_IDS = {
    "blosc": 32001,
    "blosc:lz4": 32001,
    "blosc:lz4hc": 32001,
    "blosc:blosclz": 32001,
    "blosc:zstd": 32001,
    "blosc:zlib": 32001,
    "blosc2": 32026,
    "blosc2:lz4": 32026,
    "blosc2:zstd": 32026,
    "gzip": 1,
    "zlib": 1,
    "bzip2": 307,
    "zstd": 32015,
    None: None,
}


def _read_all(path, key, dtype, shape, block=(0, 0, 0)):
    out = np.empty(shape, dtype)
    full = tuple(slice(0, n, 1) for n in shape)
    read_block_region(
        path,
        key=key,
        block=block,
        dtype=np.dtype(dtype),
        extent=shape,
        source=full,
        out=out,
        dest=full,
    )
    return out


def _filters(dset):
    plist = dset.id.get_create_plist()
    return [plist.get_filter(i)[0] for i in range(plist.get_nfilters())]


def test_codec_table_covers_every_compression():
    assert set(FILTER_IDS) == set(COMPRESSIONS)


@pytest.mark.parametrize("compression", COMPRESSIONS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_round_trip_every_dtype_and_codec(tmp_path, random_array, dtype, compression):
    shape = (5, 7, 11)  # > 300 elements
    a = random_array(shape, dtype, seed=3)
    path = tmp_path / "0000.h5"
    write_block(path, a, key="stack_3D", compression=compression)
    assert sorted(os.listdir(tmp_path)) == ["0000.h5"]  # no temporary file left
    back = _read_all(path, "stack_3D", dtype, shape)
    np.testing.assert_array_equal(back, a)
    assert back.dtype == np.dtype(dtype)
    with h5py.File(path, "r") as f:
        dset = f["stack_3D"]
        assert dset.shape == shape
        assert stored_dtype(dset) == np.dtype(dtype)
        expected = FILTER_IDS[compression]
        if expected is None:
            assert dset.chunks is None
            assert _filters(dset) == []
        else:
            assert expected in _filters(dset)
            assert dset.chunks is not None
        if dtype == "bool":
            assert isinstance(dset.id.get_type(), h5py.h5t.TypeBitfieldID)
            assert dset.dtype == np.uint8  # what plain h5py sees: PyTables' bool storage
            np.testing.assert_array_equal(dset[()], a.astype(np.uint8))
        else:
            np.testing.assert_array_equal(dset[()], a)
        assert dset.attrs["CLASS"] == (b"ARRAY" if expected is None else b"CARRAY")


@pytest.mark.parametrize("dtype", DTYPES)
def test_partial_strided_region_into_offset_destination(tmp_path, random_array, dtype):
    a = random_array((9, 6, 5), dtype, seed=1)
    path = tmp_path / "b.h5"
    write_block(path, a, key="stack", compression="blosc")
    out = np.zeros((4, 8, 3), dtype)
    source = (slice(1, 8, 3), slice(0, 6, 2), slice(2, 5, 1))  # 3 x 3 x 3
    dest = (slice(1, 4), slice(4, 7), slice(0, 3))
    read_block_region(
        path,
        key="stack",
        block=(0, 0, 0),
        dtype=np.dtype(dtype),
        extent=(9, 6, 5),
        source=source,
        out=out,
        dest=dest,
    )
    expected = np.zeros((4, 8, 3), dtype)
    expected[dest] = a[source]
    np.testing.assert_array_equal(out, expected)


def test_reads_plain_h5py_files(tmp_path, random_array):
    """Big-endian, enum-bool, gzip/chunked and resizable files written by plain h5py."""
    big = random_array((4, 5), "i4").astype(">i4")
    flags = random_array((4, 5), "bool")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset(
            "stack_2D", data=big, chunks=(1, 5), maxshape=(None, 5), compression="gzip"
        )
        f.create_dataset("mask", data=flags)
    with h5py.File(tmp_path / "x.h5", "r") as f:
        assert stored_dtype(f["stack_2D"]) == np.dtype("i4")
        assert stored_dtype(f["stack_2D"]).isnative
        assert stored_dtype(f["mask"]) == np.dtype(bool)
    np.testing.assert_array_equal(_read_all(tmp_path / "x.h5", "stack_2D", "i4", (4, 5)), big)
    np.testing.assert_array_equal(_read_all(tmp_path / "x.h5", "mask", bool, (4, 5)), flags)


def test_file_may_hold_more_than_the_block(tmp_path, random_array):
    a = random_array((6, 2, 4), "u2")
    write_block(tmp_path / "b.h5", a, key="stack_3D")
    out = np.empty((6, 1, 4), "u2")
    full = (slice(0, 6, 1), slice(0, 1, 1), slice(0, 4, 1))
    read_block_region(
        tmp_path / "b.h5",
        key="stack_3D",
        block=(0, 0, 0),
        dtype=np.dtype("u2"),
        extent=(6, 1, 4),
        source=full,
        out=out,
        dest=full,
    )
    np.testing.assert_array_equal(out, a[:, :1])


def test_other_data_key_in_file_is_found(tmp_path, random_array):
    a = random_array((3, 4), "f4")
    write_block(tmp_path / "b.h5", a, key="stack")
    np.testing.assert_array_equal(_read_all(tmp_path / "b.h5", "stack_2D", "f4", (3, 4)), a)


def test_empty_block(tmp_path):
    a = np.empty((0, 3), "u2")
    write_block(tmp_path / "b.h5", a, key="stack_2D")
    with h5py.File(tmp_path / "b.h5", "r") as f:
        assert f["stack_2D"].shape == (0, 3)
    out = np.empty((0, 3), "u2")
    read_block_region(
        tmp_path / "b.h5",
        key="stack_2D",
        block=(0, 0),
        dtype=np.dtype("u2"),
        extent=(0, 3),
        source=(slice(0, 0, 1), slice(0, 3, 1)),
        out=out,
        dest=(slice(0, 0), slice(0, 3)),
    )


# --- atomic writing ------------------------------------------------------------------------------


def test_write_replaces_existing_file(tmp_path):
    path = tmp_path / "0000.h5"
    write_block(path, np.zeros((3, 3), "u1"), key="stack_2D")
    write_block(path, np.ones((2, 2), "f4"), key="stack_2D")
    assert os.listdir(tmp_path) == ["0000.h5"]
    np.testing.assert_array_equal(_read_all(path, "stack_2D", "f4", (2, 2)), np.ones((2, 2)))


@pytest.mark.parametrize(
    ("data", "kwargs", "error"),
    [
        (np.array([["a", "b"]]), {}, TypeError),
        (np.array([[object()]], dtype=object), {}, TypeError),
        (np.zeros((2, 2), "datetime64[s]"), {}, TypeError),
        (np.zeros((20, 20), "u2"), {"compression": "lzw"}, ValueError),
        (np.zeros((20, 20), "u2"), {"compression": 5}, TypeError),
        (np.zeros((20, 20), "u2"), {"compression": "gzip:9"}, ValueError),
    ],
    ids=["str", "object", "datetime", "unknown-codec", "non-str-codec", "gzip-with-cname"],
)
def test_failed_write_leaves_no_file(tmp_path, data, kwargs, error):
    path = tmp_path / "0003.h5"
    with pytest.raises(error):
        write_block(path, data, key="stack_2D", **kwargs)
    assert os.listdir(tmp_path) == []
    # ...and an existing block stays as it was.
    write_block(path, np.full((2, 2), 7, "u1"), key="stack_2D")
    with pytest.raises(error):
        write_block(path, data, key="stack_2D", **kwargs)
    assert os.listdir(tmp_path) == ["0003.h5"]
    np.testing.assert_array_equal(_read_all(path, "stack_2D", "u1", (2, 2)), np.full((2, 2), 7))


def test_write_into_missing_folder_fails_cleanly(tmp_path):
    with pytest.raises(OSError, match="nope"):
        write_block(tmp_path / "nope" / "0000.h5", np.zeros(3), key="stack_1D")
    assert os.listdir(tmp_path) == []


# --- errors naming file and block -------------------------------------------------------------


def _error_for(path, *, key="stack_3D", dtype="u2", extent=(4, 3, 2), block=(1, 0, 2)):
    out = np.empty(extent, dtype)
    full = tuple(slice(0, n, 1) for n in extent)
    with pytest.raises(sd.BlockError) as info:
        read_block_region(
            path,
            key=key,
            block=block,
            dtype=np.dtype(dtype),
            extent=extent,
            source=full,
            out=out,
            dest=full,
        )
    err = info.value
    assert str(path) in str(err)
    assert str(block) in str(err)
    assert err.path == str(path)
    assert err.block == block
    assert isinstance(err, ValueError)
    return str(err)


def test_missing_file(tmp_path):
    assert "missing" in _error_for(tmp_path / "0005.h5")


@pytest.mark.parametrize("content", [b"", b"garbage" * 100, b"\x89HDF\r\n\x1a\n" + b"\0" * 50])
def test_not_hdf5(tmp_path, content):
    path = tmp_path / "0005.h5"
    path.write_bytes(content)
    _error_for(path)


def test_truncated_hdf5(tmp_path, random_array):
    path = tmp_path / "0005.h5"
    write_block(path, random_array((4, 3, 2), "u2"), key="stack_3D", compression=None)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    _error_for(path)


@pytest.mark.parametrize("shape", [(3, 3, 2), (4, 2, 2), (4, 3, 1), (4, 3), (4, 3, 2, 1)])
def test_too_short_or_wrong_rank(tmp_path, shape):
    path = tmp_path / "0005.h5"
    write_block(path, np.zeros(shape, "u2"), key="stack_3D")
    message = _error_for(path)
    assert str(shape) in message


@pytest.mark.parametrize("stored", ["u1", "i2", "f4", "bool", ">u2"])
def test_wrong_dtype(tmp_path, stored):
    path = tmp_path / "0005.h5"
    with h5py.File(path, "w") as f:
        f["stack_3D"] = np.zeros((4, 3, 2), stored)
    if stored == ">u2":  # same values, other byte order: not an error
        _read_all(path, "stack_3D", "u2", (4, 3, 2))
        return
    message = _error_for(path)
    assert str(np.dtype(stored)) in message


def test_missing_key(tmp_path):
    path = tmp_path / "0005.h5"
    with h5py.File(path, "w") as f:
        f["shifts"] = np.zeros(3)
        f.create_group("stack_metadata")
    message = _error_for(path)
    assert "shifts" in message


def test_corrupt_chunk_is_block_error(tmp_path, random_array):
    path = tmp_path / "0005.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(
            "stack_3D", data=random_array((4, 3, 2), "u2"), chunks=(1, 3, 2), compression="gzip"
        )
        offset, size = f["stack_3D"].id.get_chunk_info(2).byte_offset, 8
    with open(path, "r+b") as f:
        f.seek(offset)
        f.write(b"\xff" * size)
    _error_for(path)


# --- small helpers ----------------------------------------------------------------------------


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.integers(0, 5000), min_size=1, max_size=5),
    st.sampled_from([1, 2, 4, 8, 16]),
)
def test_chunk_shape_for(shape, itemsize):
    chunk = chunk_shape_for(shape, itemsize)
    assert len(chunk) == len(shape)
    assert all(1 <= c <= max(1, n) for c, n in zip(chunk, shape, strict=True))
    nbytes = math.prod(chunk) * itemsize
    assert nbytes <= max(1 << 20, itemsize)
    # Whole trailing axes: only the leading cut axis may be partial, later ones are full.
    cut = [i for i, (c, n) in enumerate(zip(chunk, shape, strict=True)) if c < n]
    if cut:
        assert all(chunk[i] == max(1, shape[i]) for i in range(cut[-1] + 1, len(shape)))
        assert all(chunk[i] == 1 for i in range(cut[0]))
    if math.prod(max(1, n) for n in shape) * itemsize <= 1 << 20:
        assert chunk == tuple(max(1, n) for n in shape)


def test_compression_options():
    assert compression_options(None, None, np.dtype("u2")) == {}
    assert compression_options("none", None, np.dtype("u2")) == {}
    assert compression_options(False, None, np.dtype("u2")) == {}
    gz = compression_options("gzip", 9, np.dtype("u2"))
    assert gz == {"compression": "gzip", "compression_opts": 9, "shuffle": True}
    assert compression_options("zlib", None, np.dtype("u1"))["shuffle"] is False
    blosc = compression_options("blosc:zstd", 7, np.dtype("u2"))
    assert blosc["compression"] == 32001
    opts = tuple(blosc["compression_opts"])
    assert opts[4] == 7  # clevel
    assert opts[6] == 5  # compressor code of zstd
    for bad in ("lzo", "blosc:snappy-x", "blosc2:nope", "gzip:1"):
        with pytest.raises(ValueError, match="unknown compression"):
            compression_options(bad, None, np.dtype("u2"))
    with pytest.raises(TypeError):
        compression_options(3, None, np.dtype("u2"))


@pytest.mark.parametrize(
    ("names", "ndim", "expected"),
    [
        (["position", "shifts", "stack_3D"], 3, "stack_3D"),
        (["stack", "stack_4D"], 4, "stack_4D"),
        (["stack", "stack_4D"], 3, "stack"),
        (["a_stack", "stack_4D"], None, "a_stack"),
        (["a_stack", "stack", "stack_4D"], None, "stack"),
        (["a_stack", "z_stack"], None, "a_stack"),
        (["shifts", "traces"], 3, None),
    ],
)
def test_find_data_key(tmp_path, names, ndim, expected):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        for name in names:
            f[name] = np.zeros((1,) * (ndim or 2))
        f.create_group("stack_metadata")
        f.create_group("stack_3D_group")
    with open_h5(tmp_path / "x.h5") as f:
        assert find_data_key(f, ndim) == expected


def test_find_data_key_prefers_matching_rank(tmp_path):
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f["a_stack"] = np.zeros(3)
        f["b_stack"] = np.zeros((3, 3))
    with open_h5(tmp_path / "x.h5") as f:
        assert find_data_key(f, 2) == "b_stack"
        assert find_data_key(f, 1) == "a_stack"
        assert find_data_key(f, None) == "a_stack"


def test_open_h5_is_read_only_and_closes(tmp_path):
    write_block(tmp_path / "x.h5", np.zeros(3), key="stack_1D")
    with open_h5(tmp_path / "x.h5", locking=False) as f:
        assert f.mode == "r"
        handle = f
    assert not handle.id.valid

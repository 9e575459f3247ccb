"""The Blosc fast path: bit-identical to HDF5's own filter pipeline, and a clean fallback."""

from __future__ import annotations

import json
import os
from itertools import product
from pathlib import Path

import h5py
import hdf5plugin
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import splitds_dask as sd
from splitds_dask._errors import BlockError
from splitds_dask._storage.block_file import read_block_region, write_block
from splitds_dask._storage.blosc import (
    BLOSC_FILTER,
    ChunkError,
    ChunkMap,
    read_chunks,
    write_blosc_chunks,
)

FIXTURES = Path(__file__).parent / "fixtures" / "legacy"
DTYPES = ["u1", "i2", "u2", "i4", "u8", "f2", "f4", "f8", "c8"]
CNAMES = ["blosclz", "lz4", "lz4hc", "zlib", "zstd"]
SHUFFLES = [hdf5plugin.Blosc.NOSHUFFLE, hdf5plugin.Blosc.SHUFFLE, hdf5plugin.Blosc.BITSHUFFLE]
# Edge chunks on every axis; chunks of 500 items, as Blosc stores chunks under 128 bytes raw.
SHAPE, CHUNKS = (7, 45, 65), (2, 20, 25)
SELECTIONS = [
    (slice(0, 7, 1), slice(0, 45, 1), slice(0, 65, 1)),
    (slice(2, 4, 1), slice(0, 45, 1), slice(0, 65, 1)),
    (slice(3, 4, 1), slice(5, 40, 1), slice(20, 55, 1)),
    (slice(0, 7, 3), slice(1, 45, 7), slice(0, 65, 11)),
    (slice(6, 7, 1), slice(44, 45, 1), slice(64, 65, 1)),
]


def _compressible(shape, dtype, seed=0):
    """Values Blosc really compresses (random bits would be stored raw, skipping the codec)."""
    rng = np.random.default_rng(seed)
    ramp = np.indices(shape).sum(axis=0) % 50
    values = ramp + rng.integers(0, 3, size=shape)
    return (values % 2 == 0) if dtype == "bool" else values.astype(dtype)


def _compressed_chunks(path):
    with h5py.File(path, "r") as f:
        dsid = f["stack"].id
        return sum(dsid.get_chunk_info(i).filter_mask == 0 for i in range(dsid.get_num_chunks()))


def _h5py_write(path, data, *, chunks=CHUNKS, **filter_options):
    with h5py.File(path, "w") as f:
        f.create_dataset("stack", data=data, chunks=chunks, **filter_options)


def read_blosc_region(dset, source, out, dest):
    """The fast path on an open h5py dataset: False if it is not plain Blosc."""
    chunk_map = ChunkMap.of(dset, out.dtype)
    if chunk_map is None:
        return False
    return read_chunks(dset.file.id.get_vfd_handle(), chunk_map, source, out, dest)


def _fast(path, source, dtype):
    """``(handled, data)`` of the fast path for ``source``, into a fresh output array."""
    shape = tuple(len(range(s.start, s.stop, s.step)) for s in source)
    out = np.zeros(shape, dtype)
    with h5py.File(path, "r") as f:
        handled = read_blosc_region(f["stack"], source, out, tuple(slice(0, n) for n in shape))
    return handled, out


def _hdf5(path, source):
    with h5py.File(path, "r") as f:
        return f["stack"][source]


def _assert_bits_equal(a, b):
    assert a.shape == b.shape
    assert a.dtype == b.dtype
    assert a.tobytes() == b.tobytes()


@pytest.mark.parametrize("shuffle", SHUFFLES)
@pytest.mark.parametrize("cname", CNAMES)
@pytest.mark.parametrize("dtype", [*DTYPES, "bool"])
def test_read_is_bit_identical_to_the_hdf5_filter(tmp_path, dtype, cname, shuffle):
    a = _compressible(SHAPE, dtype, seed=7)
    path = tmp_path / "0000.h5"
    _h5py_write(path, a, **hdf5plugin.Blosc(cname=cname, clevel=5, shuffle=shuffle))
    assert _compressed_chunks(path) > 0
    for source in SELECTIONS:
        handled, fast = _fast(path, source, a.dtype)
        assert handled
        _assert_bits_equal(fast, _hdf5(path, source))
        _assert_bits_equal(fast, a[source])


@pytest.mark.parametrize("cname", CNAMES)
@pytest.mark.parametrize("dtype", [*DTYPES, "bool"])
def test_write_is_what_the_hdf5_filter_reads(tmp_path, dtype, cname):
    a = _compressible((23, 5, 300), dtype, seed=11)  # ~1 MiB HDF5 chunks, edge chunks on axis 0
    path = tmp_path / "0000.h5"
    write_block(path, a, key="stack", compression=f"blosc:{cname}")
    with h5py.File(path, "r") as f:
        dset = f["stack"]
        plist = dset.id.get_create_plist()
        assert [plist.get_filter(i)[0] for i in range(plist.get_nfilters())] == [BLOSC_FILTER]
        # Every chunk was written whole and compressed (no filter skipped).
        n_chunks = np.prod([-(-n // c) for n, c in zip(a.shape, dset.chunks, strict=True)])
        assert dset.id.get_num_chunks() == n_chunks
        assert all(dset.id.get_chunk_info(i).filter_mask == 0 for i in range(n_chunks))
        # h5py decompresses with hdf5plugin's filter, not with our code.
        back = dset[...]
    expected = a.view(np.uint8) if dtype == "bool" else a
    _assert_bits_equal(back.view(np.uint8) if dtype == "bool" else back, expected)


def test_write_returns_false_for_other_pipelines(tmp_path, random_array):
    a = random_array((4, 30), "u2")
    with h5py.File(tmp_path / "x.h5", "w") as f:
        gzip = f.create_dataset(
            "gzip", shape=a.shape, dtype=a.dtype, chunks=(2, 30), compression="gzip"
        )
        plain = f.create_dataset("plain", shape=a.shape, dtype=a.dtype)
        blosc = f.create_dataset(
            "blosc", shape=a.shape, dtype=a.dtype, chunks=(2, 30), **hdf5plugin.Blosc()
        )
        assert not write_blosc_chunks(gzip, a)
        assert not write_blosc_chunks(plain, a)
        assert not write_blosc_chunks(blosc, a.astype("i4"))  # another layout
        assert not write_blosc_chunks(blosc, a[:2])  # another shape
        assert blosc.id.get_num_chunks() == 0


@pytest.mark.parametrize(
    ("dtype", "options"),
    [
        ("u2", dict(hdf5plugin.Blosc(cname="snappy"))),  # a codec numcodecs' Blosc lacks
        ("u2", dict(hdf5plugin.Blosc2())),
        ("u2", {"compression": "gzip"}),
        ("u2", dict(hdf5plugin.Zstd())),
        ("u2", {**dict(hdf5plugin.Blosc()), "fletcher32": True}),  # Blosc is not alone
        (">u2", dict(hdf5plugin.Blosc())),  # byte-swapped: h5py converts
        ("u2", {"chunks": None}),  # contiguous
    ],
)
def test_other_pipelines_fall_back_to_h5py(tmp_path, dtype, options):
    a = _compressible(SHAPE, "u2", seed=5).astype(dtype)
    path = tmp_path / "0000.h5"
    options = {"chunks": CHUNKS, **options}
    with h5py.File(path, "w") as f:
        f.create_dataset("stack", data=a, **options)
    native = a.dtype.newbyteorder("=")
    for source in SELECTIONS:
        handled, _ = _fast(path, source, native)
        assert not handled
        out = np.empty(a[source].shape, native)
        read_block_region(
            path,
            key="stack",
            block=(0, 0, 0),
            dtype=native,
            extent=SHAPE,
            source=source,
            out=out,
            dest=tuple(slice(0, n) for n in out.shape),
        )
        np.testing.assert_array_equal(out, a[source])


def test_unwritten_chunks_fall_back_to_the_fill_value(tmp_path):
    path = tmp_path / "0000.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            "stack", shape=SHAPE, dtype="u2", chunks=CHUNKS, fillvalue=7, **hdf5plugin.Blosc()
        )
        dset[:2] = 1  # the other chunks are never allocated
    handled, _ = _fast(path, SELECTIONS[0], np.dtype("u2"))
    assert not handled
    handled, part = _fast(path, (slice(0, 2, 1), slice(0, 9, 1), slice(0, 13, 1)), np.dtype("u2"))
    assert handled
    assert (part == 1).all()


def test_chunks_stored_without_blosc_are_copied(tmp_path, random_array):
    """An optional filter that could not shrink a chunk leaves it raw, flagged in its mask."""
    a = random_array((4, 6), "i4")
    path = tmp_path / "0000.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset(
            "stack", shape=a.shape, dtype=a.dtype, chunks=(2, 6), **hdf5plugin.Blosc()
        )
        dset.id.write_direct_chunk((0, 0), np.ascontiguousarray(a[:2]).tobytes(), filter_mask=1)
        dset[2:] = a[2:]
    full = (slice(0, 4, 1), slice(0, 6, 1))
    handled, fast = _fast(path, full, a.dtype)
    assert handled
    _assert_bits_equal(fast, _hdf5(path, full))
    _assert_bits_equal(fast, a)


def _corrupt_first_chunk(path, at, data):
    with h5py.File(path, "r") as f:
        offset = f["stack"].id.get_chunk_info(0).byte_offset
    with open(path, "r+b") as f:
        f.seek(offset + at)
        f.write(data)


def _read_full(path, dtype, block=(7,)):
    """The whole block file, through read_block_region (fast path, cache or h5py)."""
    out = np.empty(SHAPE, dtype)
    full = SELECTIONS[0]
    read_block_region(
        path, key="stack", block=block, dtype=dtype, extent=SHAPE, source=full, out=out, dest=full
    )
    return out


def _first_chunk(path):
    with h5py.File(path, "r") as f:
        info = f["stack"].id.get_chunk_info(0)
    return info.byte_offset, info.size


@pytest.mark.parametrize(
    ("at", "data", "problem"),
    [
        (4, b"\x00\x00\x00\x01", "the Blosc header says 16777216 bytes, the chunk holds 2000"),
        (0, b"\x00" * 16, r"Blosc header version 0 \(Blosc 1 writes \(1, 2\)\)"),
        # HDF5's filter ignores the compressed size and reads on past the chunk's end.
        (12, b"\xff\xff\xff\x7f", "the Blosc header says 2147483647 compressed bytes, the index"),
    ],
    ids=["nbytes", "header", "cbytes"],
)
def test_damaged_chunks_are_errors_naming_the_file(tmp_path, at, data, problem):
    """A header that does not describe its chunk is never decompressed, here or by HDF5."""
    a = _compressible(SHAPE, "u2")
    path = tmp_path / "0007.h5"
    _h5py_write(path, a, **hdf5plugin.Blosc())
    assert _compressed_chunks(path) > 0
    offset, size = _first_chunk(path)
    _corrupt_first_chunk(path, at, data)
    with pytest.raises(ChunkError, match=problem):
        _fast(path, SELECTIONS[0], a.dtype)
    with pytest.raises(BlockError, match=problem) as info:
        _read_full(path, a.dtype)
    assert str(info.value).startswith(
        f"block (7,) ({path}): 'stack' chunk 0 ({size} bytes at offset {offset}): "
    )
    assert info.value.block == (7,)


@pytest.mark.parametrize(
    "name",
    sorted(
        entry["path"]
        for entry in json.loads((FIXTURES / "manifest.json").read_text())
        if entry.get("compression") == "blosc" or entry["name"].startswith("codec_blosc_")
    ),
)
@pytest.mark.filterwarnings("ignore::splitds_dask.IncompleteDatasetWarning")
def test_blocks_written_by_pytables_take_the_fast_path(name):
    """What the original package (flammkuchen/PyTables) wrote reads through the fast path."""
    ds = sd.SplitDataset(FIXTURES / name)
    handled = 0
    for path in ds.files.flat:
        with h5py.File(path, "r") as f:
            dset = f[ds.data_key]
            if dset.ndim != ds.ndim:
                continue
            full = tuple(slice(0, n, 1) for n in dset.shape)
            out = np.empty(dset.shape, ds.dtype)
            if read_blosc_region(dset, full, out, full):
                handled += 1
                _assert_bits_equal(out, dset[...].astype(ds.dtype, copy=False))
    assert handled > 0


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_region_matches_hdf5(tmp_path_factory, data):
    ndim = data.draw(st.integers(1, 3))
    shape = tuple(data.draw(st.integers(1, 12)) for _ in range(ndim))
    chunks = tuple(data.draw(st.integers(1, n)) for n in shape)
    dtype = data.draw(st.sampled_from(["u1", "u2", "f4", "c8"]))
    a = _compressible(shape, dtype)
    path = tmp_path_factory.mktemp("any") / "0000.h5"
    _h5py_write(path, a, chunks=chunks, **hdf5plugin.Blosc(cname="lz4"))
    source = []
    for n in shape:
        start = data.draw(st.integers(0, n - 1))
        stop = data.draw(st.integers(start + 1, n))
        source.append(slice(start, stop, data.draw(st.integers(1, 4))))
    source = tuple(source)
    handled, fast = _fast(path, source, a.dtype)
    assert handled
    _assert_bits_equal(fast, _hdf5(path, source))


def test_output_offsets_are_respected(tmp_path, random_array):
    """``dest`` places the region inside a larger output, leaving the rest untouched."""
    a = random_array(SHAPE, "u2")
    path = tmp_path / "0000.h5"
    _h5py_write(path, a, **hdf5plugin.Blosc())
    out = np.full((10, 50, 70), 9, "u2")
    dest = (slice(2, 9), slice(1, 46), slice(5, 70))
    with h5py.File(path, "r") as f:
        assert read_blosc_region(f["stack"], SELECTIONS[0], out, dest)
    expected = np.full_like(out, 9)
    expected[dest] = a
    _assert_bits_equal(out, expected)


@pytest.mark.parametrize("block", list(product([1, 3], [4, 9])))
def test_dataset_reads_equal_through_both_paths(tmp_path, random_array, block):
    """A whole dataset: the facade (parallel blocks, fast path) equals h5py block by block."""
    a = random_array((12, 9, 6), "u2")
    sd.to_split_dataset(a, tmp_path / "ds", block_shape=block)
    ds = sd.SplitDataset(tmp_path / "ds")
    _assert_bits_equal(ds[:], a)
    _assert_bits_equal(ds[::2, 1:8:3], a[::2, 1:8:3])
    _assert_bits_equal(ds.to_dask().compute(), a)


@pytest.mark.parametrize("parallel", [False, True], ids=["one thread", "pool"])
@pytest.mark.parametrize(("gap", "run"), [(0, 1), (0, 1 << 26), (1 << 16, 3000)])
def test_grouped_reads_of_nearby_chunks(tmp_path, monkeypatch, gap, run, parallel):
    """Chunks fetched one read each, all in one read, or in runs of a few, by one thread or
    shared among the pool's: the same bytes."""
    from splitds_dask._storage import blosc as _blosc

    monkeypatch.setattr(_blosc, "_MAX_GAP", gap)
    monkeypatch.setattr(_blosc, "_MAX_RUN", run)
    monkeypatch.setattr(_blosc, "_PARALLEL_BYTES", 0 if parallel else 1 << 40)
    a = _compressible(SHAPE, "u2")
    path = tmp_path / "0000.h5"
    _h5py_write(path, a, **hdf5plugin.Blosc())
    for source in SELECTIONS:
        handled, fast = _fast(path, source, a.dtype)
        assert handled
        _assert_bits_equal(fast, a[source])


# --- chunk maps kept per file version ----------------------------------------------------------


def test_a_known_file_is_read_without_hdf5(tmp_path, monkeypatch):
    from splitds_dask._storage import block_file as _blockio

    a = _compressible(SHAPE, "u2")
    path = tmp_path / "0000.h5"
    _h5py_write(path, a, **hdf5plugin.Blosc())
    _assert_bits_equal(_read_full(path, np.dtype("u2")), a)

    def no_hdf5(*args, **kwargs):
        raise AssertionError("opened with HDF5")

    monkeypatch.setattr(_blockio, "open_block", no_hdf5)
    _assert_bits_equal(_read_full(path, np.dtype("u2")), a)


@pytest.mark.parametrize("how", ["replaced", "rewritten in place"])
def test_a_changed_file_gets_a_new_map(tmp_path, how):
    a = _compressible(SHAPE, "u2")
    b = (a + 1).astype("u2")
    path = tmp_path / "0000.h5"
    _h5py_write(path, a, **hdf5plugin.Blosc())
    _assert_bits_equal(_read_full(path, np.dtype("u2")), a)
    if how == "replaced":
        _h5py_write(tmp_path / "new.h5", b, **hdf5plugin.Blosc())
        (tmp_path / "new.h5").replace(path)
    else:
        before = path.stat()
        with h5py.File(path, "r+") as f:
            f["stack"][...] = b
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000))
    _assert_bits_equal(_read_full(path, np.dtype("u2")), b)


def test_chunk_map_cache_is_bounded():
    from splitds_dask._storage.blosc import _ChunkMapCache

    def fake(n_chunks):
        zeros = np.zeros(n_chunks, np.int64)
        return ChunkMap(
            "stack",
            (n_chunks,),
            np.dtype("u2"),
            np.dtype("u2"),
            (1,),
            zeros,
            zeros,
            zeros.astype(np.uint32),
        )

    cache = _ChunkMapCache(max_files=3, max_chunks=10)
    for i in range(5):
        cache.put(("f", i), fake(2))
    assert [cache.get(("f", i)) is not None for i in range(5)] == [False, False, True, True, True]
    cache.put(("big",), fake(9))  # over the chunk bound: older maps go first
    assert cache.get(("big",)) is not None
    assert all(cache.get(("f", i)) is None for i in range(5))


def test_a_damaged_chunk_in_a_parallel_read_is_an_error(tmp_path, monkeypatch):
    """One pool thread meets a damaged chunk: the whole read fails, naming the chunk."""
    from splitds_dask._storage import blosc as _blosc

    monkeypatch.setattr(_blosc, "_PARALLEL_BYTES", 0)
    a = _compressible(SHAPE, "u2")
    path = tmp_path / "0007.h5"
    _h5py_write(path, a, **hdf5plugin.Blosc())
    offset, size = _first_chunk(path)
    _corrupt_first_chunk(path, 0, b"\x00" * 16)
    with pytest.raises(ChunkError, match="Blosc header version 0"):
        _fast(path, SELECTIONS[0], a.dtype)
    with pytest.raises(BlockError, match=r"0007\.h5") as info:
        _read_full(path, a.dtype)
    assert f"'stack' chunk 0 ({size} bytes at offset {offset}): Blosc header version 0" in str(
        info.value
    )

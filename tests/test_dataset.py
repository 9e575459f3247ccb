"""SplitDataset on real folders: attributes, laziness, read-only behaviour, variants, errors."""

from __future__ import annotations

import json
import pickle
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest

import splitds_dask as sd

DTYPES = ["bool", "u1", "i2", "u2", "i4", "u8", "f2", "f4", "f8", "c8"]


def _corrupt_chunks(path: Path, key: str, keep: set[int]) -> int:
    """Overwrite the stored bytes of every chunk of ``key`` except those in ``keep``."""
    with h5py.File(path, "r") as f:
        dsid = f[key].id
        spans = [dsid.get_chunk_info(i) for i in range(dsid.get_num_chunks())]
    with open(path, "r+b") as f:
        for i, info in enumerate(spans):
            if i not in keep:
                f.seek(info.byte_offset)
                f.write(b"\xa5" * info.size)
    return len(spans)


# --- attributes ------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES)
def test_attributes(tmp_path, write_plain, random_array, dtype):
    a = random_array((7, 4, 5), dtype)
    write_plain(
        tmp_path,
        a,
        (3, 2),
        metadata={
            "shape_full": [7, 4, 5],
            "shape_block": [3, 2, 5],
            "resolution": [2, 0.5, 0.5],
            "axis_order": "zyx",
            "padding": [0, 0, 0],
        },
    )
    ds = sd.SplitDataset(str(tmp_path))
    assert ds.shape == (7, 4, 5)
    assert all(type(n) is int for n in ds.shape)
    assert ds.dtype == np.dtype(dtype)
    assert ds.ndim == 3
    assert ds.size == a.size
    assert ds.nbytes == a.nbytes
    assert ds.shape_block == (3, 2, 5)
    assert isinstance(ds.shape_block, tuple)
    assert tuple(ds.shape_full) == (7, 4, 5)
    assert ds.root == tmp_path
    assert isinstance(ds.root, Path)
    assert ds.resolution == (2.0, 0.5, 0.5)
    assert ds.data_key == "stack_3D"
    assert tuple(ds.padding) == (0, 0, 0)
    assert ds.metadata == {
        "shape_full": [7, 4, 5],
        "shape_block": [3, 2, 5],
        "resolution": [2, 0.5, 0.5],
        "axis_order": "zyx",
        "padding": [0, 0, 0],
    }
    assert list(ds.metadata) == ["shape_full", "shape_block", "resolution", "axis_order", "padding"]
    assert len(ds) == 7
    assert ds.chunks == ((3, 3, 1), (2, 2), (5,))
    files = ds.files
    assert files.dtype == object
    assert files.shape == (3, 2, 1)
    assert all(isinstance(p, Path) for p in files.flat)
    assert [p.name for p in files.flat] == [f"{i:04d}.h5" for i in range(6)]
    assert files[2, 1, 0] == tmp_path / "0005.h5"
    files[0, 0, 0] = None  # a copy: the dataset is unaffected
    assert ds.files[0, 0, 0] == tmp_path / "0000.h5"
    np.testing.assert_array_equal(np.asarray(ds), a, strict=True)
    np.testing.assert_array_equal(np.array(ds), a, strict=True)
    np.testing.assert_array_equal(np.asarray(ds, dtype="c16"), a.astype("c16"), strict=True)
    assert str(tmp_path) in repr(ds)
    assert ds.dask is ds.to_dask()


def test_resolution_default_and_metadata_copy(tmp_path, write_plain, random_array):
    write_plain(tmp_path, random_array((4, 3), "u1"), (2,))
    ds = sd.SplitDataset(tmp_path)
    # What split_dataset 0.4.4 reports without the key, whatever the number of axes
    # (tests/test_compat_resolution.py runs it); the spacing per axis is ds.scale.
    assert ds.resolution == (1, 1, 1)
    assert ds.scale == (1.0, 1.0)
    ds.metadata["shape_full"] = [1]
    assert ds.metadata["shape_full"] == [4, 3]


@pytest.mark.parametrize("key", ["stack_3D", "stack", "a_stack"])
def test_data_key_variants(tmp_path, random_array, key):
    a = random_array((4, 3, 2), "i2")
    for i in range(2):
        with h5py.File(tmp_path / f"{i:04d}.h5", "w") as f:
            f["shifts"] = np.zeros((2, 2))
            f["position"] = np.zeros(3)
            f.create_group("stack_metadata")
            f[key] = a[2 * i : 2 * i + 2]
    (tmp_path / "stack_metadata.json").write_text('{"shape_full": [4, 3, 2], "shape_block": [2]}')
    ds = sd.SplitDataset(tmp_path)
    assert ds.data_key == key
    np.testing.assert_array_equal(ds[...], a, strict=True)


def test_pickle_round_trip(tmp_path, write_plain, random_array):
    a = random_array((40, 3, 5), "i4")
    write_plain(tmp_path, a, (4, 1))
    ds = sd.SplitDataset(tmp_path)
    ds.to_dask()
    ds[3]
    blob = pickle.dumps(ds)
    assert len(blob) < 8000  # paths and geometry only: no handles, no graph, no data
    assert b"HDF" not in blob
    back = pickle.loads(blob)
    assert back.shape == ds.shape
    assert back.dtype == ds.dtype
    assert back.root == ds.root
    assert (back.files == ds.files).all()
    np.testing.assert_array_equal(back[5:9, 1], a[5:9, 1], strict=True)
    np.testing.assert_array_equal(back.to_dask().sum(axis=0).compute(), a.sum(axis=0))
    # A dataset never read from pickles as well.
    fresh = pickle.loads(pickle.dumps(sd.SplitDataset(tmp_path)))
    np.testing.assert_array_equal(fresh[...], a, strict=True)


@pytest.mark.parametrize("locking", [None, False, True])
def test_locking_pass_through(tmp_path, write_plain, random_array, locking):
    a = random_array((6, 4), "u2")
    write_plain(tmp_path, a, (2,))
    ds = sd.SplitDataset(tmp_path, locking=locking)
    np.testing.assert_array_equal(ds[...], a, strict=True)
    np.testing.assert_array_equal(ds.to_dask().compute(), a, strict=True)


# --- laziness and read-only behaviour --------------------------------------------------------


def test_opening_reads_only_first_and_last_row_files(tmp_path, write_plain, random_array):
    a = random_array((9, 4, 3), "i4")
    paths = write_plain(tmp_path, a, (3, 2))  # grid (3, 2): rows of 2 files
    first, last_row_first = paths[0], paths[4]
    for p in paths:
        if p not in (first, last_row_first):
            p.write_bytes(b"not an hdf5 file" * 10)
    ds = sd.SplitDataset(tmp_path)
    assert ds.shape == (9, 4, 3)
    assert ds.dtype == np.dtype("i4")
    np.testing.assert_array_equal(ds[0:3, 0:2], a[0:3, 0:2], strict=True)
    np.testing.assert_array_equal(ds[6:, 0:2], a[6:, 0:2], strict=True)
    ds.to_dask()  # building the graph reads nothing either
    for block, path in (((0, 1, 0), paths[1]), ((1, 0, 0), paths[2]), ((2, 1, 0), paths[5])):
        region = tuple(slice(k * b, k * b + 1) for k, b in zip(block, (3, 2, 3), strict=True))
        with pytest.raises(sd.BlockError) as info:
            ds[region]
        assert str(path) in str(info.value)
        assert info.value.path == str(path)
        assert info.value.block == block
    with pytest.raises(sd.BlockError, match=r"0003\.h5"):
        ds.to_dask()[4:6, 2:].compute()


def test_open_and_read_never_write_to_the_folder(tmp_path, write_plain, random_array, snapshot):
    a = random_array((8, 6), "f8")
    write_plain(tmp_path, a, (3, 4), compression="gzip")
    before = snapshot(tmp_path)
    ds = sd.SplitDataset(tmp_path)
    ds[...]
    ds[::-2, [0, 5]]
    ds.to_dask().mean(axis=0).compute()
    pickle.loads(pickle.dumps(ds))[1]
    assert snapshot(tmp_path) == before


def test_reads_only_the_selected_part_of_a_block(tmp_path, random_array):
    """Chunks of a block other than the selected time point are corrupt: only they fail."""
    a = random_array((40, 3, 5), "u2")
    paths = []
    for i in range(2):
        path = tmp_path / f"{i:04d}.h5"
        with h5py.File(path, "w") as f:
            f.create_dataset(
                "stack_3D", data=a[20 * i : 20 * i + 20], chunks=(1, 3, 5), compression="gzip"
            )
        paths.append(path)
    (tmp_path / "stack_metadata.json").write_text('{"shape_full": [40, 3, 5], "shape_block": [20]}')
    assert _corrupt_chunks(paths[0], "stack_3D", keep={5}) == 20
    _corrupt_chunks(paths[1], "stack_3D", keep={7, 9})
    ds = sd.SplitDataset(tmp_path)
    np.testing.assert_array_equal(ds[5], a[5], strict=True)
    np.testing.assert_array_equal(ds[5, 1:, ::2], a[5, 1:, ::2], strict=True)
    np.testing.assert_array_equal(ds[[27, 5]], a[[27, 5]], strict=True)
    np.testing.assert_array_equal(ds[[29], 1:], a[[29], 1:], strict=True)
    np.testing.assert_array_equal(ds[27:30:2], a[27:30:2], strict=True)
    np.testing.assert_array_equal(ds[-11], a[29], strict=True)
    with pytest.raises(sd.BlockError, match=r"0000\.h5"):
        ds[4]
    with pytest.raises(sd.BlockError):
        ds[...]
    with pytest.raises(sd.BlockError, match=r"0001\.h5"):
        ds[27:30]  # 28 is corrupt


# --- variants of real datasets ---------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["u2", "f4", "bool"])
@pytest.mark.parametrize(
    ("shape", "block", "padding"),
    [
        ((10,), (3,), (1,)),
        ((9, 4), (3, 2), (1, 1)),
        ((11, 5, 3), (4, 5), (2, 0, 0)),
        ((8, 3), (4, 3), (2, 0)),
    ],
)
def test_padded_blocks(tmp_path, write_plain, random_array, dtype, shape, block, padding):
    """Overlapping block files (padding in the json): the array is read back exactly."""
    a = random_array(shape, dtype)
    paths = write_plain(tmp_path, a, block, padding=padding)
    with h5py.File(paths[0], "r") as f:  # the files really overlap
        assert f[f"stack_{len(shape)}D"].shape[0] == min(shape[0], block[0] + padding[0])
    ds = sd.SplitDataset(tmp_path)
    assert ds.padding == padding
    assert ds.shape == shape
    np.testing.assert_array_equal(ds[...], a, strict=True)
    np.testing.assert_array_equal(ds.to_dask().compute(), a, strict=True)
    np.testing.assert_array_equal(ds[::-1], a[::-1], strict=True)
    # Each chunk is the block's own part, not the overlap.
    assert ds.chunks[0][0] == block[0]


def test_two_channel_files(tmp_path, random_array):
    """brunoise 2020-11..2021-07: files hold (n_t, 2, h, w), blocks are (n_t, 1, h, w)."""
    n_t, planes, h, w = 6, 3, 4, 5
    both = random_array((n_t, planes, 2, h, w), "f4")
    for z in range(planes):
        with h5py.File(tmp_path / f"{z:04d}.h5", "w") as f:
            f["stack_4D"] = both[:, z]
    (tmp_path / "stack_metadata.json").write_text(
        json.dumps(
            {
                "shape_full": [n_t, planes, h, w],
                "shape_block": [n_t, 1, h, w],
                "crop_start": [0] * 4,
                "crop_end": [0] * 4,
                "padding": [0] * 4,
            }
        )
    )
    ds = sd.SplitDataset(tmp_path)
    expected = both[:, :, 0]
    assert ds.shape == expected.shape
    np.testing.assert_array_equal(ds[...], expected, strict=True)
    np.testing.assert_array_equal(ds.to_dask().compute(), expected, strict=True)
    np.testing.assert_array_equal(ds[:, 2, 1], expected[:, 2, 1], strict=True)


def test_block_longer_than_the_data(tmp_path, random_array):
    """sashimi: acquisition shorter than one chunk; shape_block[0] = 20 > shape_full[0] = 7."""
    a = random_array((7, 2, 4, 4), "u2")
    for z in range(2):
        with h5py.File(tmp_path / f"{z:04d}.h5", "w") as f:
            f["stack_4D"] = a[:, z : z + 1]
    (tmp_path / "stack_metadata.json").write_text(
        json.dumps(
            {
                "shape_full": [7, 2, 4, 4],
                "shape_block": [20, 1, 4, 4],
                "crop": [0, 0, None, None],
                "padding": [0, 0, 0, 0],
                "voxel_size": [1.0, 0.5, 0.5],
            }
        )
    )
    ds = sd.SplitDataset(tmp_path)
    assert ds.shape_block == (7, 1, 4, 4)
    np.testing.assert_array_equal(ds[...], a, strict=True)


@pytest.mark.parametrize(
    ("fmt", "first", "prefix"),
    [
        ("{:04d}.h5", 1, None),
        ("{:03d}.h5", 0, None),
        ("stack_{:04d}.h5", 0, "stack"),
        ("stack_{:04d}.h5", 0, None),
    ],
)
def test_file_name_variants(tmp_path, write_plain, random_array, fmt, first, prefix):
    a = random_array((10, 6), "i2")
    write_plain(tmp_path, a, (3, 4), name=fmt, first=first)
    (tmp_path / "shifts_2.h5").write_bytes(b"")
    (tmp_path / "time.h5").write_bytes(b"")
    ds = sd.SplitDataset(tmp_path, prefix=prefix) if prefix else sd.SplitDataset(tmp_path)
    assert [p.name for p in ds.files.flat] == [fmt.format(i + first) for i in range(8)]
    np.testing.assert_array_equal(ds[...], a, strict=True)


@pytest.mark.slow
def test_more_than_9999_blocks_ordered_by_number(tmp_path):
    """%04d names beyond 9999 (10000.h5 sorts before 9999.h5 as text)."""
    n = 10_003
    a = np.arange(n, dtype=np.int32)
    for i in range(n):
        with h5py.File(tmp_path / f"{i:04d}.h5", "w") as f:
            f["stack_1D"] = a[i : i + 1]
    (tmp_path / "stack_metadata.json").write_text(
        json.dumps({"shape_full": [n], "shape_block": [1]})
    )
    ds = sd.SplitDataset(tmp_path)
    assert ds.files[10_000].name == "10000.h5"
    np.testing.assert_array_equal(ds[9995:], a[9995:], strict=True)
    np.testing.assert_array_equal(ds.to_dask()[9990:].compute(), a[9990:], strict=True)


def test_legacy_metadata_inside_block_files(tmp_path, random_array, snapshot):
    """Pre-json datasets: /stack_metadata/{full_size,block_size} groups with i0.. attributes."""
    a = random_array((6, 4, 3), "u1")
    for i in range(2):
        with h5py.File(tmp_path / f"{i:04d}.h5", "w") as f:
            f["stack_3D"] = a[3 * i : 3 * i + 3]
            group = f.create_group("stack_metadata")
            for name, values in (("full_size", (6, 4, 3)), ("block_size", (3, 4, 3))):
                sub = group.create_group(name)
                for j, v in enumerate(values):
                    sub.attrs[f"i{j}"] = np.int64(v)
            files = group.create_group("files")
            files.attrs["i0"] = np.bytes_(b"0000.h5")
    before = snapshot(tmp_path)
    ds = sd.SplitDataset(tmp_path)
    assert ds.shape == (6, 4, 3)
    assert ds.shape_block == (3, 4, 3)
    np.testing.assert_array_equal(ds[...], a, strict=True)
    assert snapshot(tmp_path) == before  # the original wrote a json here; we never write


def test_mixed_dtypes_are_an_error_not_a_cast(tmp_path, random_array):
    a = random_array((4, 3), "f4")
    with h5py.File(tmp_path / "0000.h5", "w") as f:
        f["stack_2D"] = a[:2]
    with h5py.File(tmp_path / "0001.h5", "w") as f:
        f["stack_2D"] = a[2:].astype("f8")
    (tmp_path / "stack_metadata.json").write_text('{"shape_full": [4, 3], "shape_block": [2]}')
    ds = sd.SplitDataset(tmp_path)
    assert ds.dtype == np.float32
    np.testing.assert_array_equal(ds[:2], a[:2], strict=True)
    with pytest.raises(sd.BlockError, match=r"0001\.h5") as info:
        ds[1:3]
    assert "float64" in str(info.value)


def test_files_without_stack_key_open_lazily(tmp_path):
    """fimpy trace outputs: no stack key at all; opening works, reading names the problem."""
    for i in range(2):
        with h5py.File(tmp_path / f"{i:03d}.h5", "w") as f:
            f["traces"] = np.zeros((5, 7))
            f["coords"] = np.zeros((5, 3))
    (tmp_path / "stack_metadata.json").write_text(
        json.dumps(
            {
                "crop_end": [0, 0],
                "crop_start": [0, 0],
                "files": ["000.h5", "001.h5"],
                "padding": [0, 0],
                "shape_block": [10, 20],
                "shape_full": [20, 20],
            }
        )
    )
    ds = sd.SplitDataset(tmp_path)
    assert ds.shape == (20, 20)
    assert [p.name for p in ds.files.flat] == ["000.h5", "001.h5"]
    with pytest.raises(sd.BlockError, match=r"000\.h5") as info:
        _ = ds.dtype
    assert "traces" in str(info.value)


def test_missing_block_file_named_on_read(tmp_path, write_plain, random_array):
    a = random_array((9, 4), "u2")
    paths = write_plain(tmp_path, a, (3, 2))
    paths[3].unlink()  # a gap in the middle: block (1, 1)
    ds = sd.SplitDataset(tmp_path)
    np.testing.assert_array_equal(ds[:, :2], a[:, :2], strict=True)
    with pytest.raises(sd.BlockError, match=r"0003\.h5") as info:
        ds[4, 3]
    assert "missing" in str(info.value)
    assert info.value.block == (1, 1)


def test_more_files_than_declared_is_metadata_error(tmp_path, write_plain, random_array):
    a = random_array((9, 4), "u2")
    write_plain(tmp_path, a, (3, 2), metadata={"shape_full": [6, 4], "shape_block": [3, 2]})
    with pytest.raises(sd.MetadataError, match=r"stack_metadata\.json"):
        sd.SplitDataset(tmp_path)


# --- early stop ------------------------------------------------------------------------------


def _declared(folder, shape, block):
    (folder / "stack_metadata.json").write_text(
        json.dumps(
            {
                "shape_full": list(shape),
                "shape_block": list(block),
                "crop": [0, 0, None, None],
                "padding": [0] * len(shape),
                "voxel_size": [1, 1, 1],
            }
        )
    )


@pytest.mark.parametrize("dtype", ["u2", "f4", "bool"])
@pytest.mark.parametrize(
    ("stop", "expected_t"),
    [
        (40, 40),  # complete
        (35, 35),  # inside the last chunk: short last row
        (30, 30),  # on a chunk boundary: one row of files fewer
        (21, 21),  # two rows fewer, short last file
        (10, 10),  # only the first row
        (3, 3),
    ],
)
def test_early_stop(tmp_path, random_array, dtype, stop, expected_t):
    """sashimi: json declares 40 volumes, files hold ``stop`` (fewer files and/or short ones)."""
    n_t, planes, h, w = 40, 2, 3, 4
    a = random_array((stop, planes, h, w), dtype)
    for row, t0 in enumerate(range(0, stop, 10)):
        for z in range(planes):
            with h5py.File(tmp_path / f"{row * planes + z:04d}.h5", "w") as f:
                f["stack_4D"] = a[t0 : t0 + 10, z : z + 1]
    _declared(tmp_path, (n_t, planes, h, w), (10, 1, h, w))
    if expected_t == n_t:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            ds = sd.SplitDataset(tmp_path)
    else:
        with pytest.warns(sd.IncompleteDatasetWarning) as record:
            ds = sd.SplitDataset(tmp_path)
        message = str(record[0].message)
        assert str((n_t, planes, h, w)) in message
        assert str((expected_t, planes, h, w)) in message
    assert ds.shape == (expected_t, planes, h, w)
    assert len(ds) == expected_t
    assert sum(ds.chunks[0]) == expected_t
    # Every value is read from the files: no uninitialised memory anywhere.
    np.testing.assert_array_equal(ds[...], a, strict=True)
    np.testing.assert_array_equal(ds.to_dask().compute(), a, strict=True)
    np.testing.assert_array_equal(ds[-1], a[-1], strict=True)
    with pytest.raises(IndexError):
        ds[expected_t]


def test_early_stop_partial_last_row_of_files(tmp_path, random_array):
    """Only some plane files of the last chunk were written: the incomplete row is dropped."""
    a = random_array((30, 3, 2, 2), "i2")
    names = 0
    for t0 in range(0, 30, 10):
        for z in range(3):
            if t0 == 20 and z == 2:
                break
            with h5py.File(tmp_path / f"{names:04d}.h5", "w") as f:
                f["stack_4D"] = a[t0 : t0 + 10, z : z + 1]
            names += 1
    _declared(tmp_path, (30, 3, 2, 2), (10, 1, 2, 2))
    with pytest.warns(sd.IncompleteDatasetWarning, match=r"\(20, 3, 2, 2\)"):
        ds = sd.SplitDataset(tmp_path)
    assert ds.shape == (20, 3, 2, 2)
    np.testing.assert_array_equal(ds[...], a[:20], strict=True)


def test_short_file_elsewhere_is_block_error(tmp_path, random_array):
    """A short file that is not the first of the last row cannot cut the shape: reading it is
    an error naming it, never garbage."""
    a = random_array((20, 2, 3), "u2")
    with h5py.File(tmp_path / "0000.h5", "w") as f:
        f["stack_3D"] = a[:10, :1]
    with h5py.File(tmp_path / "0001.h5", "w") as f:
        f["stack_3D"] = a[:7, 1:]  # short
    with h5py.File(tmp_path / "0002.h5", "w") as f:
        f["stack_3D"] = a[10:, :1]
    with h5py.File(tmp_path / "0003.h5", "w") as f:
        f["stack_3D"] = a[10:, 1:]
    (tmp_path / "stack_metadata.json").write_text(
        '{"shape_full": [20, 2, 3], "shape_block": [10, 1, 3]}'
    )
    ds = sd.SplitDataset(tmp_path)
    np.testing.assert_array_equal(ds[:, 0], a[:, 0], strict=True)
    np.testing.assert_array_equal(ds[10:, 1], a[10:, 1], strict=True)
    with pytest.raises(sd.BlockError, match=r"0001\.h5") as info:
        ds[8]
    assert "(7, 1, 3)" in str(info.value)


# --- not a dataset ---------------------------------------------------------------------------


def _not_a_dataset_cases(tmp_path):
    (tmp_path / "file.txt").write_text("x")
    (tmp_path / "empty").mkdir()
    (tmp_path / "txt").mkdir()
    (tmp_path / "txt" / "notes.txt").write_text("x")
    (tmp_path / "json-only").mkdir()
    (tmp_path / "json-only" / "stack_metadata.json").write_text(
        '{"shape_full": [2], "shape_block": [1]}'
    )
    (tmp_path / "h5-no-metadata").mkdir()
    with h5py.File(tmp_path / "h5-no-metadata" / "0000.h5", "w") as f:
        f["stack_1D"] = np.zeros(3)
    (tmp_path / "parent").mkdir()  # brunoise: <exp>/original holds green/ and red/ only
    for channel in ("green", "red"):
        (tmp_path / "parent" / channel).mkdir()
        (tmp_path / "parent" / channel / "0000.h5").write_bytes(b"")


@pytest.mark.parametrize(
    "name", ["missing", "file.txt", "empty", "txt", "json-only", "h5-no-metadata", "parent"]
)
def test_not_a_split_dataset(tmp_path, snapshot, name):
    _not_a_dataset_cases(tmp_path)
    before = snapshot(tmp_path)
    with pytest.raises(sd.NotASplitDatasetError) as info:
        sd.SplitDataset(tmp_path / name)
    assert isinstance(info.value, ValueError)
    assert str(tmp_path / name) in str(info.value)
    assert snapshot(tmp_path) == before


@pytest.mark.parametrize("content", [b"", b"garbage" * 30])
def test_unreadable_first_block_named_on_dtype(tmp_path, write_plain, random_array, content):
    paths = write_plain(tmp_path, random_array((6, 4), "u2"), (3, 2))
    paths[0].write_bytes(content)
    ds = sd.SplitDataset(tmp_path)  # opening does not need block 0
    assert ds.shape == (6, 4)
    with pytest.raises(sd.BlockError) as info:
        _ = ds.dtype
    assert str(paths[0]) in str(info.value)
    assert info.value.path == str(paths[0])
    assert info.value.block == (0, 0)
    with pytest.raises(sd.BlockError, match=r"0000\.h5"):
        ds.to_dask()


def test_relative_root_survives_chdir(tmp_path, write_plain, random_array, monkeypatch):
    """Reads (and the dask graph, pickled to other processes) do not depend on the cwd."""
    a = random_array((6, 4), "i2")
    write_plain(tmp_path / "here" / "ds", a, (2,))
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    ds = sd.SplitDataset("ds")
    assert ds.root == Path("ds")  # as given, like the original
    x = ds.to_dask()
    blob = pickle.dumps(ds)
    monkeypatch.chdir(tmp_path / "elsewhere")
    np.testing.assert_array_equal(ds[...], a, strict=True)
    np.testing.assert_array_equal(x.compute(scheduler="sync"), a, strict=True)
    np.testing.assert_array_equal(pickle.loads(blob)[1:3], a[1:3], strict=True)


def test_a_block_committed_while_opening_is_seen(tmp_path, write_plain, random_array, monkeypatch):
    """Metadata read just before a writer committed a block, listing just after: read again."""
    from splitds_dask import _dataset
    from splitds_dask._format.metadata import parse_metadata

    a = random_array((12, 3), "u2")
    write_plain(tmp_path, a, (3,))  # 4 blocks on disk, metadata for 4
    real = _dataset.read_metadata_json
    stale = parse_metadata({"shape_full": [9, 3], "shape_block": [3, 3]})  # before block 3
    reads = []

    def racing(path):
        reads.append(path)
        return stale if len(reads) == 1 else real(path)

    monkeypatch.setattr(_dataset, "read_metadata_json", racing)
    ds = sd.SplitDataset(tmp_path)
    assert len(reads) == 2
    np.testing.assert_array_equal(ds[...], a, strict=True)


# --- data outside the folder, a replaced folder (more in test_containment.py) --------------------


def test_allow_external_is_keyword_only_and_off_by_default(tmp_path, write_plain, random_array):
    a = random_array((4, 3), "u2")
    write_plain(tmp_path / "d", a, (2,))
    ds = sd.SplitDataset(tmp_path / "d")
    assert ds.allow_external is False
    assert ds.reader.allow_external is False
    assert sd.SplitDataset(tmp_path / "d", allow_external=True).reader.allow_external is True
    with pytest.raises(TypeError):
        sd.SplitDataset(tmp_path / "d", None, None, True)  # type: ignore[misc]


def test_pickled_dataset_keeps_opt_in_and_folder(tmp_path, write_plain, random_array):
    a = random_array((4, 3), "u2")
    write_plain(tmp_path / "d", a, (2,))
    ds = pickle.loads(pickle.dumps(sd.SplitDataset(tmp_path / "d", allow_external=True)))
    assert ds.allow_external is True
    np.testing.assert_array_equal(ds[...], a)
    # The folder recorded at opening travels with the pickle: the copy sees the replacement.
    (tmp_path / "d").rename(tmp_path / "old")
    write_plain(tmp_path / "d", a + 1, (2,))
    with pytest.raises(sd.SplitDatasetError, match="was replaced since it was opened"):
        ds[...]
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "d")[...], a + 1)


def test_block_file_linked_outside_is_refused(tmp_path, write_plain, random_array):
    a = random_array((4, 3), "u2")
    write_plain(tmp_path / "d", a, (2,))
    write_plain(tmp_path / "other", a + 1, (2,))
    link = tmp_path / "d" / "0001.h5"
    link.unlink()
    link.symlink_to(tmp_path / "other" / "0001.h5")
    with pytest.raises(sd.BlockError, match=r"block \(1, 0\) .*0001\.h5\): the file is a link"):
        sd.SplitDataset(tmp_path / "d")[...]
    expected = np.concatenate([a[:2], a[2:] + 1])
    np.testing.assert_array_equal(
        sd.SplitDataset(tmp_path / "d", allow_external=True)[...], expected
    )

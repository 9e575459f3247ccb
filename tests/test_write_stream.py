"""SplitDatasetWriter: frames appended one by one or in batches, compared with numpy, with
``to_split_dataset``'s output and with what the original package reads."""

from __future__ import annotations

import errno
import json
import os
import shutil
import warnings
from itertools import pairwise
from pathlib import Path

import dask.array
import h5py
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import splitds_dask as sd
from tests.helpers.oldpkg import run_old_checked


def _write(path: Path, data: np.ndarray, block_length: int, batches: list[int], **kw) -> None:
    with sd.SplitDatasetWriter(
        path, frame_shape=data.shape[1:], dtype=data.dtype, block_length=block_length, **kw
    ) as writer:
        start = 0
        for n in batches:
            # n == 0 appends one bare frame (no batch axis)
            writer.append(data[start] if n == 0 else data[start : start + n])
            start += max(n, 1)
        writer.append(data[start:])
        assert writer.n_frames == len(data)


@pytest.mark.parametrize(
    ("dtype", "n_frames", "block_length", "batches"),
    [
        ("uint16", 53, 10, [7, 7, 7, 0, 0]),
        ("uint16", 20, 10, [10]),  # exact multiple: no short block
        ("uint16", 3, 10, [0, 0]),  # fewer frames than one block
        ("float32", 31, 4, [31]),  # one append spanning many blocks
        ("int8", 11, 1, [0, 5]),
        ("bool", 9, 2, [3]),
    ],
)
def test_frames_read_back_exactly(
    tmp_path: Path, random_array, dtype: str, n_frames: int, block_length: int, batches: list[int]
) -> None:
    data = random_array((n_frames, 3, 5, 6), dtype)
    _write(tmp_path / "run", data, block_length, batches)
    ds = sd.SplitDataset(tmp_path / "run")
    assert ds.shape == data.shape
    assert ds.shape_block[0] == min(block_length, n_frames)
    assert ds.n_blocks == -(-n_frames // block_length)
    np.testing.assert_array_equal(ds[...], data)
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(
        [*ds.block_names, "stack_metadata.json"]
    ), "only block files and the metadata are left"


def test_frames_from_a_dask_array(tmp_path: Path, random_array) -> None:
    # dask's array-expr Array has no __array__ (np.asarray wraps it in an object array): append
    # computes it, so both dask modes write numpy's frames.
    data = random_array((7, 3, 4), "uint16")
    with sd.SplitDatasetWriter(
        tmp_path / "run", frame_shape=(3, 4), dtype="uint16", block_length=3
    ) as writer:
        writer.append(dask.array.from_array(data, chunks=2))
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "run")[...], data, strict=True)


@pytest.mark.slow
@settings(max_examples=25, deadline=None)
@given(
    n_frames=st.integers(0, 25),
    block_length=st.integers(1, 8),
    cuts=st.lists(st.integers(0, 25), max_size=6),
)
def test_any_batching_gives_the_same_dataset(
    tmp_path_factory: pytest.TempPathFactory, n_frames: int, block_length: int, cuts: list[int]
) -> None:
    data = np.arange(n_frames * 2 * 3, dtype=np.uint16).reshape(n_frames, 2, 3)
    folder = tmp_path_factory.mktemp("any") / "run"
    bounds = sorted({0, n_frames, *(c for c in cuts if c <= n_frames)})
    with sd.SplitDatasetWriter(
        folder, frame_shape=(2, 3), dtype="uint16", block_length=block_length
    ) as writer:
        for a, b in pairwise(bounds):
            writer.append(data[a:b])
    ds = sd.SplitDataset(folder)
    assert ds.shape == data.shape
    np.testing.assert_array_equal(ds[...], data)


def test_same_files_as_to_split_dataset(tmp_path: Path, random_array) -> None:
    """The layout is the package's (and sashimi's): same metadata text, keys, codec, chunks."""
    data = random_array((23, 4, 16, 16), "uint16")
    _write(tmp_path / "stream", data, 5, [0, 9], resolution=(2.0, 5.0, 0.6, 0.6))
    sd.to_split_dataset(data, tmp_path / "store", block_shape=5, resolution=(2.0, 5.0, 0.6, 0.6))
    for name in ("stream", "store"):
        assert (tmp_path / name / "stack_metadata.json").is_file()
    assert (tmp_path / "stream" / "stack_metadata.json").read_text() == (
        tmp_path / "store" / "stack_metadata.json"
    ).read_text()
    names = sorted(p.name for p in (tmp_path / "store").iterdir())
    assert sorted(p.name for p in (tmp_path / "stream").iterdir()) == names
    for name in names[:-1]:
        with h5py.File(tmp_path / "stream" / name) as a, h5py.File(tmp_path / "store" / name) as b:
            assert list(a) == list(b) == ["stack_4D"]
            da, db = a["stack_4D"], b["stack_4D"]
            assert da.chunks == db.chunks
            assert da.compression_opts == db.compression_opts
            assert dict(da.attrs) == dict(db.attrs)
            assert da.id.get_create_plist().get_filter(0)[0] == 32001  # Blosc
            np.testing.assert_array_equal(da[()], db[()])


_OLD_READS = r"""
import sys
import numpy as np
from split_dataset import SplitDataset
ds = SplitDataset(sys.argv[1])
np.save(sys.argv[2], ds[:, :, :, :])
print(ds.shape_full, ds.shape_block, ds.data_key, ds.resolution)
"""


@pytest.mark.subprocess
def test_the_original_package_reads_the_output(tmp_path: Path, random_array) -> None:
    data = random_array((23, 3, 16, 16), "uint16")
    _write(tmp_path / "run", data, 5, [4, 0, 8])
    # ...and after appending to it
    with sd.SplitDatasetWriter(tmp_path / "run", append=True) as writer:
        more = random_array((9, 3, 16, 16), "uint16", seed=1)
        writer.append(more)
    out = tmp_path / "old.npy"
    proc = run_old_checked(_OLD_READS, tmp_path / "run", out)
    np.testing.assert_array_equal(np.load(out), np.concatenate([data, more]))
    assert "[32, 3, 16, 16] (5, 3, 16, 16) stack_4D" in proc.stdout


@pytest.mark.parametrize("first", [0, 7, 10, 13])
def test_append_continues_a_dataset(tmp_path: Path, random_array, first: int) -> None:
    data = random_array((31, 2, 4, 4), "int16")
    folder = tmp_path / "run"
    _write(folder, data[:first], 5, [])
    with sd.SplitDatasetWriter(
        folder, append=True, frame_shape=(2, 4, 4), dtype="int16", block_length=5
    ) as writer:
        assert writer.n_frames == first
        writer.append(data[first:])
    ds = sd.SplitDataset(folder)
    np.testing.assert_array_equal(ds[...], data)
    assert ds.n_blocks == 7


def test_append_keeps_the_writers_metadata(tmp_path: Path, write_plain, random_array) -> None:
    """A sashimi dataset stopped early (planned 40 volumes, 12 written) continues after frame 12."""
    data = random_array((20, 2, 4, 4), "uint16")
    meta = {
        "shape_full": [40, 2, 4, 4],
        "shape_block": [5, 2, 4, 4],
        "crop": [0, 0, None, None],
        "padding": [0, 0, 0, 0],
        "voxel_size": [5.0, 0.6, 0.6],
    }
    write_plain(tmp_path / "original", data[:12], (5,), metadata=meta)
    with pytest.warns(sd.IncompleteDatasetWarning):
        assert sd.SplitDataset(tmp_path / "original").shape == (12, 2, 4, 4)
    with sd.SplitDatasetWriter(tmp_path / "original", append=True) as writer:
        # At once the metadata declares the 12 frames on disk: no warning, nothing hidden.
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "original")[...], data[:12])
        writer.append(data[12:])
    ds = sd.SplitDataset(tmp_path / "original")
    np.testing.assert_array_equal(ds[...], data)
    assert ds.metadata["voxel_size"] == [5.0, 0.6, 0.6]
    assert ds.metadata["shape_full"] == [20, 2, 4, 4]


def test_append_starts_a_new_dataset_when_there_is_none(tmp_path: Path) -> None:
    with sd.SplitDatasetWriter(
        tmp_path / "new", append=True, frame_shape=(2,), dtype="uint8", block_length=2
    ) as writer:
        writer.append(np.ones((3, 2), np.uint8))
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "new")[...], np.ones((3, 2)))


@pytest.mark.parametrize(
    ("option", "value"),
    [("frame_shape", (2, 4, 5)), ("dtype", "uint16"), ("block_length", 4)],
)
def test_append_refuses_a_different_layout(tmp_path: Path, option: str, value) -> None:
    _write(tmp_path / "run", np.zeros((7, 2, 4, 4), np.int16), 5, [])
    with pytest.raises(ValueError, match=option):
        sd.SplitDatasetWriter(tmp_path / "run", append=True, **{option: value})
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "run")[...], 0)


def test_append_refuses_datasets_split_along_other_axes(tmp_path: Path) -> None:
    sd.to_split_dataset(np.zeros((8, 6), np.uint8), tmp_path / "tiles", block_shape=(4, 3))
    with pytest.raises(sd.MetadataError, match="axis 0 alone"):
        sd.SplitDatasetWriter(tmp_path / "tiles", append=True)


def test_existing_dataset_needs_overwrite_and_other_folders_are_never_replaced(
    tmp_path: Path,
) -> None:
    _write(tmp_path / "run", np.ones((7, 3), np.uint8), 5, [])
    options = {"frame_shape": (3,), "dtype": "uint8", "block_length": 2}
    with pytest.raises(FileExistsError, match="overwrite=True"):
        sd.SplitDatasetWriter(tmp_path / "run", **options)
    with sd.SplitDatasetWriter(tmp_path / "run", overwrite=True, **options) as writer:
        writer.append(np.full((3, 3), 9, np.uint8))
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "run")[...], 9)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"], "no retired copy is left"

    precious = tmp_path / "thesis"
    precious.mkdir()
    (precious / "chapter1.tex").write_text("...")
    for overwrite in (False, True):
        with pytest.raises(FileExistsError, match="not a split dataset"):
            sd.SplitDatasetWriter(precious, overwrite=overwrite, **options)
    assert (precious / "chapter1.tex").read_text() == "..."


def test_bad_frames_are_refused(tmp_path: Path) -> None:
    with sd.SplitDatasetWriter(
        tmp_path / "run", frame_shape=(2, 3), dtype="uint16", block_length=4
    ) as writer:
        with pytest.raises(ValueError, match="neither one frame of shape"):
            writer.append(np.zeros((3, 2), np.uint16))
        with pytest.raises(TypeError, match="float64"):
            writer.append(np.zeros((2, 3)))
        writer.append(np.zeros((2, 3), np.uint8))  # safe cast
    with pytest.raises(ValueError, match="closed"):
        writer.append(np.zeros((2, 3), np.uint16))
    assert sd.SplitDataset(tmp_path / "run").shape == (1, 2, 3)


def test_two_writers_on_one_folder_are_refused(tmp_path: Path) -> None:
    options = {"frame_shape": (3,), "dtype": "uint8", "block_length": 2}
    with sd.SplitDatasetWriter(tmp_path / "run", **options) as writer:
        writer.append(np.ones((5, 3), np.uint8))
        with pytest.raises(BlockingIOError, match=rf"another writer \(process {os.getpid()}\)"):
            sd.SplitDatasetWriter(tmp_path / "run", append=True)
    with sd.SplitDatasetWriter(tmp_path / "run", append=True) as writer:
        writer.append(np.ones((1, 3), np.uint8))
    assert sd.SplitDataset(tmp_path / "run").shape == (6, 3)


def test_a_failing_write_surfaces_on_the_callers_thread(tmp_path: Path) -> None:
    folder = tmp_path / "run"
    writer = sd.SplitDatasetWriter(folder, frame_shape=(4,), dtype="uint16", block_length=2)
    writer.append(np.zeros((2, 4), np.uint16))
    writer.flush()
    shutil.rmtree(folder)  # the disk "disappears" under the writer
    writer.append(np.zeros((2, 4), np.uint16))
    # The background writer's own error, not a wrapper: callers catch OSError and read errno.
    with pytest.raises(FileNotFoundError) as info:
        writer.flush()
    assert info.value.errno == errno.ENOENT, info.value
    assert any("writing block 1 failed" in note for note in info.value.__notes__)
    with pytest.raises(FileNotFoundError) as again:
        writer.append(np.zeros((2, 4), np.uint16))
    assert again.value is info.value
    with pytest.raises(FileNotFoundError) as last:
        writer.close()
    assert last.value is info.value


def test_metadata_follows_each_block(tmp_path: Path) -> None:
    """Between blocks, the folder is exactly the dataset of the complete blocks."""
    folder = tmp_path / "run"
    with sd.SplitDatasetWriter(folder, frame_shape=(2,), dtype="uint16", block_length=3) as w:
        for i in range(10):
            w.append(np.full(2, i, np.uint16))
            w.flush()
            done = (i + 1) // 3 * 3
            meta = json.loads((folder / "stack_metadata.json").read_text()) if done else None
            if done:
                assert meta["shape_full"] == [done, 2]
                np.testing.assert_array_equal(sd.SplitDataset(folder)[:, 0], np.arange(done))
    assert sd.SplitDataset(folder).shape == (10, 2)


# --- physical metadata --------------------------------------------------------------------------

UM = "micrometer"


@pytest.mark.parametrize(
    ("options", "axes", "scale", "units"),
    [
        (
            {"axes": "tzyx", "scale": (None, 7.0, 0.6, 0.6), "units": (None, UM, UM, UM)},
            ("t", "z", "y", "x"),
            (1.0, 7.0, 0.6, 0.6),
            (None, UM, UM, UM),
        ),
        (
            {
                "axes": ("t", "z", "y", "x"),
                "scale": (None, 7.0, 0.6, 0.6),
                "units": (None, UM, UM, UM),
                "time_step": 0.5,
            },
            ("t", "z", "y", "x"),
            (0.5, 7.0, 0.6, 0.6),
            ("second", UM, UM, UM),
        ),
        (
            {"axes": ("time", "plane", "row", "col"), "scale": (2.0, 1.0, 0.25, 0.25)},
            ("time", "plane", "row", "col"),
            (2.0, 1.0, 0.25, 0.25),
            (None, None, None, None),
        ),
    ],
)
def test_physical_metadata_reads_back(tmp_path: Path, options, axes, scale, units) -> None:
    xr = pytest.importorskip("xarray")
    data = np.arange(5 * 2 * 3 * 4, dtype=np.uint16).reshape(5, 2, 3, 4)
    _write(tmp_path / "d", data, 2, [1, 0], **options)
    ds = sd.SplitDataset(tmp_path / "d")
    assert (ds.axes, ds.scale, ds.units) == (axes, scale, units)
    np.testing.assert_array_equal(np.asarray(ds), data)
    stored = json.loads((tmp_path / "d" / "stack_metadata.json").read_text())
    assert (stored["axes"], stored["scale"], stored["units"]) == (
        list(axes),
        list(scale),
        list(units),
    )
    assert stored["resolution"] == list(scale)  # the original's key, for its readers
    array = xr.open_dataarray(tmp_path / "d", engine="splitds")
    assert array.dims == axes
    for axis, n, step, unit in zip(axes, data.shape, scale, units, strict=True):
        np.testing.assert_allclose(array.coords[axis].values, np.arange(n) * step)
        assert array.coords[axis].attrs.get("units") == unit
    np.testing.assert_array_equal(array.values, data)


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"axes": "zyx"}, ValueError, "axes"),
        ({"scale": (1.0, 2.0)}, ValueError, "scale"),
        ({"scale": (1.0, -2.0, 1.0, 1.0)}, ValueError, "scale"),
        ({"units": (UM,)}, ValueError, "units"),
        ({"axes": "czyx", "time_step": 0.5}, ValueError, "time_step needs an axis named 't'"),
        ({"time_step": 0.5, "units": ("ms", UM, UM, UM)}, ValueError, "time_step is in seconds"),
        ({"axes": "tzyx", "axis_order": "tcyx"}, ValueError, "disagrees"),
        ({"axes": 4}, TypeError, "axes"),
    ],
)
def test_bad_physical_metadata_is_refused_before_anything_is_written(
    tmp_path: Path, options, error, match
) -> None:
    with pytest.raises(error, match=match):
        sd.SplitDatasetWriter(
            tmp_path / "d", frame_shape=(2, 3, 4), dtype="u2", block_length=2, **options
        )
    assert list(tmp_path.iterdir()) == []  # no folder, no lock file


def test_append_keeps_the_physical_metadata_it_is_not_given(tmp_path: Path) -> None:
    data = np.arange(6 * 2 * 3 * 4, dtype=np.uint16).reshape(6, 2, 3, 4)
    physical = {"axes": "tzyx", "scale": (None, 7.0, 0.6, 0.6), "units": (None, UM, UM, UM)}
    _write(tmp_path / "d", data[:3], 2, [], time_step=0.5, **physical)
    with sd.SplitDatasetWriter(tmp_path / "d", append=True, time_step=0.25) as writer:
        writer.append(data[3:])
    ds = sd.SplitDataset(tmp_path / "d")
    np.testing.assert_array_equal(np.asarray(ds), data)
    assert ds.axes == ("t", "z", "y", "x")
    assert ds.scale == (0.25, 7.0, 0.6, 0.6)  # the new time step, the recorded spacing
    assert ds.units == ("second", UM, UM, UM)
    with pytest.raises(ValueError, match="axes"):
        sd.SplitDatasetWriter(tmp_path / "d", append=True, axes="zyx")
    assert sd.SplitDataset(tmp_path / "d").scale == (0.25, 7.0, 0.6, 0.6)  # untouched

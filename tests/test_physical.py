"""Physical metadata: read from every variant, written under new keys, carried through writers.

Expected values are literals taken from the fixtures' json files and the reference notes (sashimi
writes ``voxel_size`` as inter-plane, y, x spacing in micrometres), never from the package.
"""

from __future__ import annotations

import json
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import splitds_dask as sd
from splitds_dask import EmptySplitDataset, MetadataError, SplitDataset, save_to_split_dataset
from splitds_dask._format.metadata import original_metadata_dict
from splitds_dask._format.physical import (
    add_physical_metadata,
    read_physical_metadata,
    resolve_physical_metadata,
)
from tests.helpers.format_facts import ORIGINAL_METADATA_KEYS
from tests.helpers.oldpkg import run_old_checked

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
UM = "micrometer"
TZYX = ("t", "z", "y", "x")


@pytest.mark.parametrize(
    ("folder", "axes", "scale", "units"),
    [
        # split_dataset 0.4.4 EmptySplitDataset with resolution=(0.5, 7.0, 0.6, 0.6)
        ("empty_split_dataset", TZYX, (0.5, 7.0, 0.6, 0.6), (None,) * 4),
        # sashimi >= 2024: voxel_size [7.0, 0.6, 0.6] (z, y, x in micrometres), no resolution
        ("sashimi_2024/original", TZYX, (1.0, 7.0, 0.6, 0.6), (None, UM, UM, UM)),
        ("sashimi_early_stop_files/original", TZYX, (1.0, 7.0, 0.6, 0.6), (None, UM, UM, UM)),
        # sashimi 2020: voxel_size [1, 1, 1] with crop_start/crop_end
        ("sashimi_2020/original", TZYX, (1.0,) * 4, (None, UM, UM, UM)),
        # brunoise: no resolution, no axis_order, 4-D
        ("brunoise_1ch/original", TZYX, (1.0,) * 4, (None,) * 4),
        ("brunoise_2ch/original/red", TZYX, (1.0,) * 4, (None,) * 4),
        # fimpy StackSaver (sorted keys, extra "files")
        ("fimpy_stacksaver/original", TZYX, (1.0,) * 4, (None,) * 4),
        # split_dataset 0.2.0: no axis_order
        ("split_dataset_020", TZYX, (1.0,) * 4, (None,) * 4),
        # split_dataset 0.4.4 3-D: axis_order "zyx", resolution [1, 1, 1]
        ("s2sd_3d", ("z", "y", "x"), (1.0,) * 3, (None,) * 3),
        ("s2sd_4d", TZYX, (1.0,) * 4, (None,) * 4),
        # SplitDataset.jl: shape_full and shape_block only
        ("splitdataset_jl", ("z", "y", "x"), (1.0,) * 3, (None,) * 3),
        # metadata inside the h5 files
        ("legacy_h5_metadata", ("z", "y", "x"), (1.0,) * 3, (None,) * 3),
    ],
)
def test_legacy_variants(folder: str, axes: tuple, scale: tuple, units: tuple) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sd.IncompleteDatasetWarning)
        ds = SplitDataset(LEGACY / folder)
    assert ds.axes == axes
    assert ds.scale == pytest.approx(scale)
    assert ds.units == units
    assert ds.time_step is None  # no variant in the wild records the volume rate
    assert sd.physical_metadata_kwargs(ds) == {"axes": axes, "scale": ds.scale, "units": units}


@pytest.mark.parametrize(
    ("raw", "ndim", "axes", "scale", "units"),
    [
        # the original writes "zyx" for every non-4-D array: ignored where it does not fit
        ({"axis_order": "zyx", "resolution": [1, 1, 1]}, 2, ("y", "x"), (1, 1), (None,) * 2),
        ({"axis_order": "zyx"}, 5, ("t", "c", "z", "y", "x"), (1,) * 5, (None,) * 5),
        ({"axis_order": "cyx"}, 3, ("c", "y", "x"), (1,) * 3, (None,) * 3),
        ({"axis_order": "yy"}, 2, ("y", "x"), (1,) * 2, (None,) * 2),  # repeated: ignored
        ({}, 7, tuple(f"d{i}" for i in range(7)), (1,) * 7, (None,) * 7),
        # a 3-entry resolution on 4-D data (the original's default, fimpy's spatial one)
        ({"resolution": [7, 0.6, 0.5]}, 4, TZYX, (1, 7, 0.6, 0.5), (None,) * 4),
        ({"resolution": [1, 2, 3, 4, 5]}, 4, TZYX, (1,) * 4, (None,) * 4),  # too long
        ({"resolution": [0, 1, 1]}, 3, ("z", "y", "x"), (1,) * 3, (None,) * 3),  # zero
        # sashimi's voxel_size overrides resolution and has a unit
        (
            {"resolution": [2, 3, 3, 3], "voxel_size": [7, 0.6, 0.6]},
            4,
            TZYX,
            (2, 7, 0.6, 0.6),
            (None, UM, UM, UM),
        ),
        # the new keys override everything
        (
            {
                "axis_order": "tzyx",
                "voxel_size": [7, 0.6, 0.6],
                "axes": ["time", "plane", "row", "col"],
                "scale": [0.25, 5, 0.5, 0.5],
                "units": ["second", UM, UM, None],
            },
            4,
            ("time", "plane", "row", "col"),
            (0.25, 5, 0.5, 0.5),
            ("second", UM, UM, None),
        ),
        # the new scale alone keeps voxel_size's units
        (
            {"voxel_size": [7, 1, 1], "scale": [1, 2, 3, 4]},
            4,
            TZYX,
            (1, 2, 3, 4),
            (None, UM, UM, UM),
        ),
    ],
)
def test_read_variants(raw: dict, ndim: int, axes: tuple, scale: tuple, units: tuple) -> None:
    physical = read_physical_metadata(raw, ndim)
    assert physical.axes == axes
    assert physical.scale == pytest.approx(scale)
    assert all(type(s) is float for s in physical.scale)
    assert physical.units == units


@pytest.mark.parametrize(
    ("units", "scale", "expected"),
    [
        (("second", None), (0.5, 1), 0.5),
        (("s", None), (2, 1), 2.0),
        (("millisecond", None), (250, 1), 0.25),
        (("ms", None), (40, 1), 0.04),
        (("minute", None), (1.5, 1), 90.0),
        ((None, None), (0.5, 1), None),  # no unit: not known to be time
        (("micrometer", None), (0.5, 1), None),
    ],
)
def test_time_step_units(units: tuple, scale: tuple, expected: float | None) -> None:
    physical = read_physical_metadata({"axes": ["t", "x"], "scale": scale, "units": units}, 2)
    assert physical.time_step == (pytest.approx(expected) if expected is not None else None)


def test_time_step_needs_a_t_axis() -> None:
    raw = {"axes": ["z", "x"], "scale": [1, 1], "units": ["second", None]}
    assert read_physical_metadata(raw, 2).time_step is None


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ({"axes": ["t", "y", "x"]}, "axes must be 4"),
        ({"axes": "tzyx"}, "axes must be a list"),
        ({"axes": ["t", "z", "z", "x"]}, "distinct"),
        ({"axes": ["t", "", "y", "x"]}, "non-empty"),
        ({"scale": [1, 1, 1]}, "scale must be 4"),
        ({"scale": [1, -1, 1, 1]}, "finite positive"),
        ({"scale": [1, "1", 1, 1]}, "finite positive"),
        ({"scale": [1, 1, 1, float("nan")]}, "finite positive"),
        ({"units": ["s", "um", "um"]}, "units must be a sequence of 4"),
        ({"units": ["s", 1, "um", "um"]}, "non-empty strings or None"),
    ],
)
def test_malformed_new_keys_name_the_file(
    tmp_path: Path, write_plain, random_array, extra: dict, message: str
) -> None:
    data = random_array((4, 2, 3, 5), "uint16")
    meta = {"shape_full": [4, 2, 3, 5], "shape_block": [2, 2, 3, 5], **extra}
    write_plain(tmp_path / "ds", data, (2,), metadata=meta)
    with pytest.raises(MetadataError, match=message) as info:
        SplitDataset(tmp_path / "ds")
    assert "stack_metadata.json" in str(info.value)


# --- writing -------------------------------------------------------------------------------


def _json(folder: Path) -> dict:
    return json.loads((folder / "stack_metadata.json").read_text())


def test_to_split_dataset_writes_new_keys(tmp_path: Path, random_array) -> None:
    data = random_array((6, 2, 4, 5), "uint16")
    ds = sd.to_split_dataset(
        data,
        tmp_path / "m",
        block_shape=2,
        scale=(0.5, 7, 0.6, 0.6),
        units=(None, UM, UM, UM),
        time_step=0.5,
    )
    meta = _json(tmp_path / "m")
    assert list(meta) == [*ORIGINAL_METADATA_KEYS, "axes", "scale", "units"]
    assert meta["axes"] == ["t", "z", "y", "x"]
    assert meta["axis_order"] == "tzyx"
    assert meta["scale"] == meta["resolution"] == [0.5, 7, 0.6, 0.6]
    assert meta["units"] == ["second", UM, UM, UM]
    assert (ds.axes, ds.scale, ds.units, ds.time_step) == (
        TZYX,
        (0.5, 7.0, 0.6, 0.6),
        ("second", UM, UM, UM),
        0.5,
    )
    np.testing.assert_array_equal(ds[...], data)


def test_physical_metadata_survives_pickling(tmp_path: Path) -> None:
    ds = sd.to_split_dataset(np.zeros((4, 3), np.uint8), tmp_path / "a", axes="tx", time_step=2)
    copy = pickle.loads(pickle.dumps(ds))
    assert (
        copy.physical_metadata
        == ds.physical_metadata
        == sd.PhysicalMetadata(axes=("t", "x"), scale=(2.0, 1.0), units=("second", None))
    )


def test_without_physical_options_the_json_is_the_originals(tmp_path: Path) -> None:
    sd.to_split_dataset(np.zeros((4, 3), np.uint8), tmp_path / "a", block_shape=2)
    assert list(_json(tmp_path / "a")) == ORIGINAL_METADATA_KEYS


def test_long_axis_names_drop_axis_order(tmp_path: Path) -> None:
    ds = sd.to_split_dataset(
        np.zeros((4, 3), np.uint8), tmp_path / "a", axes=("time", "x"), scale=(2, 1)
    )
    meta = _json(tmp_path / "a")
    assert "axis_order" not in meta
    assert meta["axes"] == ["time", "x"]
    assert ds.axes == ("time", "x")
    assert ds.time_step is None  # the time axis is the one named "t"
    with pytest.raises(ValueError, match="axis named 't'"):
        sd.to_split_dataset(np.zeros((4, 3)), tmp_path / "b", axes=("time", "x"), time_step=2)


def test_time_step_needs_t_and_agrees(tmp_path: Path) -> None:
    ds = sd.to_split_dataset(np.zeros((4, 3), np.uint8), tmp_path / "a", axes="tx", time_step=2)
    assert (ds.scale, ds.units, ds.time_step) == ((2.0, 1.0), ("second", None), 2.0)


@pytest.mark.parametrize(
    ("options", "scale", "units"),
    [
        # None: spacing not known (1), or given by time_step
        ({"scale": (None, 7, 0.6, 0.6), "time_step": 0.5}, (0.5, 7, 0.6, 0.6), "second"),
        ({"scale": (None, 7, 0.6, 0.6)}, (1, 7, 0.6, 0.6), None),
        ({"scale": (0.5, 7, 0.6, 0.6), "time_step": 0.5}, (0.5, 7, 0.6, 0.6), "second"),
        ({"scale": (None, 7, None, 1), "resolution": (3, 7, 2, 1)}, (3, 7, 2, 1), None),
        ({"resolution": (0.5, 7, 1, 1), "time_step": 0.5}, (0.5, 7, 1, 1), "second"),
        ({"time_step": 0.5}, (0.5, 1, 1, 1), "second"),
        ({"units": ("second", None, None, None), "time_step": 3}, (3, 1, 1, 1), "second"),
    ],
)
def test_writer_scale_combinations(options: dict, scale: tuple, units: str | None) -> None:
    physical = resolve_physical_metadata(4, **options)
    assert physical.axes == TZYX
    assert physical.scale == pytest.approx(scale)
    assert physical.units[0] == units


@pytest.mark.parametrize(
    ("scale", "error"),
    [
        ((None, 1), ValueError),  # 2 entries for 4 axes
        ((None, "1", 1, 1), ValueError),
        ((None, 0, 1, 1), ValueError),
        (5, TypeError),
    ],
)
def test_writer_scale_errors(scale, error) -> None:
    with pytest.raises(error, match="scale must be"):
        resolve_physical_metadata(4, scale=scale)


BAD_OPTIONS = [
    ({"axes": ("t", "y", "x")}, "axes must be 2"),
    ({"axes": "tyx"}, "axes must be 2"),
    ({"axes": "tt"}, "distinct"),
    ({"scale": (1, 0)}, "finite positive"),
    ({"units": ("s",)}, "units must be a sequence of 2"),
    ({"time_step": 1, "axes": ("y", "x")}, "axis named 't'"),
    ({"time_step": -1, "axes": "tx"}, "finite positive"),
    ({"time_step": 1, "axes": "tx", "scale": (2, 1)}, "disagrees with the t scale"),
    ({"time_step": 1, "axes": "tx", "units": ("ms", None)}, "t unit is 'ms'"),
]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        *BAD_OPTIONS,
        ({"scale": (2, 1), "resolution": (1, 1)}, "resolution .* disagrees"),
        ({"axes": ("t", "x"), "axis_order": "zx"}, "axis_order 'zx' disagrees"),
    ],
)
def test_bad_options_write_nothing(tmp_path: Path, options: dict, message: str) -> None:
    data = np.zeros((4, 3), np.uint16)
    with pytest.raises(ValueError, match=message):
        sd.to_split_dataset(data, tmp_path / "out", **options)
    assert list(tmp_path.iterdir()) == []  # no dataset, no staging folder


@pytest.mark.parametrize(("options", "message"), BAD_OPTIONS)
def test_bad_options_compat_write_nothing(tmp_path: Path, options: dict, message: str) -> None:
    data = np.zeros((4, 3), np.uint16)
    with pytest.raises(ValueError, match=message):
        save_to_split_dataset(data, tmp_path, block_size=(2, 3), prefix="c", **options)
    assert list(tmp_path.iterdir()) == []


def test_dataset_input_carries_its_metadata(tmp_path: Path, random_array) -> None:
    data = random_array((8, 3, 4, 5), "int16")
    source = sd.to_split_dataset(
        data, tmp_path / "a", block_shape=2, scale=(0.2, 5, 0.5, 0.5), units=("s", UM, UM, UM)
    )
    rechunked = sd.to_split_dataset(source, tmp_path / "b", block_shape=(4, 1))
    assert rechunked.shape_block == (4, 1, 4, 5)
    assert (rechunked.axes, rechunked.scale, rechunked.units) == (
        source.axes,
        source.scale,
        source.units,
    )
    assert rechunked.time_step == pytest.approx(0.2)
    # a dask array has none: the helper carries them
    plus = sd.to_split_dataset(
        source.to_dask() + 1, tmp_path / "c", **sd.physical_metadata_kwargs(source)
    )
    assert sd.physical_metadata_kwargs(plus) == sd.physical_metadata_kwargs(source)
    np.testing.assert_array_equal(plus[...], data + 1)
    # a dataset that records nothing is written with the original's keys only
    plain = sd.to_split_dataset(data, tmp_path / "e", block_shape=4)
    sd.to_split_dataset(plain, tmp_path / "f", block_shape=2)
    assert list(_json(tmp_path / "f")) == ORIGINAL_METADATA_KEYS
    # explicit options win over the dataset's own
    other = sd.to_split_dataset(source, tmp_path / "d", resolution=(1, 1, 1, 1))
    assert other.units == (None,) * 4
    assert list(_json(tmp_path / "d")) == ORIGINAL_METADATA_KEYS


def test_legacy_physical_metadata_is_carried(tmp_path: Path) -> None:
    source = SplitDataset(LEGACY / "sashimi_2024" / "original")
    copy = sd.to_split_dataset(source, tmp_path / "copy")
    meta = _json(tmp_path / "copy")
    assert meta["scale"] == [1, 7, 0.6, 0.6]
    assert meta["units"] == [None, UM, UM, UM]
    assert (copy.axes, copy.scale, copy.units) == (TZYX, (1.0, 7.0, 0.6, 0.6), (None, UM, UM, UM))


def test_compat_writers_take_physical_options(tmp_path: Path, random_array) -> None:
    data = random_array((5, 2, 4, 4), "uint16")
    new = EmptySplitDataset(
        tmp_path,
        "dff",
        shape_full=data.shape,
        shape_block=(2, 2, 4, 4),
        scale=(1, 6, 0.5, 0.5),
        units=(None, UM, UM, UM),
        time_step=1,
    )
    for i, (_, slices) in enumerate(new.slices()):
        new.save_block_data(i, data[slices])
    ds = new.finalize()
    assert list(_json(ds.root)) == [*ORIGINAL_METADATA_KEYS, "axes", "scale", "units"]
    assert (ds.scale, ds.units, ds.time_step) == ((1.0, 6.0, 0.5, 0.5), ("second", UM, UM, UM), 1)
    copy = save_to_split_dataset(ds, tmp_path, prefix="copy", **sd.physical_metadata_kwargs(ds))
    assert sd.physical_metadata_kwargs(copy) == sd.physical_metadata_kwargs(ds)
    np.testing.assert_array_equal(copy[...], data)
    # as in the original, save_to_split_dataset does not carry them by itself
    plain = save_to_split_dataset(ds, tmp_path, prefix="plain")
    assert list(_json(plain.root)) == ORIGINAL_METADATA_KEYS
    # bad options fail before the folder exists
    with pytest.raises(ValueError, match="scale must be 4"):
        EmptySplitDataset(tmp_path, "bad", shape_full=data.shape, shape_block=(2,), scale=(1,))
    assert not (tmp_path / "bad").exists()


_names = st.text(alphabet="abcdefghijklmnopqrstuvwxyz", min_size=1, max_size=4)


@given(
    axes=st.lists(_names, min_size=1, max_size=6, unique=True),
    data=st.data(),
)
def test_write_read_round_trip(axes: list[str], data: st.DataObject) -> None:
    ndim = len(axes)
    scale = data.draw(
        st.lists(
            st.floats(min_value=1e-6, max_value=1e6, allow_nan=False),
            min_size=ndim,
            max_size=ndim,
        )
    )
    units = data.draw(
        st.lists(
            st.none() | st.sampled_from(["second", "micrometer", "nm", "ms"]),
            min_size=ndim,
            max_size=ndim,
        )
    )
    metadata = original_metadata_dict([3] * ndim, [2] * ndim)
    add_physical_metadata(metadata, {"axes": axes, "scale": scale, "units": units})
    # through json, as on disk
    raw = json.loads(json.dumps(metadata))
    physical = read_physical_metadata(raw, ndim)
    assert physical == resolve_physical_metadata(ndim, axes=axes, scale=scale, units=units)
    assert physical.axes == tuple(axes)
    assert physical.scale == tuple(scale)
    assert physical.units == tuple(units)
    assert raw["resolution"] == scale
    if all(len(a) == 1 for a in axes):
        assert raw["axis_order"] == "".join(axes)
    t_unit = units[axes.index("t")] if "t" in axes else None
    if t_unit in ("second", "ms"):
        factor = 1.0 if t_unit == "second" else 1e-3
        assert math.isclose(physical.time_step, scale[axes.index("t")] * factor)
    else:
        assert physical.time_step is None


_OLD_OPENS = r"""
import json, sys
import numpy as np
from split_dataset import SplitDataset
ds = SplitDataset(sys.argv[1])
whole = ds[tuple(slice(0, n) for n in ds.shape)]
print(json.dumps({"same": bool(np.array_equal(whole, np.load(sys.argv[2]))),
                  "shape": list(ds.shape), "resolution": list(ds.resolution)}))
"""


@pytest.mark.subprocess
def test_old_package_opens_datasets_with_physical_metadata(tmp_path: Path, random_array) -> None:
    data = random_array((7, 3, 6, 5), "uint16")
    sd.to_split_dataset(
        data,
        tmp_path / "ours",
        block_shape=(3, 2),
        axes=("t", "z", "y", "x"),
        scale=(0.25, 7, 0.6, 0.6),
        units=("second", UM, UM, UM),
    )
    np.save(tmp_path / "expected.npy", data)
    proc = run_old_checked(_OLD_OPENS, tmp_path / "ours", tmp_path / "expected.npy")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result == {"same": True, "shape": [7, 3, 6, 5], "resolution": [0.25, 7, 0.6, 0.6]}

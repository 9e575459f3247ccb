"""Metadata json: every variant found in the wild, malformed files, and the writer's output."""

from __future__ import annotations

import json
import os
import re

import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._format.metadata import (
    METADATA_NAME,
    find_metadata_file,
    original_metadata_dict,
    parse_metadata,
    read_metadata_json,
    write_metadata_json,
)
from tests.helpers.format_facts import ORIGINAL_METADATA_KEYS

# (variant name, json dict, expected shape, expected block shape, expected padding,
#  expected resolution, expected axis_order)
VARIANTS = [
    (
        "original-0.2.2+",
        {
            "shape_full": [6, 4, 5],
            "shape_block": [4, 4, 5],
            "crop_start": [0, 0, 0],
            "crop_end": [0, 0, 0],
            "padding": [0, 0, 0],
            "resolution": [1, 1, 1],
            "axis_order": "zyx",
        },
        (6, 4, 5),
        (4, 4, 5),
        (0, 0, 0),
        (1.0, 1.0, 1.0),
        "zyx",
    ),
    (
        "original-0.2.0-no-axis-order",
        {
            "shape_full": [6, 4, 5],
            "shape_block": [4, 4, 5],
            "crop_start": [0, 0, 0],
            "crop_end": [0, 0, 0],
            "padding": [0, 0, 0],
            "resolution": [1, 0.5, 0.5],
        },
        (6, 4, 5),
        (4, 4, 5),
        (0, 0, 0),
        (1.0, 0.5, 0.5),
        None,
    ),
    (
        "sashimi-2024-crop-voxel-size",
        {
            "shape_full": [100, 3, 20, 30],
            "shape_block": [20, 1, 20, 30],
            "crop": [0, 0, None, None],
            "padding": [0, 0, 0, 0],
            "voxel_size": [10.0, 0.6, 0.6],
        },
        (100, 3, 20, 30),
        (20, 1, 20, 30),
        (0, 0, 0, 0),
        None,
        None,
    ),
    (
        "sashimi-2020-crop-start-end",
        {
            "shape_full": [7, 2, 8, 8],
            "shape_block": [20, 1, 8, 8],
            "crop_start": [0, 0, 0, 0],
            "crop_end": [0, 0, 0, 0],
            "padding": [0, 0, 0, 0],
            "voxel_size": [1, 0.3, 0.3],
        },
        (7, 2, 8, 8),
        (20, 1, 8, 8),
        (0, 0, 0, 0),
        None,
        None,
    ),
    (
        "brunoise",
        {
            "shape_full": [50, 4, 16, 16],
            "shape_block": [50, 1, 16, 16],
            "crop_start": [0, 0, 0, 0],
            "crop_end": [0, 0, 0, 0],
            "padding": [0, 0, 0, 0],
        },
        (50, 4, 16, 16),
        (50, 1, 16, 16),
        (0, 0, 0, 0),
        None,
        None,
    ),
    (
        "fimpy-sort-keys-files",
        {
            "crop_end": [0, 0, 0],
            "crop_start": [0, 0, 0],
            "files": ["000.h5", "001.h5"],
            "padding": [2, 0, 0],
            "shape_block": [5, 10, 10],
            "shape_full": [10, 10, 10],
        },
        (10, 10, 10),
        (5, 10, 10),
        (2, 0, 0),
        None,
        None,
    ),
    (
        "splitdataset-jl-minimal",
        {"shape_full": [10, 3], "shape_block": [4, 3]},
        (10, 3),
        (4, 3),
        (0, 0),
        None,
        None,
    ),
    (
        "float-block-lengths",
        {"shape_full": [40.0, 2, 6], "shape_block": [20.0, 1.0, 6]},
        (40, 2, 6),
        (20, 1, 6),
        (0, 0, 0),
        None,
        None,
    ),
    (
        "partial-block-shape",
        {"shape_full": [10, 3, 4], "shape_block": [4, None]},
        (10, 3, 4),
        (4, None),
        (0, 0, 0),
        None,
        None,
    ),
    (
        "scalar-padding",
        {"shape_full": [10, 3], "shape_block": [4, 3], "padding": 1},
        (10, 3),
        (4, 3),
        (1, 1),
        None,
        None,
    ),
]


@pytest.mark.parametrize(
    ("raw", "shape", "block_shape", "padding", "resolution", "axis_order"),
    [v[1:] for v in VARIANTS],
    ids=[v[0] for v in VARIANTS],
)
def test_json_variants(tmp_path, raw, shape, block_shape, padding, resolution, axis_order):
    path = tmp_path / METADATA_NAME
    path.write_text(json.dumps(raw))
    meta = read_metadata_json(path)
    assert meta.shape == shape
    assert all(type(n) is int for n in meta.shape)
    assert meta.block_shape == block_shape
    assert meta.padding == padding
    assert meta.resolution == resolution
    assert meta.axis_order == axis_order
    assert meta.source == path
    assert list(meta.raw) == list(raw)  # file order kept
    assert meta.ndim == len(shape)


def test_crop_is_never_applied():
    raw = {
        "shape_full": [6, 8],
        "shape_block": [3, 8],
        "crop_start": [1, 2],
        "crop_end": [1, 2],
        "crop": [1, 1, 4, 4],
    }
    meta = parse_metadata(raw)
    assert meta.shape == (6, 8)
    assert meta.block_shape == (3, 8)


@pytest.mark.parametrize(
    "name", ["stack_metadata.json", "fish1_stack_metadata.json", "anatomy_stack_metadata.json"]
)
def test_find_metadata_file_suffix(tmp_path, name):
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / "stack_metadata.json.bak").write_text("{}")
    (tmp_path / name).write_text("{}")
    assert find_metadata_file(tmp_path) == tmp_path / name


def test_find_metadata_file_prefers_exact_then_sorted(tmp_path):
    (tmp_path / "b_stack_metadata.json").write_text("{}")
    (tmp_path / "a_stack_metadata.json").write_text("{}")
    assert find_metadata_file(tmp_path) == tmp_path / "a_stack_metadata.json"
    (tmp_path / "stack_metadata.json").write_text("{}")
    assert find_metadata_file(tmp_path) == tmp_path / "stack_metadata.json"


def test_find_metadata_file_none(tmp_path):
    (tmp_path / "0000.h5").write_bytes(b"")
    (tmp_path / "stack_metadata.json").mkdir()  # a folder is not a metadata file
    assert find_metadata_file(tmp_path) is None


def test_dataset_opens_with_prefixed_metadata_name(tmp_path, write_plain, random_array):
    a = random_array((6, 4), "u2")
    write_plain(tmp_path, a, (4,), metadata_name="fish1_stack_metadata.json")
    ds = sd.SplitDataset(tmp_path)
    np.testing.assert_array_equal(ds[...], a)


MALFORMED = [
    ("missing-shape-full", {"shape_block": [2, 2]}, "shape_full"),
    ("missing-shape-block", {"shape_full": [2, 2]}, "shape_block"),
    ("shape-full-string", {"shape_full": "6,4", "shape_block": [2, 2]}, "shape_full"),
    ("shape-full-int", {"shape_full": 6, "shape_block": [2]}, "shape_full"),
    ("shape-full-strings", {"shape_full": ["6", "4"], "shape_block": [2, 2]}, "shape_full"),
    ("shape-full-bool", {"shape_full": [True, 4], "shape_block": [2, 2]}, "shape_full"),
    ("shape-full-negative", {"shape_full": [-6, 4], "shape_block": [2, 2]}, "shape_full"),
    ("shape-full-nested", {"shape_full": [[6], [4]], "shape_block": [2, 2]}, "shape_full"),
    ("shape-full-fraction", {"shape_full": [6.5, 4], "shape_block": [2, 2]}, "shape_full"),
    ("shape-full-null", {"shape_full": [None, 4], "shape_block": [2, 2]}, "shape_full"),
    ("shape-full-empty", {"shape_full": [], "shape_block": []}, "shape_full"),
    ("shape-full-object", {"shape_full": {"t": 6}, "shape_block": [2, 2]}, "shape_full"),
    ("shape-block-zero", {"shape_full": [6, 4], "shape_block": [0, 2]}, "shape_block"),
    ("shape-block-negative", {"shape_full": [6, 4], "shape_block": [-2, 2]}, "shape_block"),
    ("shape-block-bool", {"shape_full": [6, 4], "shape_block": [False, 2]}, "shape_block"),
    ("shape-block-string", {"shape_full": [6, 4], "shape_block": "2"}, "shape_block"),
    ("shape-block-nested", {"shape_full": [6, 4], "shape_block": [[2, 2]]}, "shape_block"),
    ("shape-block-too-long", {"shape_full": [6, 4], "shape_block": [2, 2, 2]}, "shape_block"),
    (
        "padding-negative",
        {"shape_full": [6, 4], "shape_block": [2, 2], "padding": [-1, 0]},
        "padding",
    ),
    (
        "padding-too-long",
        {"shape_full": [6, 4], "shape_block": [2, 2], "padding": [0, 0, 0]},
        "padding",
    ),
    ("padding-string", {"shape_full": [6, 4], "shape_block": [2, 2], "padding": "0"}, "padding"),
    ("padding-bool", {"shape_full": [6, 4], "shape_block": [2, 2], "padding": True}, "padding"),
    (
        "resolution-strings",
        {"shape_full": [6, 4], "shape_block": [2, 2], "resolution": ["1", "1"]},
        "resolution",
    ),
    (
        "resolution-scalar",
        {"shape_full": [6, 4], "shape_block": [2, 2], "resolution": 1},
        "resolution",
    ),
    (
        "axis-order-list",
        {"shape_full": [6, 4], "shape_block": [2, 2], "axis_order": ["z", "y"]},
        "axis_order",
    ),
]


@pytest.mark.parametrize(("raw", "key"), [m[1:] for m in MALFORMED], ids=[m[0] for m in MALFORMED])
def test_malformed_json_raises_metadata_error_naming_file(tmp_path, raw, key):
    path = tmp_path / METADATA_NAME
    path.write_text(json.dumps(raw))
    with pytest.raises(sd.MetadataError) as info:
        read_metadata_json(path)
    message = str(info.value)
    assert str(path) in message
    assert key in message
    assert isinstance(info.value, ValueError)
    assert isinstance(info.value, sd.SplitDatasetError)


@pytest.mark.parametrize(
    "text",
    [
        "{",
        "",
        "not json",
        '{"shape_full": [6, 4], "shape_block": [2, 2]',
        "[6, 4]",
        '"shape_full"',
        "null",
        "42",
        "\xff\xfe",
    ],
    ids=["unclosed", "empty", "text", "truncated", "list", "string", "null", "number", "binary"],
)
def test_invalid_or_non_object_json(tmp_path, text):
    path = tmp_path / METADATA_NAME
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(sd.MetadataError, match=re.escape(str(path))):
        read_metadata_json(path)


def test_malformed_json_reported_when_opening_dataset(tmp_path, write_plain, random_array):
    write_plain(
        tmp_path,
        random_array((6, 4), "u1"),
        (2,),
        metadata={"shape_full": [6, 4], "shape_block": "two"},
    )
    with pytest.raises(sd.MetadataError, match=r"stack_metadata\.json"):
        sd.SplitDataset(tmp_path)


def test_original_metadata_dict_order_and_defaults():
    d = original_metadata_dict((6, 4, 5), (4, 4, 5))
    assert list(d) == ORIGINAL_METADATA_KEYS
    # The exact text the original package writes for this dataset.
    assert json.dumps(d) == (
        '{"shape_full": [6, 4, 5], "shape_block": [4, 4, 5], "crop_start": [0, 0, 0], '
        '"crop_end": [0, 0, 0], "padding": [0, 0, 0], "resolution": [1, 1, 1], '
        '"axis_order": "zyx"}'
    )
    assert original_metadata_dict((2, 3, 4, 5), (1, 3, 4, 5))["axis_order"] == "tzyx"


def test_original_metadata_dict_numpy_values_serialize():
    d = original_metadata_dict(
        np.array([6, 4]),
        (np.int64(2), np.int32(4)),
        padding=(np.int16(1), 0),
        resolution=(np.float32(0.5), np.float64(2.0)),
        axis_order="yx",
    )
    assert json.loads(json.dumps(d)) == {
        "shape_full": [6, 4],
        "shape_block": [2, 4],
        "crop_start": [0, 0],
        "crop_end": [0, 0],
        "padding": [1, 0],
        "resolution": [0.5, 2.0],
        "axis_order": "yx",
    }


def test_write_metadata_json_atomic_round_trip(tmp_path):
    meta = original_metadata_dict((6, 4), (2, 4), resolution=(0.5, 1.5))
    (tmp_path / METADATA_NAME).write_text('{"old": true}')
    target = write_metadata_json(tmp_path, meta)
    assert target == tmp_path / METADATA_NAME
    assert os.listdir(tmp_path) == [METADATA_NAME]  # no temporary file left
    text = target.read_text()
    assert json.loads(text) == meta
    assert list(json.loads(text)) == list(meta)
    parsed = read_metadata_json(target)
    assert parsed.shape == (6, 4)
    assert parsed.resolution == (0.5, 1.5)


def test_write_metadata_json_failure_leaves_previous_file(tmp_path):
    (tmp_path / METADATA_NAME).write_text('{"old": true}')
    with pytest.raises(TypeError):
        write_metadata_json(tmp_path, {"shape_full": object()})
    assert os.listdir(tmp_path) == [METADATA_NAME]
    assert (tmp_path / METADATA_NAME).read_text() == '{"old": true}'


def test_write_metadata_json_custom_name(tmp_path):
    path = write_metadata_json(
        tmp_path, {"shape_full": [1], "shape_block": [1]}, name="x_stack_metadata.json"
    )
    assert path.name == "x_stack_metadata.json"
    assert os.listdir(tmp_path) == ["x_stack_metadata.json"]


# --- metadata too large or too deep ------------------------------------------------------------


def _nested(depth: int) -> str:
    return "[" * depth + "]" * depth


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (_nested(100_000), "nests too deep"),  # json itself would raise RecursionError
        (_nested(101), "nests 102 levels deep"),  # under the recursion limit, above the bound
        ('{"a": ' * 150 + "1" + "}" * 150, "nests 151 levels deep"),
    ],
    ids=["100000", "101", "objects-150"],
)
def test_deeply_nested_json_is_a_metadata_error(tmp_path, extra, fragment):
    path = tmp_path / METADATA_NAME
    path.write_text('{"shape_full": [6, 4], "shape_block": [2, 4], "x": ' + extra + "}")
    with pytest.raises(sd.MetadataError) as info:
        read_metadata_json(path)
    assert str(path) in str(info.value)
    assert fragment in str(info.value)


def test_an_integer_of_5000_digits_is_a_metadata_error(tmp_path):
    path = tmp_path / METADATA_NAME
    path.write_text('{"shape_full": [1' + "0" * 5000 + '], "shape_block": [2]}')
    with pytest.raises(sd.MetadataError, match=re.escape(f"{path}: cannot read the metadata")):
        read_metadata_json(path)


def test_nesting_up_to_the_bound_is_read(tmp_path):
    path = tmp_path / METADATA_NAME
    path.write_text('{"shape_full": [6, 4], "shape_block": [2, 4], "x": ' + _nested(99) + "}")
    metadata = read_metadata_json(path)
    assert metadata.shape == (6, 4)
    depth, value = 0, metadata.raw["x"]
    while isinstance(value, list):
        depth, value = depth + 1, value[0] if value else None
    assert depth == 99


def test_metadata_larger_than_16_mib_is_refused(tmp_path):
    path = tmp_path / METADATA_NAME
    head = '{"shape_full": [6, 4], "shape_block": [2, 4], "pad": "'
    path.write_text(head + "x" * (16 * 2**20 - len(head) - 1) + '"}')  # 16 MiB + 1 byte
    assert path.stat().st_size == 16 * 2**20 + 1
    with pytest.raises(sd.MetadataError, match=re.escape(f"{path}: larger than 16 MiB")):
        read_metadata_json(path)
    path.write_text(head + "x" * (16 * 2**20 - len(head) - 2) + '"}')  # exactly 16 MiB
    assert read_metadata_json(path).shape == (6, 4)


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        ({"shape_full": [1] * 65, "shape_block": [1]}, "'shape_full' has 65 entries"),
        ({"shape_full": [2**63], "shape_block": [1]}, "does not fit a 64-bit integer"),
        ({"shape_full": [10**30], "shape_block": [1]}, "does not fit a 64-bit integer"),
        ({"shape_full": [4], "shape_block": [1e300]}, "does not fit a 64-bit integer"),
        ({"shape_full": [4], "shape_block": [1], "padding": 2**64}, "does not fit"),
    ],
)
def test_absurd_geometry_is_a_metadata_error(raw, fragment):
    with pytest.raises(sd.MetadataError, match=re.escape(fragment)):
        parse_metadata(raw, source="meta.json")


def test_messages_quote_at_most_a_little_of_a_value():
    with pytest.raises(sd.MetadataError) as info:
        parse_metadata({"shape_full": ["x" * 10**6], "shape_block": [1]}, source="meta.json")
    assert len(str(info.value)) < 400


# --- legacy metadata (inside a block file) of absurd size --------------------------------------


def _legacy_file(path, full_size, block_size=None):
    import h5py

    with h5py.File(path, "w") as f:
        f["stack"] = np.zeros((2, 3), np.uint8)
        group = f.create_group("stack_metadata")
        for name, value in (("full_size", full_size), ("block_size", block_size or [2, 3])):
            sub = group.create_group(name)
            for i, v in enumerate(value):
                sub.attrs[f"i{i}"] = v


@pytest.mark.parametrize(
    ("full_size", "fragment"),
    [
        ([np.arange(1000)], "entry i0 is not an integer"),  # an array where an integer belongs
        ([2] * 65, "more than 64 entries"),
        ([np.int64(2**62), 3], None),  # read; the dataset is what the files hold
    ],
    ids=["array-attribute", "65-entries", "huge-length"],
)
def test_absurd_legacy_metadata_is_a_metadata_error(tmp_path, full_size, fragment):
    from splitds_dask._format.metadata import read_legacy_metadata

    _legacy_file(tmp_path / "0000.h5", full_size)
    if fragment is None:
        assert read_legacy_metadata(tmp_path / "0000.h5").shape == (2**62, 3)
        with pytest.warns(sd.IncompleteDatasetWarning, match=r"hold \(2, 3\)"):
            ds = sd.SplitDataset(tmp_path)
        np.testing.assert_array_equal(ds[:], np.zeros((2, 3), np.uint8), strict=True)
        return
    with pytest.raises(sd.MetadataError, match=re.escape(fragment)) as info:
        read_legacy_metadata(tmp_path / "0000.h5")
    assert "0000.h5" in str(info.value)
    with pytest.raises(sd.MetadataError, match=re.escape(fragment)):
        sd.SplitDataset(tmp_path)


def test_legacy_metadata_dataset_of_absurd_size_is_not_read(tmp_path):
    import h5py

    from splitds_dask._format.metadata import read_legacy_metadata

    path = tmp_path / "0000.h5"
    with h5py.File(path, "w") as f:
        f["stack"] = np.zeros((2, 3), np.uint8)
        group = f.create_group("stack_metadata")
        # 10^12 int64 declared, nothing written: a few KB on disk.
        group.create_dataset("full_size", shape=(10**12,), dtype=np.int64, chunks=(1024,))
    assert path.stat().st_size < 100_000
    with pytest.raises(sd.MetadataError, match=r"legacy 'full_size' holds an array of shape"):
        read_legacy_metadata(path)

"""Tests of the original package's writers: ``EmptySplitDataset`` and ``save_to_split_dataset``.

Round trips on numpy 2, the usage patterns of fimpy (block-by-block workers, the
``StackContainerLs`` subclass), and interoperability: what is written here is read back equal
by the *original* ``split_dataset`` 0.4.4 (old venv, one subprocess for every dataset).
"""

from __future__ import annotations

import json
import math
import tempfile
import warnings
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import hdf5plugin  # noqa: F401  (registers Blosc for h5py)
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import splitds_dask as split_dataset
from splitds_dask import Blocks, EmptySplitDataset, SplitDataset, save_to_split_dataset
from splitds_dask._compat.writing import _compression_args
from splitds_dask._storage.block_file import write_block
from tests.helpers.format_facts import ORIGINAL_METADATA_KEYS
from tests.helpers.oldpkg import run_old_checked
from tests.helpers.timeouts import TIMEOUT

RNG = np.random.default_rng(7)


def _data(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    dt = np.dtype(dtype)
    if dt == bool:
        return RNG.random(shape) < 0.5
    if dt.kind == "c":
        return (RNG.normal(size=shape) + 1j * RNG.normal(size=shape)).astype(dt)
    if dt.kind == "f":
        return RNG.normal(size=shape).astype(dt)
    info = np.iinfo(dt)
    return RNG.integers(info.min, info.max, size=shape, endpoint=True, dtype=dt)


def _crop_region(crop: Any, shape: tuple[int, ...]) -> tuple[slice, ...]:
    if crop is None:
        return tuple(slice(None) for _ in shape)
    return tuple(slice(lo, n - hi) for (lo, hi), n in zip(crop, shape, strict=True))


def _read_json(folder: Path) -> dict:
    return json.loads((folder / "stack_metadata.json").read_text())


# --------------------------------------------------------------------------------------------
# save_to_split_dataset round trips


ROUND_TRIPS = [
    # shape, block_size, crop, padding, dtype
    ((6, 4, 5), (4, 3, None), None, 0, "uint16"),
    ((6, 4, 5), (4, 3, 5), ((1, 0), (0, 1), (1, 1)), 0, "float32"),
    ((7, 3, 10, 12), (3, 1, 10, 12), None, 0, "int16"),
    ((7, 3, 10, 12), (2, 1, 4, 5), ((0, 2), (1, 0), (2, 2), (3, 0)), 0, "float64"),
    ((20,), (6,), None, 0, "int8"),
    ((9, 11), (4, 4), None, (1, 2), "uint8"),
    ((9, 11), 4, ((1, 1), (2, 0)), 2, "bool"),
    ((5, 6, 7), (2, 2, 3), None, 1, "int64"),
    ((5, 6, 7), (10, 10, 10), None, 0, "float16"),
    ((8, 2, 6, 6), (3, None, 4), ((1, 0), (0, 0), (1, 1), (0, 2)), (2, 0, 1, 0), "complex64"),
]


@pytest.mark.parametrize(("shape", "block", "crop", "padding", "dtype"), ROUND_TRIPS)
def test_save_to_split_dataset_round_trip(
    tmp_path: Path, shape: tuple, block: Any, crop: Any, padding: Any, dtype: str
) -> None:
    data = _data(shape, dtype)
    ds = save_to_split_dataset(
        data, tmp_path, block_size=block, crop=crop, padding=padding, prefix="saved"
    )
    expected = data[_crop_region(crop, shape)]
    assert isinstance(ds, SplitDataset)
    assert ds.root == tmp_path / ("saved_cropped" if crop is not None else "saved")
    assert ds.shape == expected.shape
    assert ds.dtype == expected.dtype
    np.testing.assert_array_equal(ds[...], expected)
    geometry = Blocks(shape, block, padding=padding, crop=crop)
    assert ds.shape_block == geometry.shape_block
    assert list(ds.padding) == geometry.padding
    meta = _read_json(ds.root)
    assert list(meta) == ORIGINAL_METADATA_KEYS
    assert meta["shape_full"] == list(expected.shape)
    assert meta["shape_block"] == list(geometry.shape_block)
    assert meta["crop_start"] == meta["crop_end"] == [0] * len(shape)
    assert meta["padding"] == geometry.padding
    assert meta["resolution"] == [1] * len(shape)
    names = sorted(p.name for p in ds.root.glob("*.h5"))
    assert names == [f"{i:04d}.h5" for i in range(geometry.n_blocks)]
    # every file holds exactly its (padded) block, under stack_{N}D
    for name, (_, slices) in zip(names, geometry.slices(), strict=True):
        with h5py.File(ds.root / name, "r") as f:
            assert list(f) == [f"stack_{len(shape)}D"]
            stored = f[f"stack_{len(shape)}D"][()]
        np.testing.assert_array_equal(stored.astype(data.dtype), data[slices])


@pytest.mark.slow
@given(
    st.lists(st.integers(1, 7), min_size=1, max_size=4).flatmap(
        lambda shape: st.tuples(
            st.just(tuple(shape)),
            st.lists(st.one_of(st.none(), st.integers(1, 8)), max_size=len(shape)),
            st.lists(st.integers(0, 3), min_size=len(shape), max_size=len(shape)),
            st.lists(
                st.tuples(st.integers(0, 2), st.integers(0, 2)),
                min_size=len(shape),
                max_size=len(shape),
            ),
            st.booleans(),
        )
    )
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_round_trip_property(args: tuple) -> None:
    shape, block, padding, crop, use_crop = args
    crop = [(lo, hi) if lo + hi < n else (0, 0) for (lo, hi), n in zip(crop, shape, strict=True)]
    if not use_crop:
        crop = None
    data = np.arange(math.prod(shape), dtype=np.int32).reshape(shape)
    with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
        warnings.simplefilter("error")  # a fresh folder: no "Existing directory" warning
        ds = save_to_split_dataset(
            data, tmp, block_size=tuple(block), crop=crop, padding=padding, prefix="p"
        )
        np.testing.assert_array_equal(ds[...], data[_crop_region(crop, shape)])
        # and from the dataset just written (block_size taken from it)
        again = save_to_split_dataset(ds, tmp, prefix="again")
        assert again.shape_block == ds.shape_block
        np.testing.assert_array_equal(again[...], ds[...])


def test_save_block_size_from_dataset_and_inputs(tmp_path: Path) -> None:
    data = _data((6, 5, 4), "uint16")
    with pytest.raises(ValueError, match="block_size"):
        save_to_split_dataset(data, tmp_path, prefix="nope")
    first = save_to_split_dataset(data, tmp_path, block_size=(4, 2), prefix="first")
    second = save_to_split_dataset(first, tmp_path, crop=((1, 1), (0, 0), (0, 1)), prefix="second")
    assert second.root.name == "second_cropped"
    assert second.shape_block == (4, 2, 3)
    np.testing.assert_array_equal(second[...], data[1:5, :, :3])
    # a dask array works too (anything with shape and data[slices])
    third = save_to_split_dataset(
        da.from_array(data, chunks=2), tmp_path, block_size=(3,), prefix="d"
    )
    np.testing.assert_array_equal(third[...], data)
    # prefix "" and no crop: the dataset is root_name itself, as in the original
    fourth = save_to_split_dataset(data, tmp_path / "plain", block_size=(6, 5, 4))
    assert fourth.root == tmp_path / "plain"
    assert (tmp_path / "plain" / "0000.h5").is_file()


@pytest.mark.parametrize(
    ("compression", "filters"),
    [
        ("blosc", {32001}),
        (("blosc", 5), {32001}),
        ("blosc:zstd", {32001}),
        ("zlib", {1, 2}),
        (True, {1, 2}),
        ("default", {1, 2}),
        (None, set()),
        (False, set()),
        ("none", set()),
    ],
)
def test_compression_values(tmp_path: Path, compression: Any, filters: set) -> None:
    data = _data((40, 30), "uint16")
    ds = save_to_split_dataset(data, tmp_path / "c", block_size=(20,), compression=compression)
    np.testing.assert_array_equal(ds[...], data)
    with h5py.File(tmp_path / "c" / "0000.h5", "r") as f:
        dcpl = f["stack_2D"].id.get_create_plist()
        found = {dcpl.get_filter(i)[0] for i in range(dcpl.get_nfilters())}
    assert found == filters


def test_compression_errors(tmp_path: Path) -> None:
    assert _compression_args(("blosc:lz4", 3)) == ("blosc:lz4", 3)
    with pytest.raises(TypeError, match="unsupported compression"):
        _compression_args(3)
    with pytest.raises(ValueError, match="unknown compression"):
        save_to_split_dataset(np.zeros(3), tmp_path / "x", block_size=(3,), compression="lzo")
    assert not (tmp_path / "x").exists()


# --------------------------------------------------------------------------------------------
# EmptySplitDataset


def test_empty_split_dataset_basics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        new = EmptySplitDataset(
            tmp_path / "exp",
            "anatomy",
            shape_full=(5, 6, 7),
            shape_block=(2, 6, 7),
            resolution=(2.0, 0.5, 0.5),
        )
    assert new.root == tmp_path / "exp" / "anatomy"
    assert new.root.is_dir()
    assert new.files == ["0000.h5", "0001.h5", "0002.h5"]
    assert all(isinstance(f, str) for f in new.files)
    assert new.resolution == (2.0, 0.5, 0.5)
    assert isinstance(new, Blocks)
    data = _data((5, 6, 7), "float32")
    for i, (_, slices) in enumerate(new.slices()):
        new.save_block_data(i, data[slices], verbose=i == 0)
    assert "0000.h5" in capsys.readouterr().out
    with h5py.File(new.root / "0001.h5", "r") as f:
        assert list(f) == ["stack"]
        assert f["stack"].id.get_create_plist().get_filter(0)[0] == 32001
    ds = new.finalize()
    assert isinstance(ds, SplitDataset)
    assert ds.resolution == (2.0, 0.5, 0.5)
    np.testing.assert_array_equal(ds[...], data)
    assert (new.root / "stack_metadata.json").read_text() == (
        '{"shape_full": [5, 6, 7], "shape_block": [2, 6, 7], "crop_start": [0, 0, 0], '
        '"crop_end": [0, 0, 0], "padding": [0, 0, 0], "resolution": [2.0, 0.5, 0.5], '
        '"axis_order": "zyx"}'
    )
    with pytest.warns(UserWarning, match="Existing directory"):
        EmptySplitDataset(tmp_path / "exp", "anatomy", shape_full=(5,), shape_block=(2,))


def test_empty_split_dataset_cropped_4d_metadata(tmp_path: Path) -> None:
    new = EmptySplitDataset(
        tmp_path,
        "c",
        shape_full=(6, 2, 8, 9),
        shape_block=(4, 1),
        crop=((1, 0), (0, 0), (2, 2), (0, 3)),
        padding=1,
    )
    data = _data((6, 2, 8, 9), "uint16")
    for i, (_, slices) in enumerate(new.slices()):
        write_block(new.root / new.files[i], data[slices], key="stack_4D")
    ds = new.finalize()
    np.testing.assert_array_equal(ds[...], data[1:, :, 2:6, :6])
    meta = _read_json(new.root)
    assert meta["shape_full"] == [5, 2, 4, 6]
    assert meta["padding"] == [1, 1, 0, 0]
    assert meta["axis_order"] == "tzyx"
    assert meta["resolution"] == [1, 1, 1, 1]


def test_finalize_with_missing_blocks_raises(tmp_path: Path) -> None:
    new = EmptySplitDataset(tmp_path, "incomplete", shape_full=(6, 4), shape_block=(2, 4))
    new.save_block_data(0, np.zeros((2, 4)))
    with pytest.raises(ValueError, match="not written"):  # the original: ValueError (reshape)
        new.finalize()
    assert (new.root / "stack_metadata.json").is_file()  # written first, as in the original
    # a block missing in the middle
    gap = EmptySplitDataset(tmp_path, "gap", shape_full=(6, 4), shape_block=(2, 4))
    gap.save_block_data(0, np.zeros((2, 4)))
    gap.save_block_data(2, np.zeros((2, 4)))
    with pytest.raises(ValueError, match=r"0001\.h5"):
        gap.finalize()


def test_file_names_widen_beyond_9999_blocks(tmp_path: Path) -> None:
    small = EmptySplitDataset(tmp_path, "small", shape_full=(10000,), shape_block=(1,))
    assert small.files[0] == "0000.h5"
    assert small.files[-1] == "9999.h5"
    big = EmptySplitDataset(tmp_path, "big", shape_full=(10001,), shape_block=(1,))
    assert big.files[0] == "00000.h5"
    assert big.files[-1] == "10000.h5"
    assert sorted(big.files) == big.files


def test_import_as_split_dataset() -> None:
    # `import splitds_dask as split_dataset`, as code written for the original does
    assert split_dataset.Blocks is Blocks
    assert split_dataset.EmptySplitDataset is EmptySplitDataset
    assert split_dataset.save_to_split_dataset is save_to_split_dataset
    assert split_dataset.SplitDataset is SplitDataset
    assert issubclass(split_dataset.EmptySplitDataset, split_dataset.Blocks)


# --------------------------------------------------------------------------------------------
# fimpy's patterns (reference section 4.1)


@pytest.mark.parametrize(
    ("shape", "shape_block", "padding"),
    [
        ((6, 3, 10, 12), (2, 3, 10, 12), 0),
        ((7, 4, 9, 10), (3, 2, 4, 5), 0),
        ((5, 6, 20, 20), (2, 3, 8, 8), (0, 1, 3, 3)),  # padded (fimpy's grow_rois style)
    ],
)
def test_fimpy_worker_pattern(
    tmp_path: Path, shape: tuple, shape_block: tuple, padding: Any
) -> None:
    movie = _data(shape, "uint16")
    source = save_to_split_dataset(
        movie, tmp_path / "exp", block_size=shape_block, prefix="original"
    )
    new_dataset = EmptySplitDataset(
        root=source.root.parent,
        name="dff",
        shape_full=source.shape,
        shape_block=source.shape_block,
        padding=padding,
        resolution=source.resolution,
    )
    # what each joblib worker gets: the (picklable) source, a block, an output file name
    jobs = [
        (source, block, str(new_dataset.root / new_dataset.files[i]))
        for i, (_, block) in enumerate(new_dataset.slices(as_tuples=True))
    ]
    for dataset, block, out_file in jobs:
        assert all(type(v) is np.int32 for pair in block for v in pair)
        vid = dataset[Blocks.block_to_slices(block)]
        write_block(out_file, vid.astype(np.float32) * 2, key="stack_4D")
    result = new_dataset.finalize()
    np.testing.assert_array_equal(result[...], movie.astype(np.float32) * 2)
    # roi_extraction.merging: shape_full, padding and block_starts of the finalized dataset
    assert tuple(result.shape_full) == shape
    assert list(result.padding) == new_dataset.padding
    np.testing.assert_array_equal(result.block_starts, new_dataset.block_starts)
    assert result.root.parent == source.root.parent
    assert result.resolution == source.resolution


class StackContainerLike(EmptySplitDataset):
    """The shape of fimpy's ``StackContainerLs`` (loading/volumetric.py:128-216).

    Built with ``shape_full == shape_block`` (the length is unknown), overrides ``files``,
    numbers its block files from 1 and sets ``shape_full`` before ``super().finalize()``.
    """

    def __init__(self, root: Path, **kwargs: Any) -> None:
        super().__init__(root, "original", **kwargs)
        self.frames_per_block = self.shape_block[0]
        self.n_planes = self.shape_block[1]
        self.files = []
        self.buffer: list[np.ndarray] = []
        self.block_count = 0
        self.total = 0
        self.plane_shape: tuple[int, ...] | None = None

    def pour(self, volumes: np.ndarray) -> None:
        self.plane_shape = volumes.shape[2:]
        for volume in volumes:
            self.buffer.append(volume)
            if len(self.buffer) == self.frames_per_block:
                self.save_block()

    def save_block(self) -> None:
        self.block_count += 1
        self.total += len(self.buffer)
        self.save_block_data(self.block_count, np.stack(self.buffer), verbose=False)
        self.buffer = []

    def finalize(self) -> SplitDataset:
        if self.buffer:
            self.save_block()
        assert self.plane_shape is not None
        self.shape_full = (self.total, self.n_planes, *self.plane_shape)
        return super().finalize()


@pytest.mark.parametrize(("n_volumes", "per_block"), [(11, 4), (8, 4), (3, 5), (1, 1)])
def test_stack_container_subclass_pattern(tmp_path: Path, n_volumes: int, per_block: int) -> None:
    volumes = _data((n_volumes, 3, 6, 7), "uint16")
    container = StackContainerLike(
        tmp_path,
        shape_full=(per_block, 3, 6, 7),
        shape_block=(per_block, 3, 6, 7),
        resolution=(1, 2, 0.6, 0.6),
    )
    assert container.root == tmp_path / "original"
    for start in range(0, n_volumes, 3):  # poured in pieces unrelated to the blocks
        container.pour(volumes[start : start + 3])
    ds = container.finalize()
    names = sorted(p.name for p in container.root.glob("*.h5"))
    assert names == [f"{i:04d}.h5" for i in range(1, math.ceil(n_volumes / per_block) + 1)]
    assert ds.shape == volumes.shape
    np.testing.assert_array_equal(ds[...], volumes)
    meta = _read_json(container.root)
    assert meta["shape_full"] == list(volumes.shape)
    assert meta["shape_block"] == [min(per_block, n_volumes), 3, 6, 7]
    assert meta["resolution"] == [1, 2, 0.6, 0.6]


# --------------------------------------------------------------------------------------------
# Interoperability: the original package reads what is written here.

OLD_READER = r"""
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from split_dataset import SplitDataset

manifest = json.load(open(sys.argv[1]))
out = {}
for name, entry in manifest.items():
    try:
        ds = SplitDataset(entry["folder"])
        got = ds[tuple(slice(None) for _ in ds.shape)]
        want = np.load(entry["expected"])
        window = entry.get("window")
        sub = ds[tuple(slice(a, b) for a, b in window)] if window else None
        out[name] = {
            "equal": bool(got.shape == want.shape and got.dtype == want.dtype
                          and np.array_equal(got, want)),
            "dtype": [str(got.dtype), str(want.dtype)],
            "shape": list(ds.shape),
            "shape_block": list(ds.shape_block),
            "resolution": list(ds.resolution),
            "data_key": ds.data_key,
            "sub_equal": None if sub is None else bool(np.array_equal(
                sub, want[tuple(slice(a, b) for a, b in window)])),
        }
    except Exception as e:
        out[name] = {"error": type(e).__name__ + ": " + str(e)}
print(json.dumps(out))
"""


def _interop_datasets(base: Path) -> dict[str, dict]:
    """Write datasets in every supported way; return the manifest for the old reader."""
    manifest: dict[str, dict] = {}

    def add(name: str, folder: Path, expected: np.ndarray, **extra: Any) -> None:
        path = base / f"{name}.npy"
        np.save(path, expected)
        manifest[name] = {"folder": str(folder), "expected": str(path), **extra}

    for dtype in INTEROP_DTYPES:
        data = _data((7, 5, 6), dtype)
        ds = save_to_split_dataset(data, base, block_size=(3, 2, None), prefix=f"dt_{dtype}")
        add(f"dtype_{dtype}", ds.root, data)
    data = _data((6, 3, 20, 30), "uint16")  # blocks > 300 elements: chunked, compressed
    for compression in ("blosc", "zlib", None, ("blosc", 9), "blosc:zstd"):
        label = str(compression).replace(" ", "").replace("'", "")
        ds = save_to_split_dataset(
            data, base, block_size=(4, 1), prefix=f"c_{label}", compression=compression
        )
        add(f"compression_{label}", ds.root, data, window=[[1, 5], [0, 2], [3, 17], [0, 30]])
    data = _data((9, 8, 10), "float32")
    crop = ((2, 1), (0, 3), (1, 1))
    ds = save_to_split_dataset(data, base, block_size=(2, 4, 5), crop=crop, prefix="cropped")
    add("cropped", ds.root, data[2:8, 0:5, 1:9])
    # padding whose grid is the unpadded one (the original ignores padding: it can open only
    # these; reference 1.6)
    data = _data((6, 9), "int16")
    ds = save_to_split_dataset(data, base, block_size=(3, 3), padding=(1, 0), prefix="padded")
    assert ds.padding == (1, 0)
    add("padded_same_grid", ds.root, data)
    # EmptySplitDataset + save_block_data (key "stack"), with a resolution
    data = _data((5, 4, 6, 6), "uint16")
    new = EmptySplitDataset(
        base, "empty", shape_full=data.shape, shape_block=(2, 4, 6, 6), resolution=(1, 5, 0.5, 0.5)
    )
    for i, (_, slices) in enumerate(new.slices()):
        new.save_block_data(i, data[slices])
    new.finalize()
    add("empty_split_dataset", new.root, data)
    # fimpy's worker pattern (key stack_4D via write_block, files from new.files)
    out = EmptySplitDataset(base, "dff", shape_full=data.shape, shape_block=(3, 2, 6, 6))
    for i, (_, block) in enumerate(out.slices(as_tuples=True)):
        write_block(
            str(out.root / out.files[i]), data[Blocks.block_to_slices(block)] // 2, key="stack_4D"
        )
    out.finalize()
    add("fimpy_worker", out.root, data // 2)
    # the StackContainerLs pattern: files numbered from 1
    volumes = _data((10, 2, 5, 6), "uint16")
    container = StackContainerLike(base / "ls", shape_full=(4, 2, 5, 6), shape_block=(4, 2, 5, 6))
    container.pour(volumes)
    container.finalize()
    add("stack_container", container.root, volumes)
    return manifest


@pytest.fixture(scope="module")
def original_reads(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    base = tmp_path_factory.mktemp("interop")
    manifest = _interop_datasets(base)
    (base / "manifest.json").write_text(json.dumps(manifest))
    proc = run_old_checked(OLD_READER, base / "manifest.json", timeout=TIMEOUT)
    return manifest, json.loads(proc.stdout.strip().splitlines()[-1])


INTEROP_DTYPES = (
    "uint16",
    "int16",
    "uint8",
    "int8",
    "int32",
    "int64",
    "uint64",
    "float16",
    "float32",
    "float64",
    "bool",
    "complex64",
)
INTEROP_NAMES = (
    [f"dtype_{d}" for d in INTEROP_DTYPES]
    + [f"compression_{c}" for c in ("blosc", "zlib", "None", "(blosc,9)", "blosc:zstd")]
    + ["cropped", "padded_same_grid", "empty_split_dataset", "fimpy_worker", "stack_container"]
)


@pytest.mark.subprocess
@pytest.mark.parametrize("name", INTEROP_NAMES)
def test_original_package_reads_what_we_write(name: str, original_reads: tuple[dict, dict]) -> None:
    manifest, results = original_reads
    assert set(results) == set(INTEROP_NAMES)
    result = results[name]
    assert "error" not in result, result
    assert result["equal"], result
    expected = np.load(manifest[name]["expected"])
    assert result["shape"] == list(expected.shape)
    ours = SplitDataset(manifest[name]["folder"])
    assert result["shape_block"] == list(ours.shape_block)
    if "window" in manifest[name]:
        assert result["sub_equal"], result
    if name == "empty_split_dataset":
        assert result["data_key"] == "stack"
        assert result["resolution"] == [1, 5, 0.5, 0.5]
    elif name not in ("fimpy_worker", "stack_container"):
        assert result["data_key"] == f"stack_{expected.ndim}D"


def test_empty_split_dataset_holds_the_writer_lock_until_finalize(tmp_path: Path) -> None:
    import pickle

    from splitds_dask._storage.lock import WriterLockedError

    new = EmptySplitDataset(tmp_path, "dff", shape_full=(4, 3), shape_block=(2, 3))
    with pytest.raises(WriterLockedError, match=rf"{tmp_path / 'dff'}: another writer"):
        split_dataset.to_split_dataset(np.zeros((4, 3)), tmp_path / "dff", overwrite=True)
    copy = pickle.loads(pickle.dumps(new))  # what a worker process gets: the lock stays here
    with pytest.raises(WriterLockedError):
        copy.finalize()
    for i in range(new.n_blocks):
        new.save_block_data(i, np.full((2, 3), i, np.uint8))
    ds = new.finalize()
    np.testing.assert_array_equal(
        ds[...], np.repeat(np.arange(2, dtype=np.uint8), 2)[:, None] * np.ones(3, np.uint8)
    )
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dff"], "the lock file is gone"
    # Free again: a pickled copy finalizes on its own, taking the lock for the metadata.
    assert copy.finalize().shape == (4, 3)

"""napari: the npe2 manifest, the reader it contributes, and napari itself (headless, no Qt).

Reads are counted through :meth:`SplitDataset.__getitem__`, the only way the reader and napari
reach the files; :meth:`SplitDataset.__array__` is made to fail where nothing may be
materialised.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dask.array as da
import h5py
import numpy as np
import pytest
from npe2 import PluginManager, PluginManifest

import splitds_dask as sd
from splitds_dask import SplitDataset
from splitds_dask._integrations.napari import estimate_contrast_limits, napari_get_reader
from tests.helpers.entry_points import declared_entry_points, ensure_entry_points

MANIFEST = Path(sd.__file__).parent / "napari.yaml"
SRC = Path(sd.__file__).parents[1]
UM = "micrometer"


class Reads:
    """Every ``SplitDataset.__getitem__`` call made while installed: keys and elements read."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls: list[tuple[Any, int]] = []
        original = SplitDataset.__getitem__

        def counted(dataset: SplitDataset, key: Any) -> Any:
            out = original(dataset, key)
            self.calls.append((key, np.asarray(out).size))
            return out

        def refuse(dataset: SplitDataset, *args: Any, **kwargs: Any) -> np.ndarray:
            raise AssertionError(f"{dataset} was materialised with __array__")

        monkeypatch.setattr(SplitDataset, "__getitem__", counted)
        monkeypatch.setattr(SplitDataset, "__array__", refuse)

    @property
    def elements(self) -> int:
        return sum(n for _, n in self.calls)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return Reads(monkeypatch)


@pytest.fixture
def movie(tmp_path: Path) -> tuple[np.ndarray, SplitDataset]:
    """t z y x, one block file per 4 time points; plane (t, z) holds values 1000*t + 10*z + [0, 9]."""
    t, z, y, x = np.ogrid[:20, :4, :6, :5]
    data = (1000 * t + 10 * z + (y + x) % 10).astype(np.uint16)
    ds = sd.to_split_dataset(
        data, tmp_path / "movie", block_shape=4, scale=(0.5, 7, 0.6, 0.6), units=("s", UM, UM, UM)
    )
    return data, ds


# --- the manifest ---------------------------------------------------------------------------


def test_manifest_is_valid() -> None:
    manifest = PluginManifest.from_file(MANIFEST)
    assert manifest.name == "splitds-dask"
    (reader,) = manifest.contributions.readers
    assert reader.accepts_directories
    assert set(reader.filename_patterns) == {"*.h5", "*.hdf5"}
    (command,) = manifest.contributions.commands
    assert command.id == reader.command
    assert command.python_name == "splitds_dask._integrations.napari:napari_get_reader"
    manifest.validate_imports()  # every python_name imports and resolves


@pytest.mark.subprocess
def test_npe2_validate_command() -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "npe2", "validate", str(MANIFEST), "--imports"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "valid" in proc.stdout


def test_manifest_found_through_the_entry_point(tmp_path, monkeypatch) -> None:
    assert declared_entry_points()["napari.manifest"] == {
        "splitds-dask": "splitds_dask:napari.yaml"
    }
    ensure_entry_points(tmp_path, monkeypatch)
    manifest = PluginManifest.from_distribution("splitds-dask")
    assert manifest == PluginManifest.from_file(MANIFEST)


# --- the reader -----------------------------------------------------------------------------


def test_reader_opens_a_folder_lazily(movie, reads) -> None:
    data, ds = movie
    reader = napari_get_reader(str(ds.root))
    assert callable(reader)
    ((layer_data, kwargs, layer_type),) = reader(str(ds.root))
    assert layer_type == "image"
    assert isinstance(layer_data, da.Array)
    assert layer_data.chunks == ds.chunks
    assert kwargs["name"] == "movie"
    assert kwargs["scale"] == (0.5, 7.0, 0.6, 0.6)
    assert kwargs["axis_labels"] == ("t", "z", "y", "x")
    assert kwargs["units"] == ("s", UM, UM, UM)
    assert kwargs["multiscale"] is False
    assert kwargs["rgb"] is False
    # five planes, spread over the 80 (t, z) planes: linear positions 0, 20, 40, 59, 79
    planes = [(0, 0), (5, 0), (10, 0), (14, 3), (19, 3)]
    assert reads.elements == 5 * 6 * 5
    assert [key for key, _ in reads.calls] == planes
    assert kwargs["contrast_limits"] == (0.0, 19039.0)  # 1000*19 + 10*3 + 9
    assert reads.elements < data.size / 10
    np.testing.assert_array_equal(layer_data.compute(), data)


def test_reader_gives_pixels_for_unknown_units(tmp_path) -> None:
    data = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    root = sd.to_split_dataset(data, tmp_path / "zyx").root
    ((_, kwargs, _),) = napari_get_reader(str(root))(str(root))
    assert kwargs["axis_labels"] == ("z", "y", "x")
    assert kwargs["scale"] == (1.0, 1.0, 1.0)
    assert kwargs["units"] == ("pixel",) * 3
    assert kwargs["contrast_limits"] == (0.0, 23.0)


def test_reader_opens_several_paths(movie, tmp_path) -> None:
    _, ds = movie
    other = sd.to_split_dataset(np.ones((3, 4, 5), np.int16), tmp_path / "other").root
    paths = [str(ds.root), str(other)]
    layers = napari_get_reader(paths)(paths)
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["movie", "other"]
    assert napari_get_reader([*paths, str(tmp_path / "missing")]) is None
    assert napari_get_reader(ds.root)(ds.root)[0][1]["name"] == "movie"  # a Path
    assert napari_get_reader([]) is None


def test_reader_opens_legacy_variants() -> None:
    root = Path(__file__).parent / "fixtures" / "legacy" / "sashimi_2024" / "original"
    ((data, kwargs, _),) = napari_get_reader(str(root))(str(root))
    assert kwargs["scale"] == (1.0, 7.0, 0.6, 0.6)
    assert kwargs["units"] == ("pixel", UM, UM, UM)
    np.testing.assert_array_equal(data.compute(), SplitDataset(root)[...])


@pytest.mark.parametrize(
    ("shape", "n_planes", "expected_keys"),
    [
        ((7,), 5, [()]),  # 1-D and 2-D: the whole array is one plane
        ((4, 6), 5, [()]),
        ((3, 4, 6), 5, [(0,), (1,), (2,)]),  # fewer planes than asked for
        ((10, 4, 6), 3, [(0,), (4,), (9,)]),  # np.linspace(0, 9, 3) = 0, 4.5, 9; 4.5 rounds to 4
        ((2, 3, 4, 6), 2, [(0, 0), (1, 2)]),
    ],
)
def test_contrast_limits_read_few_planes(shape, n_planes, expected_keys) -> None:
    data = np.random.default_rng(1).normal(size=shape)
    keys: list = []

    class Recorder:
        def __init__(self) -> None:
            self.shape, self.dtype = data.shape, data.dtype

        def __getitem__(self, key: tuple) -> np.ndarray:
            keys.append(key)
            return data[key]

    low, high = estimate_contrast_limits(Recorder(), n_planes=n_planes)
    assert keys == expected_keys
    sampled = np.stack([data[k] for k in expected_keys])
    assert (low, high) == (sampled.min(), sampled.max())


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (np.zeros((3, 4, 4), np.uint16), (0.0, 1.0)),  # constant: napari needs low < high
        (np.full((3, 4, 4), 7.5), (7.5, 8.5)),
        (np.full((3, 4, 4), np.nan), (0.0, 1.0)),
        (np.array([[np.nan, 1.0], [np.inf, -2.0]]), (-2.0, 1.0)),
        (np.ones((2, 3, 3), bool), (0.0, 1.0)),
        (np.array([[3 + 4j, 0]]), (0.0, 5.0)),  # complex: magnitudes
        (np.zeros((0, 4, 4), np.uint16), (0.0, 1.0)),
    ],
)
def test_contrast_limits_edge_cases(values, expected) -> None:
    assert estimate_contrast_limits(values) == expected


def test_layer_planes_convert_with_numpy(movie) -> None:
    # napari shows a plane with np.asarray(data[index]); dask's array-expr Array has no
    # __array__ (np.asarray wraps it in an object array), so the reader's array adds it there.
    data, ds = movie
    ((layer_data, _, _),) = napari_get_reader(str(ds.root))(str(ds.root))
    assert isinstance(layer_data, da.Array)
    assert layer_data.name == ds.to_dask().name
    np.testing.assert_array_equal(np.asarray(layer_data[3, 1]), data[3, 1], strict=True)
    np.testing.assert_array_equal(np.asarray(layer_data[2:5][1, 0]), data[3, 0], strict=True)


# --- single block files ---------------------------------------------------------------------


def test_reader_opens_one_block_file_with_h5py(movie) -> None:
    data, ds = movie
    path = str(ds.files[2, 0, 0, 0])
    ((block, kwargs, layer_type),) = napari_get_reader(path)(path)
    assert layer_type == "image"
    np.testing.assert_array_equal(block, data[8:12], strict=True)
    assert kwargs["name"] == "0002"
    assert kwargs["contrast_limits"] == (8000.0, 11039.0)


@pytest.mark.parametrize("dtype", ["bool", ">u2", "float32"])
def test_block_file_dtypes(tmp_path, random_array, dtype) -> None:
    data = random_array((3, 5, 4), np.dtype(dtype).newbyteorder("=")).astype(dtype)
    path = tmp_path / "block.hdf5"
    with h5py.File(path, "w") as f:
        if dtype == "bool":  # as PyTables writes it: an 8-bit bitfield
            space = h5py.h5s.create_simple(data.shape)
            dsid = h5py.h5d.create(f.id, b"stack_3D", h5py.h5t.STD_B8LE, space)
            dsid.write(h5py.h5s.ALL, h5py.h5s.ALL, data.view(np.uint8), mtype=h5py.h5t.NATIVE_UINT8)
            dsid.close()
        else:
            f["stack_3D"] = data
        f["shifts"] = np.zeros(3)
    ((block, _, _),) = napari_get_reader(str(path))(str(path))
    assert block.dtype == np.dtype(dtype).newbyteorder("=")
    np.testing.assert_array_equal(block, data)


class _Touch:
    """Unpickling this creates a file: the marker of code run from a file's contents."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple:
        return (Path.touch, (self.marker,))


def test_block_file_contents_are_never_unpickled(tmp_path) -> None:
    marker = tmp_path / "unpickled"
    payload = pickle.dumps(_Touch(marker), protocol=2)
    path = tmp_path / "evil.h5"
    with h5py.File(path, "w") as f:
        f["stack_3D"] = np.arange(24, dtype=np.uint16).reshape(2, 3, 4)
        f.attrs["TITLE"] = np.void(payload)  # PyTables unpickles attributes like this one
        f["stack_3D"].attrs["payload"] = np.bytes_(payload)
    ((block, _, _),) = napari_get_reader(str(path))(str(path))
    np.testing.assert_array_equal(block, np.arange(24).reshape(2, 3, 4))
    assert not marker.exists()
    pickle.loads(payload)  # the payload is live: loading it would have left the marker
    assert marker.exists()


def test_reader_declines_what_it_cannot_open(tmp_path) -> None:
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "a.txt").write_text("x")
    (tmp_path / "data.txt").write_text("x")
    with h5py.File(tmp_path / "no_stack.h5", "w") as f:
        f["traces"] = np.zeros((3, 4))
    with h5py.File(tmp_path / "strings.h5", "w") as f:
        f["stack"] = np.array([b"a", b"b"])
    with h5py.File(tmp_path / "scalar.h5", "w") as f:
        f["stack"] = 3
    (tmp_path / "garbage.h5").write_bytes(b"not hdf5")
    for name in ("notes", "data.txt", "no_stack.h5", "strings.h5", "scalar.h5", "garbage.h5"):
        assert napari_get_reader(str(tmp_path / name)) is None, name
    assert napari_get_reader(str(tmp_path / "missing")) is None


def test_broken_dataset_is_declined(movie) -> None:
    _, ds = movie
    (ds.root / "0000.h5").write_bytes(b"not hdf5")  # its dtype cannot be known
    assert napari_get_reader(str(ds.root)) is None


# --- napari itself (headless: ViewerModel, no Qt) ----------------------------------------------


@pytest.fixture
def big(tmp_path: Path) -> SplitDataset:
    """More than 10**7 elements: napari's calc_data_range samples planes above that size (napari
    0.9 uses it only for numpy data; other versions may call it on any array)."""
    t, z, y, x = np.ogrid[:64, :4, :200, :200]
    data = ((t * 31 + z * 7 + y + x) % 4099).astype(np.uint16)
    return sd.to_split_dataset(data, tmp_path / "big", block_shape=8)


@pytest.mark.slow
def test_split_dataset_passed_to_napari_stays_lazy(big, reads) -> None:
    from napari.components import ViewerModel
    from napari.layers import Image

    assert big.size > 10**7
    viewer = ViewerModel()
    layer = viewer.add_image(SplitDataset(big.root))
    assert isinstance(layer.data, SplitDataset)  # not converted to an in-memory array
    assert reads.elements < big.size / 20
    before = reads.elements
    viewer.dims.set_point(0, 40)
    assert reads.elements - before <= 200 * 200  # one plane for the new time point
    assert isinstance(Image(SplitDataset(big.root), multiscale=False).data, SplitDataset)
    assert reads.elements < big.size / 10


@pytest.fixture
def plugin() -> Iterator[PluginManager]:
    """This package's manifest registered with napari's plugin manager (what discovery does)."""
    manager = PluginManager.instance()
    registered = any(m.name == "splitds-dask" for m in manager.iter_manifests())
    if not registered:
        manager.register(PluginManifest.from_file(MANIFEST))
    yield manager
    if not registered:
        manager.unregister("splitds-dask")


def test_napari_opens_a_folder_through_the_plugin(movie, plugin, reads) -> None:
    from napari.components import ViewerModel

    data, ds = movie
    viewer = ViewerModel()
    (layer,) = viewer.open(str(ds.root), plugin="splitds-dask")
    assert isinstance(layer.data, da.Array)
    np.testing.assert_allclose(layer.scale, (0.5, 7, 0.6, 0.6))
    assert tuple(layer.axis_labels) == ("t", "z", "y", "x")
    assert [str(u) for u in layer.units] == ["second", UM, UM, UM]
    assert tuple(layer.contrast_limits) == (0.0, 19039.0)
    assert reads.elements < data.size / 2
    (block,) = viewer.open(str(ds.files.flat[1]), plugin="splitds-dask")
    np.testing.assert_array_equal(block.data, data[4:8])


def test_contrast_limits_of_a_dask_array_are_numpys(random_array) -> None:
    # dask's array-expr Array has no __array__ (np.asarray wraps it in an object array): the
    # planes are computed first, so both dask modes give numpy's answer.
    data = random_array((6, 2, 5, 4), "uint16")
    expected = estimate_contrast_limits(data)
    assert estimate_contrast_limits(da.from_array(data, chunks=(2, 1, 5, 4))) == expected


# --- bounded reads whatever the declared shape ---------------------------------------------


@pytest.mark.parametrize(
    "shape",
    [
        (10**6, 10**6),
        (1, 10**6, 10**6),
        (3, 2049, 2049),  # just over the sample size (2048 x 2048 uint16 is read whole)
        (2, 10**9, 3),  # a narrow plane: whole rows, windows of rows
        (2, 3, 10**9),
        (10**12,),  # 1-D: the whole array is the plane
        (10**8, 10**8, 10**8, 10**8),  # more planes than an int64 counts
    ],
)
def test_contrast_limits_read_a_bounded_sample(shape) -> None:
    from splitds_dask._integrations.napari import _SAMPLE_BYTES

    leading = len(shape) - min(2, len(shape))
    reads: list[tuple[tuple, int]] = []  # (plane, elements) of each read

    class Declared:
        """An array declaring ``shape``; each read returns its own number, everywhere."""

        dtype = np.dtype("uint16")

        def __init__(self) -> None:
            self.shape = shape

        def __getitem__(self, key: tuple) -> np.ndarray:
            plane, window = key[:leading], key[leading:]
            assert all(isinstance(i, int) for i in plane)
            selected = (
                [len(range(*s.indices(n))) for s, n in zip(window, shape[leading:], strict=True)]
                if window
                else list(shape[leading:])
            )
            reads.append((plane, int(np.prod(selected, dtype=object))))
            return np.full(selected, len(reads), np.uint16)

    low, high = estimate_contrast_limits(Declared())
    per_plane: dict[tuple, int] = {}
    for plane, elements in reads:
        per_plane[plane] = per_plane.get(plane, 0) + elements
    assert 1 <= len(per_plane) <= 5
    assert max(per_plane.values()) * 2 <= _SAMPLE_BYTES  # uint16
    assert len(reads) <= 5 * 9
    assert (low, high) == (1.0, float(len(reads)))


def test_a_large_block_file_opens_read_on_demand(tmp_path) -> None:
    # 8 x 4096 x 4096 uint16 = 256 MiB declared; only one chunk written (a few KB on disk).
    path = tmp_path / "0000.h5"
    with h5py.File(path, "w") as f:
        dset = f.create_dataset("stack_3D", (8, 4096, 4096), ">u2", chunks=(1, 64, 64))
        dset[4, 2000:2004, 2000:2004] = np.arange(16).reshape(4, 4) + 100
    assert path.stat().st_size < 100_000
    ((data, kwargs, kind),) = napari_get_reader(str(path))(str(path))
    assert kind == "image"
    assert not isinstance(data, np.ndarray)
    assert (data.shape, data.dtype, data.ndim) == ((8, 4096, 4096), np.dtype("u2"), 3)
    expected = np.zeros((6, 6), np.uint16)
    expected[1:5, 1:5] = np.arange(16).reshape(4, 4) + 100
    np.testing.assert_array_equal(data[4, 1999:2005, 1999:2005], expected, strict=True)
    # The windows of plane 4 cover its centre: the written values are found.
    assert kwargs["contrast_limits"] == (0.0, 115.0)


@pytest.mark.parametrize("link", ["external", "inside"])
def test_a_single_block_file_linking_outside_is_not_opened(tmp_path: Path, link: str) -> None:
    values = np.arange(12, dtype=np.uint16).reshape(3, 4)
    outside = tmp_path / "secret.h5"
    with h5py.File(outside, "w") as f:
        f["stack"] = values
    folder = tmp_path / "data"
    folder.mkdir()
    path = folder / "0000.h5"
    with h5py.File(path, "w") as f:
        if link == "external":
            f["stack"] = h5py.ExternalLink(str(outside), "/stack")
        else:
            f["stack"] = values
    reader = napari_get_reader(str(path))
    if link == "external":
        assert reader is None
    else:
        assert reader is not None
        ((data, _, _),) = reader(str(path))
        np.testing.assert_array_equal(np.asarray(data), values)

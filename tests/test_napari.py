"""napari: the npe2 manifest, the reader it contributes, and napari itself (headless, no Qt).

Reads are counted through :meth:`SplitDataset.__getitem__`, the only way the reader and napari
reach the files; :meth:`SplitDataset.__array__` is made to fail where nothing may be
materialised.
"""

from __future__ import annotations

import os
import pickle
import re
import subprocess
import sys
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
from tests.helpers.timeouts import TIMEOUT

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
    # Metadata files and block files (<stem><number>.h5) only: no other file is claimed.
    assert set(reader.filename_patterns) == {"*stack_metadata.json", "*[0-9].h5"}
    (sample,) = manifest.contributions.sample_data
    assert sample.key == "demo-movie"
    commands = {command.id: command.python_name for command in manifest.contributions.commands}
    assert commands == {
        reader.command: "splitds_dask._integrations.napari:napari_get_reader",
        sample.command: "splitds_dask._integrations.napari:demo_movie",
    }
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
    path = tmp_path / "0000.h5"
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
    path = tmp_path / "evil_0001.h5"
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
    # Block file names (<stem><number>.h5) whose contents are no block.
    with h5py.File(tmp_path / "no_stack_0.h5", "w") as f:
        f["traces"] = np.zeros((3, 4))
    with h5py.File(tmp_path / "strings_0.h5", "w") as f:
        f["stack"] = np.array([b"a", b"b"])
    with h5py.File(tmp_path / "scalar_0.h5", "w") as f:
        f["stack"] = 3
    (tmp_path / "garbage_0.h5").write_bytes(b"not hdf5")
    (tmp_path / "stack_metadata.json").write_text("{}")  # a metadata file of no dataset
    # A stack in a file that is not named as a block file, and a hidden (temporary) block file.
    for name in ("block.hdf5", "block.h5", "0000.hdf5", ".0000.h5"):
        with h5py.File(tmp_path / name, "w") as f:
            f["stack_3D"] = np.ones((2, 3, 4), np.uint16)
    declined = ["notes", "data.txt", "no_stack_0.h5", "strings_0.h5", "scalar_0.h5"]
    declined += ["garbage_0.h5", "stack_metadata.json", "block.hdf5", "block.h5", "0000.hdf5"]
    for name in [*declined, ".0000.h5", "missing"]:
        assert napari_get_reader(str(tmp_path / name)) is None, name


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
def plugin(tmp_path_factory: pytest.TempPathFactory) -> PluginManager:
    """napari's plugin manager after discovery through the entry points, as once installed
    (what ``napari.Viewer()`` does at start; ``ViewerModel`` does not)."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        ensure_entry_points(tmp_path_factory.mktemp("site"), monkeypatch)
        manager = PluginManager.instance()
        manager.discover()
    assert manager.get_manifest("splitds-dask") == PluginManifest.from_file(MANIFEST)
    return manager


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """napari's settings, in a file of this test (never the user's)."""
    import napari.settings
    from napari.settings import NapariSettings

    settings = NapariSettings(config_path=tmp_path / "napari-settings.yaml")
    monkeypatch.setattr(napari.settings, "_SETTINGS", settings)
    return settings


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


# --- what napari offers a path to, and when it asks the user to choose ----------------------


def _readers(path: Path) -> dict[str, str]:
    """The readers napari offers for ``path`` (plugin: display name), as its window does."""
    from napari.plugins import _npe2

    return _npe2.get_readers(str(path))


@pytest.mark.parametrize("name", ["stack_metadata.json", "green_stack_metadata.json"])
def test_a_metadata_file_opens_without_a_chooser(movie, plugin, settings, reads, name) -> None:
    from napari.components import ViewerModel

    data, ds = movie
    if name != "stack_metadata.json":
        (ds.root / "stack_metadata.json").rename(ds.root / name)
    path = ds.root / name
    # The one reader offered: napari opens with it, without asking (MultipleReaderError).
    assert set(_readers(path)) == {"splitds-dask"}
    (layer,) = ViewerModel().open(path, plugin=None)
    assert layer.name == "movie"
    assert tuple(layer.axis_labels) == ("t", "z", "y", "x")
    np.testing.assert_array_equal(np.asarray(layer.data[7, 2]), data[7, 2], strict=True)
    assert reads.elements < data.size / 2


def test_a_folder_needs_a_choice_or_a_preference(movie, plugin, settings) -> None:
    from napari.components import ViewerModel
    from napari.errors import MultipleReaderError

    data, ds = movie
    # napari's builtins accept every folder: with no preference, napari asks (its window shows
    # the "Choose reader" dialog; ViewerModel raises).
    readers = _readers(ds.root)
    assert {"napari", "splitds-dask"} <= set(readers)
    with pytest.raises(MultipleReaderError):
        ViewerModel().open(ds.root, plugin=None)
    # The dialog lists the readers by display name and preselects the first: this plugin.
    assert min(readers.values()) == readers["splitds-dask"]
    # A preference for folders of this name (what the README shows): no question asked.
    settings.plugins.extension2reader = {"*/movie/": "splitds-dask"}
    (layer,) = ViewerModel().open(ds.root, plugin=None)
    np.testing.assert_array_equal(np.asarray(layer.data[19]), data[19], strict=True)


def test_block_files_are_offered_to_both_readers(movie, plugin, tmp_path) -> None:
    _, ds = movie
    assert {"napari", "splitds-dask"} <= set(_readers(ds.files.flat[0]))
    other = tmp_path / "traces.h5"  # not a block file name: left to napari and others
    with h5py.File(other, "w") as f:
        f["stack"] = np.zeros((3, 4))
    assert "splitds-dask" not in _readers(other)


def test_what_the_reader_declines_is_left_to_napari(plugin, tmp_path) -> None:
    from napari.components import ViewerModel
    from npe2 import read

    # A plain folder holding an image: the reader declines it, napari's builtins read it. One
    # file: napari stacks several with dask.array.from_delayed, which array-expr mode lacks.
    folder = tmp_path / "frames"
    folder.mkdir()
    frames = np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4)
    np.save(folder / "frames.npy", frames)
    assert "splitds-dask" in _readers(folder)
    assert napari_get_reader(str(folder)) is None
    with pytest.raises(ValueError, match="refused the file"):
        read([str(folder)], plugin_name="splitds-dask", stack=False)
    (layer_data,) = read([str(folder)], stack=False)  # every reader offered, in turn
    np.testing.assert_array_equal(np.asarray(layer_data[0]), frames)
    (layer,) = ViewerModel().open(folder, plugin="napari")
    np.testing.assert_array_equal(np.asarray(layer.data), frames)
    # An unrelated HDF5 file whose name ends with a number: offered, declined.
    with h5py.File(tmp_path / "scan1.h5", "w") as f:
        f["data"] = np.zeros((3, 4))
    assert "splitds-dask" in _readers(tmp_path / "scan1.h5")
    assert napari_get_reader(str(tmp_path / "scan1.h5")) is None


# --- channel folders and experiment folders -------------------------------------------------


def _write(root: Path, shape: tuple[int, ...], offset: int) -> np.ndarray:
    data = (np.arange(np.prod(shape)).reshape(shape) % 1000 + offset).astype(np.uint16)
    sd.to_split_dataset(data, root, block_shape=2, scale=(1, 5, 0.5, 0.5), units=(None, UM, UM, UM))
    return data


def test_channel_folders_open_as_one_multichannel_layer(tmp_path, plugin) -> None:
    from napari.components import ViewerModel

    original = tmp_path / "exp" / "original"
    green = _write(original / "green", (6, 2, 5, 4), 0)
    red = _write(original / "red", (6, 2, 5, 4), 5000)
    reader = napari_get_reader(str(original))
    ((data, kwargs, kind),) = reader(str(original))
    assert (kind, kwargs["channel_axis"], kwargs["name"]) == ("image", 0, ["green", "red"])
    np.testing.assert_array_equal(data.compute(), np.stack([green, red]))

    green_layer, red_layer = ViewerModel().open(original, plugin="splitds-dask")
    for layer, values, name in [(green_layer, green, "green"), (red_layer, red, "red")]:
        assert layer.name == name
        assert layer.colormap.name == name  # the folder names are napari colormaps
        assert tuple(layer.axis_labels) == ("t", "z", "y", "x")
        np.testing.assert_allclose(layer.scale, (1, 5, 0.5, 0.5))
        assert [str(u) for u in layer.units] == ["pixel", UM, UM, UM]
        assert tuple(layer.contrast_limits) == (values.min(), values.max())
        np.testing.assert_array_equal(np.asarray(layer.data[3, 1]), values[3, 1], strict=True)


def test_an_experiment_folder_opens_each_dataset(tmp_path, plugin) -> None:
    from napari.components import ViewerModel

    exp = tmp_path / "exp"
    original = _write(exp / "original", (6, 2, 5, 4), 0)
    aligned = _write(exp / "aligned", (6, 2, 5, 4), 100)
    with h5py.File(exp / "aligned" / "shifts_sobel.h5", "w") as f:  # fimpy puts this beside
        f["shifts"] = np.zeros((6, 3))
    dff = _write(exp / "analysis" / "dff", (3, 2, 5, 4), 7)
    (exp / "notes.txt").write_text("not data")

    layers = ViewerModel().open(exp, plugin="splitds-dask")
    assert [layer.name for layer in layers] == ["aligned", "analysis/dff", "original"]
    for layer, values in zip(layers, [aligned, dff, original], strict=True):
        np.testing.assert_array_equal(layer.data.compute(), values)


def test_an_experiment_with_channels_and_other_datasets(tmp_path) -> None:
    exp = tmp_path / "exp"
    green = _write(exp / "original" / "green", (4, 2, 3, 3), 0)
    red = _write(exp / "original" / "red", (4, 2, 3, 3), 50)
    aligned = _write(exp / "aligned", (4, 2, 3, 3), 9)
    layers = napari_get_reader(str(exp))(str(exp))
    assert [kwargs["name"] for _, kwargs, _ in layers] == [
        "aligned",
        ["original/green", "original/red"],
    ]
    assert "channel_axis" not in layers[0][1]
    np.testing.assert_array_equal(layers[0][0].compute(), aligned)
    np.testing.assert_array_equal(layers[1][0].compute(), np.stack([green, red]))


def test_channels_of_different_shapes_open_one_by_one(tmp_path) -> None:
    original = tmp_path / "original"
    green = _write(original / "green", (4, 2, 3, 3), 0)
    red = _write(original / "red", (5, 2, 3, 3), 50)
    layers = napari_get_reader(str(original))(str(original))
    assert [kwargs["name"] for _, kwargs, _ in layers] == ["green", "red"]
    for (data, kwargs, _), values in zip(layers, [green, red], strict=True):
        assert "channel_axis" not in kwargs
        np.testing.assert_array_equal(data.compute(), values)


def test_an_unreadable_dataset_in_an_experiment_is_named(tmp_path) -> None:
    exp = tmp_path / "exp"
    good = _write(exp / "a", (4, 2, 3, 3), 0)
    _write(exp / "b", (4, 2, 3, 3), 0)
    (exp / "b" / "0000.h5").write_bytes(b"not hdf5")  # its dtype cannot be known
    with pytest.warns(UserWarning, match=r"b: not opened, it cannot be read"):
        reader = napari_get_reader(str(exp))
    ((data, kwargs, _),) = reader(str(exp))
    assert kwargs["name"] == "a"
    np.testing.assert_array_equal(data.compute(), good)


# --- sample data ----------------------------------------------------------------------------


@pytest.fixture
def sample_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The sample written under ``tmp_path`` (as if it were the system's temporary folder)."""
    import tempfile

    from splitds_dask._integrations import napari as module

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setattr(module, "_sample_folder", [])
    return tmp_path


def test_the_demo_movie_is_sample_data(plugin, sample_tmp) -> None:
    from napari.components import ViewerModel

    from splitds_dask._synthetic import synthetic_movie

    viewer = ViewerModel()
    (layer,) = viewer.open_sample("splitds-dask", "demo-movie")
    assert layer.name == "demo movie"
    assert layer.data.shape == (32, 8, 256, 256)
    assert tuple(layer.axis_labels) == ("t", "z", "y", "x")
    # As `splitds demo` records it: 5 volumes per second, planes 7 µm apart, 0.6 µm pixels.
    np.testing.assert_allclose(layer.scale, (0.2, 7, 0.6, 0.6))
    assert [str(unit) for unit in layer.units] == ["second", *["micrometer"] * 3]
    (folder,) = sample_tmp.iterdir()  # written once, into the temporary folder
    assert folder.name.startswith("splitds-dask-sample-")
    dataset = SplitDataset(folder / "demo")
    assert layer.metadata["split_dataset"] == str(dataset.root)
    assert len(list(dataset.root.glob("*.h5"))) == 8
    expected = synthetic_movie(32, block_frames=4)
    for t in (0, 17, 31):
        np.testing.assert_array_equal(np.asarray(layer.data[t]), expected[t].compute())
    (again,) = viewer.open_sample("splitds-dask", "demo-movie")
    assert again.metadata == layer.metadata
    assert list(sample_tmp.iterdir()) == [folder]


SAMPLE_SCRIPT = """
import sys
from npe2 import PluginManager
from napari.components import ViewerModel
sys.path.insert(0, sys.argv[1])  # the .dist-info of the entry points, if not installed
PluginManager.instance().discover()
(layer,) = ViewerModel().open_sample("splitds-dask", "demo-movie")
print(layer.metadata["split_dataset"])
"""


@pytest.mark.subprocess
def test_the_sample_is_removed_when_the_process_exits(tmp_path, monkeypatch) -> None:
    site = tmp_path / "site"
    site.mkdir()
    ensure_entry_points(site, monkeypatch)
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(SRC), os.environ.get("PYTHONPATH", "")]),
        "TMPDIR": str(scratch),
    }
    proc = subprocess.run(
        [sys.executable, "-c", SAMPLE_SCRIPT, str(site)],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    root = Path(proc.stdout.strip().splitlines()[-1])
    assert root.parent.parent == scratch
    assert not root.parent.exists()
    assert list(scratch.iterdir()) == []


# --- the README's napari section ------------------------------------------------------------

README = Path(__file__).parents[1] / "README.md"


def _readme_napari_block(fence: str) -> str:
    section = README.read_text().split("\n## napari\n", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(rf"```{fence}\n(.*?)```", section, flags=re.DOTALL)
    return block


def test_readme_folder_preference(tmp_path, plugin, settings) -> None:
    # The README's preference changes napari's settings file: run here with a test's own
    # settings (the README test runs only ```python blocks).
    from napari.components import ViewerModel
    from napari.errors import MultipleReaderError

    data = _write(tmp_path / "exp" / "original", (4, 2, 3, 3), 3)
    _write(tmp_path / "exp" / "aligned", (4, 2, 3, 3), 3)
    settings.plugins.extension2reader = {"*.tif": "napari"}
    exec(compile(_readme_napari_block("py"), "README.md napari preference", "exec"), {})  # noqa: S102
    assert settings.plugins.extension2reader == {"*.tif": "napari", "*/original/": "splitds-dask"}
    (layer,) = ViewerModel().open(tmp_path / "exp" / "original", plugin=None)
    np.testing.assert_array_equal(layer.data.compute(), data)
    with pytest.raises(MultipleReaderError):  # other folder names: napari still asks
        ViewerModel().open(tmp_path / "exp" / "aligned", plugin=None)

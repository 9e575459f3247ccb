"""bioio: ``bioio.BioImage(path)`` picks this package's reader plugin through bioio's own entry-point
discovery (no ``reader=``) and reads split datasets, channel folders and experiment folders.

The plugin is found the way bioio finds every plugin: ``importlib.metadata`` entry points of the
group ``bioio.readers``. Where the package is installed (CI: ``pip install -e .``) those are the
installed ones; a checkout run with ``PYTHONPATH=src`` gets the ``.dist-info`` that installing
would write (tests/helpers/entry_points.py). Expected arrays are numpy arrays, or the legacy
fixtures' ``.expected.npy`` files, laid out by hand in bioio's ``TCZYX`` order.
"""

from __future__ import annotations

import datetime
import importlib
import json
import pickle
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import bioio
import bioio_base
import numpy as np
import pytest

import splitds_dask as sd
import splitds_dask._reader as reader_module
from splitds_dask._daskmodes import array_expr_enabled
from tests.helpers.entry_points import PYPROJECT, declared_entry_points, ensure_entry_points

try:
    import tomllib
except ImportError:  # Python 3.10
    from pip._vendor import tomli as tomllib  # type: ignore[no-redef]

LEGACY = Path(__file__).parent / "fixtures" / "legacy"
MANIFEST = json.loads((LEGACY / "manifest.json").read_text())
UM = "micrometer"
PLUGIN_MODULE = "splitds_dask._integrations.bioio"
EXPR = array_expr_enabled()


@pytest.fixture
def plugin(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """The package's declared entry points, discoverable by bioio."""
    ensure_entry_points(tmp_path_factory.mktemp("dist"), monkeypatch)


def _open(path: Any) -> Any:
    """``BioImage(path)`` with bioio's default plugin choice, checked to be this package's."""
    image = bioio.BioImage(path)
    from splitds_dask._integrations.bioio import Reader

    assert type(image.reader) is Reader
    assert image._plugin.entrypoint.name == "splitds-dask"
    return image


class Reads:
    """Every block region read while installed (a counting wrapper over the real function)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.blocks: list[tuple[int, ...]] = []
        self.elements = 0
        lock = threading.Lock()
        original = reader_module.read_block_region

        def counted(*args: Any, **kwargs: Any) -> Any:
            with lock:
                self.blocks.append(kwargs["block"])
                self.elements += kwargs["out"][kwargs["dest"]].size
            return original(*args, **kwargs)

        monkeypatch.setattr(reader_module, "read_block_region", counted)


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Reads:
    return Reads(monkeypatch)


# --- registration ------------------------------------------------------------------------------


def test_entry_point_names_the_distribution_and_a_module_with_the_plugin() -> None:
    (name, value), *others = declared_entry_points()["bioio.readers"].items()
    assert not others
    # bioio reads the plugin's requirements under the entry point's name: the distribution's.
    assert name == tomllib.loads(PYPROJECT.read_text())["project"]["name"]
    module = importlib.import_module(value)
    assert issubclass(module.ReaderMetadata, bioio_base.reader_metadata.ReaderMetadata)
    assert issubclass(module.Reader, bioio_base.reader.Reader)
    assert module.ReaderMetadata.get_reader() is module.Reader
    assert module.ReaderMetadata.supports_directory_images()


def test_bioio_base_is_required_exactly_once() -> None:
    """bioio's discovery raises for every image when a plugin requires bioio-base twice."""
    project = tomllib.loads(PYPROJECT.read_text())["project"]
    requirements = [*project["dependencies"]]
    for entries in project["optional-dependencies"].values():
        requirements.extend(entries)
    assert [r for r in requirements if r.startswith("bioio-base")] == ["bioio-base>=3"]
    # bioio 3.6 is the first to offer a folder to a plugin (ReaderMetadata.supports_directory_images).
    assert "bioio>=3.6" in project["optional-dependencies"]["bioio"]
    assert "bioio>=3.6" in project["optional-dependencies"]["dev"]


def test_discovery_lists_the_plugin_for_folders_and_json(plugin: None) -> None:
    from bioio.plugins import get_directory_image_plugins, get_plugins

    by_ext = get_plugins(use_cache=False)
    assert "splitds-dask" in [p.entrypoint.name for p in by_ext[".json"]]
    assert "splitds-dask" in [p.entrypoint.name for p in get_directory_image_plugins(True)]
    # Other images still open (the plugin's metadata does not upset bioio's discovery).
    assert bioio.BioImage(np.zeros((3, 4))).dims.order == "TCZYX"


# --- one dataset --------------------------------------------------------------------------------


def _tczyx(a: np.ndarray) -> np.ndarray:
    """``a`` as bioio lays it out, by the documented defaults: X, YX, ZYX, TZYX, TCZYX."""
    return {
        1: lambda: a[None, None, None, None],
        2: lambda: a[None, None, None],
        3: lambda: a[None, None],
        4: lambda: a[:, None],
        5: lambda: a,
    }[a.ndim]()


@pytest.mark.parametrize("dtype", ["uint8", "int16", "uint16", "float32", "float64", "bool"])
@pytest.mark.parametrize(
    ("shape", "block_shape"),
    [
        ((13,), (5,)),  # 1-D
        ((13, 7), (5, 7)),  # 2-D, short last block
        ((6, 9, 8), (4, 4, 8)),  # 3-D, grid on two axes
        ((7, 3, 10, 6), (2, 3, 10, 6)),  # 4-D volume series, one volume-pair per file
        ((5, 3, 2, 6, 4), (2, 2, 1, 6, 4)),  # 5-D, grid on three axes
        ((4, 5, 6), (4, 5, 6)),  # one block
    ],
)
def test_dataset_reads_as_numpy_in_tczyx(
    plugin: None, tmp_path: Path, random_array: Any, reads: Reads, dtype: str, shape, block_shape
) -> None:
    a = random_array(shape, dtype)
    ds = sd.to_split_dataset(a, tmp_path / "ds", block_shape=block_shape, durable=False)
    image = _open(tmp_path / "ds")
    expected = _tczyx(a)
    assert image.dims.order == "TCZYX"
    assert image.shape == expected.shape
    assert image.dtype == a.dtype
    lazy = image.dask_data
    assert reads.blocks == []  # opening and building the dask array read no block
    np.testing.assert_array_equal(lazy.compute(), expected, strict=True)
    assert sorted(reads.blocks) == sorted(set(reads.blocks))  # each block read once
    assert len(reads.blocks) == ds.n_blocks
    np.testing.assert_array_equal(image.data, expected, strict=True)
    # The reader's lazy array stays the file-backed one (bioio's base reader would replace it
    # by a dask array over the data read, hashing all of it).
    assert image.reader.dask_data.name.startswith("splitds-")
    assert image.channel_names == [f"Channel:0:{c}" for c in range(expected.shape[1])]
    assert image.scenes == ("Image:0",)


def test_chunks_are_the_blocks(plugin: None, tmp_path: Path) -> None:
    a = np.arange(7 * 3 * 4 * 5, dtype=np.uint16).reshape(7, 3, 4, 5)
    sd.to_split_dataset(a, tmp_path / "ds", block_shape=(2, 2, 4, 5), durable=False)
    lazy = _open(tmp_path / "ds").dask_data
    assert lazy.chunks == ((2, 2, 2, 1), (1,), (2, 1), (4,), (5,))


@pytest.mark.parametrize("axes", ["tzyx", "zyxt"])
def test_a_selection_reads_only_what_it_selects(
    plugin: None, tmp_path: Path, reads: Reads, axes: str
) -> None:
    """A plane reads one plane, not its block, in both dask modes (in array-expr mode a slice
    of a plain ``from_array`` array reads whole chunks first)."""
    a = np.arange(8 * 2 * 3 * 4, dtype=np.int32).reshape(8, 2, 3, 4)
    if axes == "tzyx":
        stored, block_shape, block = a, (4, 2, 3, 4), (1, 0, 0, 0)
    else:
        stored, block_shape, block = np.moveaxis(a, 0, -1), (2, 3, 4, 4), (0, 0, 0, 1)
    sd.to_split_dataset(stored, tmp_path / "ds", block_shape=block_shape, axes=axes)
    image = _open(tmp_path / "ds")
    plane = image.get_image_dask_data("YX", T=5, Z=1).compute()
    np.testing.assert_array_equal(plane, a[5, 1], strict=True)
    assert (reads.elements, reads.blocks) == (3 * 4, [block])
    volume = image.reader.dask_data[6, 0].compute()
    np.testing.assert_array_equal(volume, a[6], strict=True)
    assert (reads.elements, reads.blocks) == (3 * 4 + 2 * 3 * 4, [block] * 2)
    volume = image.dask_data[6, 0].compute()
    np.testing.assert_array_equal(volume, a[6], strict=True)
    assert reads.blocks == [block] * 3
    # BioImage.dask_data is the reader's array under a transpose to TCZYX, the identity here.
    # dask's array-expr mode keeps that as a Transpose expression and moves no slice through
    # it, so there the read is the whole block holding t = 6; the default mode reads t = 6.
    read = 2 * 3 * 4 * (4 if EXPR else 1)
    assert reads.elements == 3 * 4 + 2 * 3 * 4 + read


def test_dask_graph_pickles_small(plugin: None, tmp_path: Path) -> None:
    a = np.arange(40 * 2 * 8 * 8, dtype=np.uint16).reshape(40, 2, 8, 8)
    sd.to_split_dataset(a, tmp_path / "ds", block_shape=(1, 2, 8, 8), durable=False)
    lazy = _open(tmp_path / "ds").dask_data
    graph = dict(lazy.__dask_graph__())
    blob = pickle.dumps(graph)
    assert b"HDF" not in blob
    assert len(blob) < 40 * 2000  # paths and geometry per task, never data or handles
    # The collection itself pickles too (what a distributed client ships in dask's array-expr
    # mode). There ``x[:, None]`` would hold a function made with exec that does not pickle;
    # the plugin adds bioio's missing dimensions in its reads instead.
    back = pickle.loads(pickle.dumps(lazy))
    np.testing.assert_array_equal(back.compute(scheduler="sync"), a[:, None], strict=True)


def test_metadata_file_path_opens_its_dataset(plugin: None, tmp_path: Path) -> None:
    a = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    sd.to_split_dataset(a, tmp_path / "ds", block_shape=(2, 5, 6), durable=False)
    image = _open(tmp_path / "ds" / "stack_metadata.json")
    np.testing.assert_array_equal(image.data, a[None, None], strict=True)
    assert image.metadata["shape_full"] == [4, 5, 6]


_ = slice(None)


@pytest.mark.parametrize(
    ("axes", "transpose", "expand"),
    [
        (("y", "x", "t"), (2, 0, 1), (_, None, None, _, _)),  # time last
        (("x", "y", "z"), (2, 1, 0), (None, None, _, _, _)),  # reversed spatial axes
        (("c", "t", "y", "x"), (1, 0, 2, 3), (_, _, None, _, _)),  # channels first
        (("time", "channel", "Z", "Y", "X"), (0, 1, 2, 3, 4), (_,) * 5),  # long, upper-case
    ],
)
def test_axes_are_mapped_by_name(plugin: None, tmp_path: Path, axes, transpose, expand) -> None:
    shape = (3, 4, 5, 6, 7)[: len(axes)]
    a = np.arange(np.prod(shape), dtype=np.int16).reshape(shape)
    sd.to_split_dataset(a, tmp_path / "ds", axes=axes, durable=False)
    image = _open(tmp_path / "ds")
    expected = np.transpose(a, transpose)[expand]
    np.testing.assert_array_equal(image.data, expected, strict=True)
    np.testing.assert_array_equal(image.dask_data.compute(), expected, strict=True)


def test_unknown_axis_names_take_the_default_by_position(plugin: None, tmp_path: Path) -> None:
    a = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    sd.to_split_dataset(a, tmp_path / "ds", axes=("plane", "row", "column"), durable=False)
    image = _open(tmp_path / "ds")
    assert image.dims.Z == 2
    np.testing.assert_array_equal(image.data, a[None, None], strict=True)


def test_more_than_five_dimensions_is_a_clear_error(plugin: None, tmp_path: Path) -> None:
    sd.to_split_dataset(np.zeros((2,) * 6, np.uint8), tmp_path / "six", durable=False)
    with pytest.raises(bioio_base.exceptions.UnsupportedFileFormatError, match="6-D data"):
        _open(tmp_path / "six").dims  # noqa: B018


def test_folders_without_datasets_are_not_taken(plugin: None, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    (tmp_path / "other.json").write_text("{}")
    for path in (tmp_path / "empty", tmp_path / "other.json", tmp_path / "missing"):
        with pytest.raises(bioio_base.exceptions.UnsupportedFileFormatError):
            bioio.BioImage(path)


def test_damaged_metadata_is_the_package_error(plugin: None, tmp_path: Path) -> None:
    sd.to_split_dataset(np.zeros((4, 3), np.uint8), tmp_path / "ds", durable=False)
    (tmp_path / "ds" / "stack_metadata.json").write_text('{"shape_full": [4, 3]')
    with pytest.raises(sd.MetadataError, match=r"stack_metadata\.json"):
        _open(tmp_path / "ds").dims  # noqa: B018


# --- physical metadata -----------------------------------------------------------------------


def test_physical_metadata(plugin: None, tmp_path: Path) -> None:
    a = np.zeros((6, 3, 4, 5), np.uint16)
    sd.to_split_dataset(
        a,
        tmp_path / "ds",
        scale=(None, 7.0, 0.6, 0.5),
        units=(None, UM, UM, "nanometer"),
        time_step=0.25,
        durable=False,
    )
    image = _open(tmp_path / "ds")
    assert image.physical_pixel_sizes == (7.0, 0.6, 0.5)
    assert image.time_interval == datetime.timedelta(seconds=0.25)
    assert image.scale == (0.25, None, 7.0, 0.6, 0.5)
    props = image.dimension_properties
    assert (props.T.type, str(props.T.unit)) == ("time", "second")
    assert (props.Z.type, str(props.Z.unit)) == ("space", "micrometer")
    assert str(props.X.unit) == "nanometer"
    np.testing.assert_allclose(image.xarray_dask_data.coords["Z"].values, [0, 7, 14])


def test_time_step_in_milliseconds(plugin: None, tmp_path: Path) -> None:
    sd.to_split_dataset(
        np.zeros((4, 2, 3), np.uint8),
        tmp_path / "ds",
        axes="tyx",
        scale=(20, 1, 1),
        units=("millisecond", None, None),
        durable=False,
    )
    image = _open(tmp_path / "ds")
    assert image.time_interval == datetime.timedelta(milliseconds=20)
    assert image.physical_pixel_sizes == (None, 1.0, 1.0)  # no z axis
    assert image.dims.order == "TCZYX"
    assert (image.dims.T, image.dims.Z) == (4, 1)


def test_no_time_unit_no_time_interval(plugin: None, tmp_path: Path) -> None:
    sd.to_split_dataset(np.zeros((4, 2, 3, 3), np.uint8), tmp_path / "ds", durable=False)
    image = _open(tmp_path / "ds")
    assert image.time_interval is None
    assert image.physical_pixel_sizes == (1.0, 1.0, 1.0)


# --- legacy datasets, channel folders and experiments -----------------------------------------

LEGACY_CASES = [c for c in MANIFEST if c["expected"] is not None and not c["warns"]]


@pytest.mark.parametrize("case", LEGACY_CASES, ids=[c["name"] for c in LEGACY_CASES])
def test_legacy_variants(plugin: None, case: dict) -> None:
    expected = np.load(LEGACY / case["expected"])
    image = _open(LEGACY / case["path"])
    np.testing.assert_array_equal(image.data, _tczyx(expected), strict=True)


def test_sashimi_physical_metadata(plugin: None) -> None:
    # sashimi >= 2024 writes voxel_size [7.0, 0.6, 0.6] (z, y, x in micrometres), no volume rate.
    image = _open(LEGACY / "sashimi_2024" / "original")
    assert image.physical_pixel_sizes == (7.0, 0.6, 0.6)
    assert str(image.dimension_properties.Y.unit) == "micrometer"
    assert image.time_interval is None


def _brunoise() -> np.ndarray:
    green = np.load(LEGACY / "brunoise_2ch_green.expected.npy")
    red = np.load(LEGACY / "brunoise_2ch_red.expected.npy")
    return np.stack([green, red], axis=1)


@pytest.mark.parametrize("path", ["brunoise_2ch/original", "brunoise_2ch"])
def test_brunoise_channels_are_one_image(plugin: None, reads: Reads, path: str) -> None:
    image = _open(LEGACY / path)
    assert image.scenes == (("Image:0",) if path.endswith("original") else ("original",))
    assert image.channel_names == ["green", "red"]
    assert image.dims.order == "TCZYX"
    lazy = image.dask_data
    assert reads.blocks == []
    np.testing.assert_array_equal(lazy.compute(), _brunoise(), strict=True)
    np.testing.assert_array_equal(image.data, _brunoise(), strict=True)
    np.testing.assert_array_equal(image.get_image_data("ZYX", T=4, C=1), _brunoise()[4, 1])
    assert set(image.metadata) == {"green", "red"}


def test_experiment_folder_scenes(plugin: None, tmp_path: Path, reads: Reads) -> None:
    exp = tmp_path / "exp"
    green = np.arange(5 * 2 * 3 * 4, dtype=np.int16).reshape(5, 2, 3, 4)
    red = -green
    dff = np.linspace(0, 1, 5 * 2 * 3 * 4, dtype=np.float32).reshape(5, 2, 3, 4)
    anatomy = np.arange(2 * 6 * 8, dtype=np.uint16).reshape(2, 6, 8)
    kw: dict[str, Any] = {"block_shape": (2, 2, 3, 4), "durable": False}
    sd.to_split_dataset(green, exp / "original" / "green", **kw)
    sd.to_split_dataset(red, exp / "original" / "red", **kw)
    sd.to_split_dataset(dff, exp / "dff", **kw)
    sd.to_split_dataset(anatomy, exp / "anatomy" / "stack", durable=False)
    (exp / "time.h5").write_bytes(b"")
    image = _open(exp)
    assert image.scenes == ("anatomy/stack", "dff", "original")
    assert reads.blocks == []
    expected = {
        "anatomy/stack": (anatomy[None, None], ["Channel:0:0"]),
        "dff": (dff[:, None], ["Channel:1:0"]),
        "original": (np.stack([green, red], axis=1), ["green", "red"]),
    }
    for scene, (data, channels) in expected.items():
        image.set_scene(scene)
        assert image.channel_names == channels
        lazy = image.dask_data
        assert reads.blocks == []
        np.testing.assert_array_equal(lazy.compute(), data, strict=True)
        np.testing.assert_array_equal(image.data, data, strict=True)
        reads.blocks.clear()


def test_channel_folder_with_other_datasets(plugin: None, tmp_path: Path) -> None:
    green, red = np.zeros((2, 3, 4), np.uint8), np.ones((2, 3, 4), np.uint8)
    dff = np.full((2, 3, 4), 0.5, np.float32)
    for name, data in (("green", green), ("red", red), ("dff", dff)):
        sd.to_split_dataset(data, tmp_path / "o" / name, durable=False)
    image = _open(tmp_path / "o")
    assert image.scenes == ("dff", ".")
    image.set_scene(".")
    assert image.channel_names == ["green", "red"]
    np.testing.assert_array_equal(image.data, np.stack([green, red])[None], strict=True)
    image.set_scene("dff")
    np.testing.assert_array_equal(image.data, dff[None, None], strict=True)


def test_channels_of_different_shapes_are_separate_scenes(plugin: None, tmp_path: Path) -> None:
    sd.to_split_dataset(np.zeros((2, 3, 4), np.uint8), tmp_path / "o" / "green", durable=False)
    sd.to_split_dataset(np.ones((2, 3, 5), np.uint8), tmp_path / "o" / "red", durable=False)
    image = _open(tmp_path / "o")
    assert image.scenes == ("green", "red")
    image.set_scene("red")
    np.testing.assert_array_equal(image.data, np.ones((1, 1, 2, 3, 5), np.uint8), strict=True)


# --- without bioio ----------------------------------------------------------------------------


def test_plugin_module_without_bioio_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "bioio_base", None)  # what an absent package looks like
    monkeypatch.delitem(sys.modules, PLUGIN_MODULE, raising=False)
    with pytest.raises(ImportError, match=r'pip install "splitds-dask\[bioio\]"'):
        importlib.import_module(PLUGIN_MODULE)


@pytest.mark.subprocess
def test_package_imports_without_bioio() -> None:
    code = (
        "import sys; sys.modules['bioio'] = sys.modules['bioio_base'] = None\n"
        "import splitds_dask, splitds_dask._integrations.xarray\n"
        "assert not any(m.startswith('bioio') and sys.modules[m] for m in sys.modules)\n"
        "print('ok')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "ok"

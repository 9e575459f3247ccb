"""``splitds convert`` and ``splitds project``, and the format readers and writers behind them.

Every conversion is checked against numpy on the data read back with the format's own library
(h5py, tifffile, zarr, numpy), not only through our readers.
"""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import dask
import h5py
import numpy as np
import pytest
import tifffile
import zarr

import splitds_dask as sd
from splitds_dask._cli.images import mosaic
from splitds_dask._cli.info import dataset_info
from splitds_dask._cli.main import main
from splitds_dask._cli.sources import open_source
from splitds_dask._cli.targets import write_array
from tests.helpers.cli import assert_one_line_error, package_env, run_main
from tests.helpers.png import png_size
from tests.helpers.timeouts import TIMEOUT

SHAPE = (11, 3, 6, 5)
TARGETS = ["out", "out.npy", "out.tif", "out.h5:/group/data", "out.zarr", "out.ome.zarr"]


def read_back(path: Path, target: str) -> np.ndarray:
    """The array at ``target``, read with the format's own library."""
    if target.endswith(".npy"):
        return np.load(path / target)
    if target.endswith(".tif"):
        return tifffile.imread(path / target)
    if ".h5:" in target:
        name, key = target.split(":")
        with h5py.File(path / name, "r") as f:
            return f[key][()]
    if target.endswith(".ome.zarr"):
        return zarr.open_array(store=str(path / target), path="0", mode="r")[...]
    if target.endswith(".zarr"):
        return zarr.open_array(store=str(path / target), mode="r")[...]
    return sd.SplitDataset(path / target)[...]


@pytest.fixture
def source(tmp_path: Path, random_array) -> tuple[Path, np.ndarray]:
    a = random_array(SHAPE, "u2", seed=3)
    sd.to_split_dataset(
        a, tmp_path / "src", (4, 2), resolution=(0.5, 2.0, 0.3, 0.3), axis_order="tzyx"
    )
    return tmp_path / "src", a


def convert(tmp_path: Path, *argv: str) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        run = run_main("convert", *argv)
    finally:
        os.chdir(cwd)
    assert run.code == 0, run
    assert run.err == ""
    lines = run.out.splitlines()
    assert lines[0].startswith("read ")
    assert lines[1].startswith("wrote ")


@pytest.mark.parametrize("target", TARGETS)
def test_convert_from_split_dataset_and_back(target: str, source, tmp_path: Path) -> None:
    _, a = source
    convert(tmp_path, "src", target)
    np.testing.assert_array_equal(read_back(tmp_path, target), a, strict=True)
    convert(tmp_path, target, "again", "--block-shape", "3,3")
    again = sd.SplitDataset(tmp_path / "again")
    assert again.shape_block == (3, 3, 6, 5)
    np.testing.assert_array_equal(again[...], a, strict=True)
    # Nothing else is left beside the outputs: no staging folders or temporary files.
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        {"src", "again", target.split(":")[0]}
    )


@pytest.mark.parametrize("dtype", ["u1", "i2", "u2", "i4", "f4", "f8"])
@pytest.mark.parametrize("target", TARGETS[1:])
def test_formats_keep_dtype_and_values(dtype: str, target: str, tmp_path: Path, random_array):
    a = random_array((5, 4, 7), dtype, seed=1)
    np.save(tmp_path / "a.npy", a)
    written = write_array(open_source(str(tmp_path / "a.npy")), str(tmp_path / target))
    assert written.nbytes == a.nbytes
    np.testing.assert_array_equal(read_back(tmp_path, target), a, strict=True)


@pytest.mark.parametrize(
    ("block_shape", "compression", "description"),
    [
        ("11,1,6,5", "gzip", "gzip level 4, byte shuffle"),
        ("2", "none", "none"),
        ("5,3,3,2", "blosc:zstd", "blosc zstd level 5, byte shuffle"),
    ],
)
def test_convert_split_to_split_block_shape_and_codec(
    block_shape: str, compression: str, description: str, source, tmp_path: Path
) -> None:
    _, a = source
    convert(tmp_path, "src", "new", "--block-shape", block_shape, "--compression", compression)
    info = dataset_info(tmp_path / "new")
    expected = tuple(int(v) for v in block_shape.split(","))
    assert tuple(info["shape_block"]) == expected + SHAPE[len(expected) :]
    assert info["compression"]["description"] == description
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "new")[...], a, strict=True)


def test_metadata_is_carried_through_split_and_ome_zarr(source, tmp_path: Path) -> None:
    convert(tmp_path, "src", "copy", "--block-shape", "5")
    copy = sd.SplitDataset(tmp_path / "copy")
    assert copy.resolution == (0.5, 2.0, 0.3, 0.3)
    assert copy.parsed_metadata.axis_order == "tzyx"

    convert(tmp_path, "src", "img.ome.zarr")
    ome = json.loads((tmp_path / "img.ome.zarr" / "zarr.json").read_text())["attributes"]["ome"]
    assert ome["version"] == "0.5"
    (image,) = ome["multiscales"]
    assert [a["name"] for a in image["axes"]] == ["t", "z", "y", "x"]
    assert [a["type"] for a in image["axes"]] == ["time", "space", "space", "space"]
    (level,) = image["datasets"]
    assert level["path"] == "0"
    assert level["coordinateTransformations"] == [{"type": "scale", "scale": [0.5, 2.0, 0.3, 0.3]}]
    array = zarr.open_array(store=str(tmp_path / "img.ome.zarr"), path="0", mode="r")
    assert array.metadata.dimension_names == ("t", "z", "y", "x")

    convert(tmp_path, "img.ome.zarr", "back")
    back = sd.SplitDataset(tmp_path / "back")
    assert back.resolution == (0.5, 2.0, 0.3, 0.3)
    assert back.parsed_metadata.axis_order == "tzyx"


def test_tiff_sequence_sources(tmp_path: Path, random_array) -> None:
    frames = random_array((6, 9, 4), "u2", seed=2)
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(frames):
        tifffile.imwrite(tmp_path / "frames" / f"frame_{i:03d}.tif", frame)
    (tmp_path / "frames" / "notes.txt").write_text("not an image")
    convert(tmp_path, "frames", "a", "--block-shape", "4")
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "a")[...], frames, strict=True)
    convert(tmp_path, str(tmp_path / "frames" / "frame_00[2-4].tif"), "b.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), frames[2:5], strict=True)


def test_sources_are_read_in_the_target_blocks(source, tmp_path: Path) -> None:
    """Bounded memory: every task reads one target block's region, no dask rechunk is involved."""
    folder, a = source
    src = open_source(str(folder))
    x = src.to_dask(((11,), (1, 1, 1), (6,), (5,)))  # a transposing change of block shape
    # Key names, not HighLevelGraph layers, and numblocks, not npartitions: dask's array-expr
    # mode has neither.
    graph = dict(x.__dask_graph__())
    assert not any("rechunk" in (k[0] if isinstance(k, tuple) else k) for k in graph)
    assert len(graph) == math.prod(x.numblocks) == 3
    np.testing.assert_array_equal(x.compute(), a, strict=True)
    # The source's own blocks: its own dask array.
    assert (
        src.to_dask(sd.SplitDataset(folder).chunks).name == sd.SplitDataset(folder).to_dask().name
    )


# VmHWM, the peak resident set of this process image (ru_maxrss would include the RSS of the
# pytest process forked to start it).
_PEAK_RSS_SCRIPT = """
import re, sys
from splitds_dask._cli.main import main
code = main(sys.argv[1:])
with open("/proc/self/status") as f:
    print(int(re.search(r"VmHWM:\\s+(\\d+) kB", f.read())[1]) * 1024)
sys.exit(code)
"""


def _peak_rss(*argv: str) -> int:
    proc = subprocess.run(
        [sys.executable, "-c", _PEAK_RSS_SCRIPT, *argv],
        capture_output=True,
        text=True,
        env=package_env(),
        timeout=TIMEOUT,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.splitlines()[-1])


@pytest.fixture(scope="module")
def big(tmp_path_factory) -> tuple[Path, Any]:
    """A split dataset of 671 MB in blocks of 20 time points (21 MB), and its data."""
    data = dask.array.random.default_rng(0).integers(
        0, 60000, (640, 4, 256, 512), dtype=np.uint16, chunks=(20, 4, 256, 512)
    )
    folder = tmp_path_factory.mktemp("big") / "big"
    sd.to_split_dataset(data, folder, compression="blosc")
    return folder, data


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("target", ["out", "out.npy", "out.zarr", "out.h5:/data"])
def test_peak_memory_is_bounded_by_blocks_not_by_the_dataset(target: str, big, tmp_path) -> None:
    # Rewritten as blocks holding one band of y rows of every time point: each output block
    # needs a part of every input block. A dask rechunk of the same peaks at about 1 GB.
    folder, data = big
    baseline = _peak_rss("info", str(folder))
    peak = _peak_rss("convert", str(folder), str(tmp_path / target), "--block-shape", "640,4,8")
    # The output blocks are 640 x 4 x 8 x 512 x 2 bytes = 21 MB; the dataset 671 MB.
    assert peak - baseline < 300e6, (peak, baseline)
    np.testing.assert_array_equal(
        read_back(tmp_path, target)[::97, :, ::31], data[::97, :, ::31].compute(), strict=True
    )


# --- overwriting ------------------------------------------------------------------------------


@pytest.mark.parametrize("target", TARGETS)
def test_existing_targets_are_replaced_only_with_overwrite(target, source, tmp_path: Path):
    _, a = source
    convert(tmp_path, "src", target, "--block-shape", "2")
    run = run_main("convert", str(tmp_path / "src"), str(tmp_path / target))
    assert_one_line_error(run, 1, "exists")
    convert(tmp_path, "src", target, "--overwrite")
    np.testing.assert_array_equal(read_back(tmp_path, target), a, strict=True)


@pytest.mark.parametrize("target", ["out.npy", "out.tif", "out.zarr", "out.h5:/x"])
def test_a_foreign_file_or_folder_is_never_replaced(target, source, tmp_path: Path) -> None:
    name = target.split(":")[0]
    if name.endswith(".zarr"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "thesis.tex").write_text("precious")
    else:
        (tmp_path / name).mkdir()
    run = run_main("convert", str(tmp_path / "src"), str(tmp_path / target), "--overwrite")
    assert_one_line_error(run, 1, name, "not replacing")
    assert (tmp_path / name).is_dir()


# --- project ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("stat", "axis", "expected"),
    [
        ("mean", 0, lambda a: a.mean(axis=0)),
        ("max", 0, lambda a: a.max(axis=0)),
        ("min", 1, lambda a: a.min(axis=1)),
        ("std", -1, lambda a: a.std(axis=-1)),
    ],
)
@pytest.mark.parametrize("suffix", [".npy", ".tif"])
def test_project(stat, axis, expected, suffix, source, tmp_path: Path) -> None:
    folder, a = source
    out = tmp_path / f"p{suffix}"
    run = run_main("project", str(folder), str(out), "--stat", stat, "--axis", str(axis))
    assert run.code == 0, run
    got = np.load(out) if suffix == ".npy" else tifffile.imread(out)
    want = expected(a)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert f"{stat} over axis {axis % 4}" in run.out


@pytest.mark.parametrize("blocks", ["1", "2", "50"])
def test_project_blocks_per_chunk(blocks, source, tmp_path: Path) -> None:
    folder, data = source
    out = tmp_path / "p.npy"
    run = run_main("project", str(folder), str(out), "--stat", "max", "--blocks-per-chunk", blocks)
    assert run.code == 0, run.err
    np.testing.assert_array_equal(np.load(out), data.max(axis=0), strict=True)


def test_project_blocks_per_chunk_needs_a_split_dataset(source, tmp_path: Path) -> None:
    _, data = source
    np.save(tmp_path / "movie.npy", data)
    run = run_main(
        "project", str(tmp_path / "movie.npy"), str(tmp_path / "p.npy"), "--blocks-per-chunk", "2"
    )
    assert run.code == 2
    assert "--blocks-per-chunk needs a split dataset" in run.err
    assert not (tmp_path / "p.npy").exists()


@pytest.mark.parametrize("dtype", ["f4", "c8", "c16", "i1"])
def test_project_std_has_numpys_dtype_and_values(dtype: str, tmp_path: Path, random_array) -> None:
    # dask's array-expr std calls np.iscomplexobj on the array, which its __array_function__
    # refuses: project passes numpy's dtype (and takes a complex array's parts), so both dask
    # modes give numpy's answer.
    a = random_array((6, 3, 4), dtype)
    np.save(tmp_path / "movie.npy", a)
    run = run_main("project", str(tmp_path / "movie.npy"), str(tmp_path / "p.npy"), "--stat", "std")
    assert run.code == 0, run
    got, want = np.load(tmp_path / "p.npy"), a.std(axis=0)
    assert got.dtype == want.dtype
    np.testing.assert_allclose(got, want, rtol=1e-5 if dtype in ("f4", "c8") else 1e-12)


def test_project_png_of_a_3d_result_tiles_its_planes(source, tmp_path: Path) -> None:
    folder, a = source
    run = run_main("project", str(folder), str(tmp_path / "p.png"))
    assert run.code == 0, run
    assert png_size(tmp_path / "p.png") == mosaic(a.mean(axis=0)).shape


def test_project_png_of_a_2d_result(source, tmp_path: Path) -> None:
    _, a = source
    np.save(tmp_path / "movie.npy", a[:, 0])
    run = run_main("project", str(tmp_path / "movie.npy"), str(tmp_path / "p.png"), "--stat", "max")
    assert run.code == 0, run
    assert png_size(tmp_path / "p.png") == (6, 5)


def test_project_png_of_a_4d_result_is_an_error(tmp_path: Path, random_array) -> None:
    np.save(tmp_path / "five.npy", random_array((2, 2, 2, 3, 4), "u1"))
    run = run_main("project", str(tmp_path / "five.npy"), str(tmp_path / "p.png"))
    assert_one_line_error(run, 1, "p.png", "2-D or 3-D", "(2, 2, 3, 4)")
    assert not (tmp_path / "p.png").exists()


# --- errors -----------------------------------------------------------------------------------


def _bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    (tmp_path / "bad.tif").write_bytes(b"II*\x00 nonsense")
    (tmp_path / "empty").mkdir()
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f["x"] = np.zeros((2, 3))
        f.create_group("g")
    zarr.create_group(str(tmp_path / "group.zarr"))
    np.save(tmp_path / "s.npy", np.array(["text"]))


@pytest.mark.parametrize(
    ("argv", "code", "fragments"),
    [
        (("convert", "{t}/nope", "{t}/o"), 1, ["{t}/nope", "no such file"]),
        (("convert", "{t}/bad.npy", "{t}/o"), 1, ["bad.npy", "not a readable .npy"]),
        (("convert", "{t}/bad.tif", "{t}/o"), 1, ["bad.tif", "not a readable TIFF"]),
        (("convert", "{t}/empty", "{t}/o"), 1, ["empty"]),
        (("convert", "{t}/f.h5:/y", "{t}/o"), 1, ["f.h5:/y", "no such dataset", "/x"]),
        (("convert", "{t}/f.h5:/g", "{t}/o"), 1, ["f.h5:/g", "not a dataset"]),
        (("convert", "{t}/f.h5", "{t}/o"), 1, ["f.h5", "name the dataset", "f.h5:/data"]),
        (("convert", "{t}/group.zarr", "{t}/o"), 1, ["group.zarr", "zarr"]),
        # A target name convert cannot write is bad command-line input: exit status 2.
        (("convert", "{t}/src", "{t}/o.h5"), 2, ["o.h5", "o.h5:/data"]),
        (("convert", "{t}/src", "{t}/o.h5:"), 2, ["o.h5:/data", "(got {t}/o.h5:)"]),
        (("convert", "{t}/src", "{t}/o.npz"), 2, ["o.npz", "'.npz'", "FILE.npy", "FOLDER.zarr"]),
        (("convert", "{t}/src", "{t}/o.zar"), 2, ["o.zar", "unknown suffix '.zar'"]),
        (("convert", "{t}/src", "{t}/o.png"), 2, ["o.png", "TARGET must be"]),
        (("project", "{t}/src", "{t}/o"), 2, ["OUTPUT must end in .npy, .tif, .tiff or .png"]),
        (("convert", "{t}/src", "{t}/o", "--block-shape", "1,2,3,4,5"), 2, ["5 numbers"]),
        (("convert", "{t}/src", "{t}/o", "--block-shape", "0"), 2, ["--block-shape"]),
        (("convert", "{t}/src", "{t}/o", "--compression", "lzma"), 2, ["unknown compression"]),
        (("convert", "{t}/src", "{t}/o.zarr", "--compression", "bzip2"), 1, ["bzip2", "zarr"]),
        (("convert", "{t}/src", "{t}/o", "--compression-level", "99"), 1, ["blosc level 99"]),
        (
            (
                "convert",
                "{t}/src",
                "{t}/o.h5:/d",
                "--compression",
                "gzip",
                "--compression-level",
                "12",
            ),
            1,
            ["gzip level 12"],
        ),
        (
            (
                "convert",
                "{t}/src",
                "{t}/o.zarr",
                "--compression",
                "zstd",
                "--compression-level",
                "99",
            ),
            1,
            ["zstd level 99"],
        ),
        (("convert", "{t}/s.npy", "{t}/o"), 1, ["s.npy", "not numbers"]),
        (("convert", "{t}/src", "{t}/o", "--scheduler", "gpu"), 2, ["invalid scheduler 'gpu'"]),
        (("project", "{t}/src", "{t}/p.jpg"), 2, ["OUTPUT must end in"]),
        (("project", "{t}/src", "{t}/p.npy", "--axis", "4"), 2, ["--axis 4", "out of range"]),
        (("project", "{t}/src", "{t}/p.npy", "--stat", "median"), 2, ["--stat"]),
        (("project", "{t}/nope.npy", "{t}/p.npy"), 1, ["nope.npy"]),
    ],
)
def test_bad_input_is_one_line_error(argv, code, fragments, source, tmp_path: Path) -> None:
    _bad_inputs(tmp_path)
    t = str(tmp_path)
    run = run_main(*(a.format(t=t) for a in argv))
    assert_one_line_error(run, code, "splitds", *(f.format(t=t) for f in fragments))
    assert not (tmp_path / "o").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


@pytest.mark.parametrize("target", TARGETS)
def test_a_failed_conversion_leaves_nothing_behind(target, source, tmp_path: Path) -> None:
    folder, _ = source
    last = max(folder.glob("*.h5"))
    last.write_bytes(last.read_bytes()[:100])  # truncated: reading this block fails
    run = run_main("convert", str(folder), str(tmp_path / target), "--block-shape", "2")
    assert_one_line_error(run, 1, last.name)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_ome_zarr_needs_named_axes(tmp_path: Path, random_array) -> None:
    np.save(tmp_path / "six.npy", random_array((2, 1, 1, 1, 2, 3), "u1"))
    run = run_main("convert", str(tmp_path / "six.npy"), str(tmp_path / "o.ome.zarr"))
    assert_one_line_error(run, 1, "OME-Zarr needs 2 to 5 axes")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["six.npy"]


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("terminal", [True, False])
def test_progress_bar_only_on_a_terminal(
    terminal: bool, source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = source
    err = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    assert main(["project", str(folder), str(tmp_path / "p.npy")]) == 0
    assert ("% Completed" in err.getvalue()) is terminal
    assert main(["convert", str(folder), str(tmp_path / "p.tif")]) == 0
    assert ("written 1 of 1 slabs" in err.getvalue()) is terminal
    assert (
        main(["convert", str(folder), str(tmp_path / "p.tif"), "--overwrite", "--no-progress"]) == 0
    )
    assert err.getvalue().count("written 1 of 1 slabs") == int(terminal)


@pytest.mark.parametrize(
    "scheduler", ["sync", "threads", pytest.param("processes", marks=pytest.mark.subprocess)]
)
def test_local_schedulers(scheduler: str, source, tmp_path: Path) -> None:
    folder, a = source
    run = run_main("convert", str(folder), str(tmp_path / "o.npy"), "--scheduler", scheduler)
    assert run.code == 0, run
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy"), a, strict=True)


@pytest.mark.parametrize(
    ("module", "target", "extra"), [("tifffile", "o.tif", "tiff"), ("zarr", "o.zarr", "zarr")]
)
def test_a_missing_optional_package_names_its_extra(
    module: str, target: str, extra: str, source, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder, _ = source
    monkeypatch.setitem(sys.modules, module, None)
    monkeypatch.setitem(sys.modules, f"{module}.codecs", None)
    run = run_main("convert", str(folder), str(tmp_path / target))
    assert_one_line_error(run, 1, f"splitds-dask[{extra}]")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_format_errors_are_package_errors_and_value_errors(tmp_path: Path) -> None:
    (tmp_path / "bad.npy").write_bytes(b"not an array")
    with pytest.raises(sd.FormatError, match=r"not a readable \.npy array") as info:
        open_source(str(tmp_path / "bad.npy"))
    assert isinstance(info.value, sd.SplitDatasetError)
    assert isinstance(info.value, ValueError)
    assert "FormatError" in sd.__all__

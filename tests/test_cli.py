"""The ``splitds`` command: ``demo`` and ``info``, in-process and as a real subprocess."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from test_png import decode_png, png_size

import splitds_dask
from splitds_dask import SplitDataset
from splitds_dask._cli import (
    FRAME_BYTES,
    FRAME_SHAPE,
    MOSAIC_GAP,
    main,
    mosaic,
    parse_size,
    run_demo,
    synthetic_movie,
    to_uint8,
)

# 8 MB is 7 time points of 8x256x256 uint16; 3 per block gives blocks of 3, 3 and 1.
SIZE = "8MB"
N_FRAMES = 7
BLOCK_FRAMES = 3
# The demo's PNG: the 8 planes of the mean tiled 2 x 4, with gaps between them.
PNG_SHAPE = (2 * FRAME_SHAPE[1] + MOSAIC_GAP, 4 * FRAME_SHAPE[2] + 3 * MOSAIC_GAP)


@dataclass
class Run:
    code: int
    out: str
    err: str


def run_main(*argv: str) -> Run:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return Run(code, out.getvalue(), err.getvalue())


def assert_one_line_error(run: Run, code: int, *fragments: str) -> None:
    assert run.code == code, run
    lines = run.err.strip().splitlines()
    assert len(lines) == 1, run.err
    assert "Traceback" not in run.err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Run]:
    folder = tmp_path_factory.mktemp("demo")
    run = run_main(
        "demo", str(folder), "--size", SIZE, "--block-frames", str(BLOCK_FRAMES), "--no-progress"
    )
    assert run.code == 0, run
    return folder, run


# --- demo -------------------------------------------------------------------------------------


def test_demo_writes_a_split_dataset(demo: tuple[Path, Run]) -> None:
    folder, _ = demo
    ds = SplitDataset(folder / "demo")
    assert ds.shape == (N_FRAMES, *FRAME_SHAPE)
    assert ds.dtype == np.uint16
    assert ds.shape_block == (BLOCK_FRAMES, *FRAME_SHAPE)
    assert ds.grid.grid == (3, 1, 1, 1)
    assert [p.name for p in ds.files.flat] == ["0000.h5", "0001.h5", "0002.h5"]
    assert ds.metadata["axis_order"] == "tzyx"


def test_demo_mean_is_numpys_mean(demo: tuple[Path, Run]) -> None:
    folder, _ = demo
    ds = SplitDataset(folder / "demo")
    data = np.asarray(ds)
    expected = data.mean(axis=0)
    np.testing.assert_allclose(ds.to_dask().mean(axis=0).compute(), expected, rtol=1e-12)
    # The movie looks like camera data: an offset, noise, cells brighter than the background.
    assert data.min() > 50
    assert data.max() < 5000
    assert expected.max() > 2 * np.median(expected)


def test_demo_png_is_the_mean_projection(demo: tuple[Path, Run]) -> None:
    folder, run = demo
    png = folder / "mean_projection.png"
    assert png.is_file()
    assert png_size(png) == PNG_SHAPE
    pixels = decode_png(png.read_bytes())
    assert pixels.dtype == np.uint8
    assert pixels.shape == PNG_SHAPE
    assert pixels.min() == 0
    assert pixels.max() == 255
    mean = np.asarray(SplitDataset(folder / "demo")).mean(axis=0)
    expected = to_uint8(mosaic(mean))
    assert np.abs(pixels.astype(int) - expected).max() <= 1
    assert str(png) in run.out


def test_demo_report(demo: tuple[Path, Run]) -> None:
    folder, run = demo
    out = run.out
    assert run.err == ""
    assert str(folder / "demo") in out
    assert f"({N_FRAMES}, 8, 256, 256)" in out
    assert "uint16" in out
    assert "grid (3, 1, 1, 1)" in out
    assert f"({BLOCK_FRAMES}, 8, 256, 256)" in out
    assert "3 block files" in out
    assert "uncompressed" in out
    assert "on disk" in out
    assert "compression ratio" in out
    lines = {line.split()[0]: line for line in out.splitlines()}
    for label in ("write", "mean"):
        assert " s, " in lines[label], lines[label]
        assert "MB/s" in lines[label], lines[label]
    assert "Completed" not in out  # no progress bar with --no-progress


def test_demo_rerun_replaces_its_own_dataset(tmp_path: Path) -> None:
    args = ("demo", str(tmp_path), "--size", "2MB", "--no-progress")
    assert run_main(*args).code == 0
    first = np.asarray(SplitDataset(tmp_path / "demo"))
    rerun = run_main(*args, "--seed", "1")
    assert rerun.code == 0, rerun
    ds = SplitDataset(tmp_path / "demo")
    assert ds.shape == (1, *FRAME_SHAPE)
    assert not np.array_equal(np.asarray(ds), first)  # rewritten, with the new seed


def test_demo_refuses_a_dataset_it_did_not_write(tmp_path: Path) -> None:
    splitds_dask.to_split_dataset(np.zeros((4, 4), np.uint16), tmp_path / "demo")
    run = run_main("demo", str(tmp_path), "--size", "2MB", "--no-progress")
    assert_one_line_error(run, 1, str(tmp_path / "demo"), "did not write")
    assert SplitDataset(tmp_path / "demo").shape == (4, 4)  # untouched


def test_demo_refuses_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "notes.txt").write_text("keep me")
    run = run_main("demo", str(tmp_path), "--size", "2MB", "--no-progress")
    assert_one_line_error(run, 1, str(tmp_path / "demo"))
    assert (tmp_path / "demo" / "notes.txt").read_text() == "keep me"


def test_demo_defaults_to_a_new_temporary_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = run_main("demo", "--size", "2MB", "--no-progress", "--scheduler", "sync")
    assert run.code == 0, run
    (folder,) = tmp_path.iterdir()
    assert folder.name.startswith("splitds-demo-")
    assert str(folder) in run.out.splitlines()[0]
    assert SplitDataset(folder / "demo").shape == (1, *FRAME_SHAPE)
    assert (folder / "mean_projection.png").is_file()


def test_run_demo_returns_the_mean(tmp_path: Path) -> None:
    out = io.StringIO()
    result = run_demo(tmp_path / "new" / "folder", size=3 * FRAME_BYTES, block_frames=2, out=out)
    assert result.dataset.shape == (3, *FRAME_SHAPE)
    assert result.dataset.chunks[0] == (2, 1)
    np.testing.assert_allclose(result.mean, np.asarray(result.dataset).mean(axis=0), rtol=1e-12)
    assert result.png == tmp_path / "new" / "folder" / "mean_projection.png"
    assert result.write_seconds > 0
    assert result.mean_seconds > 0
    assert result.bytes_on_disk == sum(p.stat().st_size for p in result.dataset.files.flat)
    assert "MB/s" in out.getvalue()


@pytest.mark.parametrize(
    ("size", "fragment"),
    [
        ("lots", "invalid size 'lots'"),
        ("12XB", "invalid size '12XB'"),
        ("0", "must be positive"),
        ("-5MB", "invalid size"),
        ("", "invalid size"),
        ("10KB", "less than one time point"),
    ],
)
def test_bad_size_is_a_one_line_usage_error(size: str, fragment: str, tmp_path: Path) -> None:
    run = run_main("demo", str(tmp_path), f"--size={size}")
    assert_one_line_error(run, 2, "--size", fragment)
    assert run.out == ""
    assert not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    "argv",
    [
        ("demo", "--block-frames", "0"),
        ("demo", "--block-frames", "many"),
        ("demo", "--scheduler", "gpu"),
        ("demo", "--seed", "-1"),
        ("demo", "a", "b"),
        ("info",),
        ("frobnicate",),
        (),
    ],
)
def test_bad_arguments_are_one_line_usage_errors(argv: tuple[str, ...]) -> None:
    assert_one_line_error(run_main(*argv), 2, "splitds")


def test_help_and_version() -> None:
    run = run_main("--help")
    assert run.code == 0
    assert "demo" in run.out
    assert "info" in run.out
    run = run_main("demo", "--help")
    assert run.code == 0
    assert "--size" in run.out
    run = run_main("--version")
    assert run.code == 0
    assert splitds_dask.__version__ in run.out


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("400MB", 400_000_000),
        ("400mb", 400_000_000),
        ("1.5GB", 1_500_000_000),
        ("8 MB", 8_000_000),
        ("512KiB", 512 * 1024),
        ("2MiB", 2 * 1024**2),
        ("1GiB", 1024**3),
        ("3KB", 3000),
        ("1000", 1000),
        ("1e6", 1_000_000),
    ],
)
def test_parse_size(text: str, expected: int) -> None:
    assert parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "MB", "1.2.3MB", "5 parsecs", "-1MB", "0KB", "nan"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="size"):
        parse_size(text)


# --- the synthetic movie ----------------------------------------------------------------------


def test_synthetic_movie_does_not_depend_on_chunking() -> None:
    shape = (3, 40, 48)
    a = synthetic_movie(70, frame_shape=shape, block_frames=7, seed=3)
    b = synthetic_movie(70, frame_shape=shape, block_frames=64, seed=3)
    assert a.chunks[0] == (7,) * 10
    assert b.chunks[0] == (64, 6)
    assert a.dtype == np.uint16
    assert a.shape == (70, *shape)
    x = a.compute(scheduler="threads")
    np.testing.assert_array_equal(x, b.compute(scheduler="sync"))
    assert not np.array_equal(x, synthetic_movie(70, frame_shape=shape, seed=4).compute())
    # Cells flash: somewhere the signal varies far more over time than shot noise alone would.
    excess = x.astype(float).var(axis=0) / np.maximum(x.mean(axis=0) - 100, 1)
    assert excess.max() > 10


# --- info -------------------------------------------------------------------------------------


def test_info_text(demo: tuple[Path, Run]) -> None:
    folder, _ = demo
    run = run_main("info", str(folder / "demo"))
    assert run.code == 0, run
    assert run.err == ""
    fields = {line[:13].strip(): line[14:] for line in run.out.splitlines()}
    assert fields["path"] == str(folder / "demo")
    assert fields["shape"] == f"({N_FRAMES}, 8, 256, 256) (tzyx)"
    assert fields["dtype"] == "uint16"
    assert fields["block shape"] == f"({BLOCK_FRAMES}, 8, 256, 256)"
    assert fields["grid"] == "(3, 1, 1, 1) blocks"
    assert fields["files"] == "3"
    assert fields["data key"] == "stack_4D"
    assert fields["metadata"].startswith("stack_metadata.json: shape_full, shape_block")
    assert f"{N_FRAMES * FRAME_BYTES:,} bytes" in fields["uncompressed"]
    assert "compression ratio" in fields["on disk"]


def test_info_json(demo: tuple[Path, Run]) -> None:
    folder, _ = demo
    run = run_main("info", str(folder / "demo"), "--json")
    assert run.code == 0, run
    info = json.loads(run.out)
    ds = SplitDataset(folder / "demo")
    assert info["path"] == str(folder / "demo")
    assert info["shape"] == list(ds.shape)
    assert info["dtype"] == "uint16"
    assert info["shape_block"] == [BLOCK_FRAMES, *FRAME_SHAPE]
    assert info["grid"] == [3, 1, 1, 1]
    assert info["n_files"] == 3
    assert info["missing_files"] == 0
    assert info["data_key"] == "stack_4D"
    assert info["metadata_file"] == str(folder / "demo" / "stack_metadata.json")
    assert info["metadata_keys"][:2] == ["shape_full", "shape_block"]
    assert info["metadata"]["shape_full"] == list(ds.shape)
    assert info["nbytes"] == ds.nbytes == N_FRAMES * FRAME_BYTES
    on_disk = sum(p.stat().st_size for p in ds.files.flat)
    assert info["bytes_on_disk"] == on_disk
    assert info["compression_ratio"] == pytest.approx(ds.nbytes / on_disk, abs=1e-3)


def test_info_on_a_folder_that_is_not_a_dataset(tmp_path: Path) -> None:
    (tmp_path / "readme.txt").write_text("hello")
    assert_one_line_error(run_main("info", str(tmp_path)), 1, str(tmp_path))
    assert_one_line_error(run_main("info", str(tmp_path), "--json"), 1, str(tmp_path))


def test_info_on_a_missing_path(tmp_path: Path) -> None:
    assert_one_line_error(run_main("info", str(tmp_path / "nope")), 1, str(tmp_path / "nope"))


def test_info_on_bad_metadata(tmp_path: Path) -> None:
    (tmp_path / "stack_metadata.json").write_text("{not json")
    (tmp_path / "0000.h5").write_bytes(b"")
    assert_one_line_error(run_main("info", str(tmp_path)), 1, "stack_metadata.json")


# --- the installed command, as a real subprocess ---------------------------------------------


def splitds_command() -> list[str]:
    """The ``splitds`` console script beside this interpreter, else ``python -m``."""
    script = Path(sys.executable).parent / ("splitds.exe" if os.name == "nt" else "splitds")
    if script.is_file():
        return [str(script)]
    return [sys.executable, "-m", "splitds_dask._cli"]


def run_command(*argv: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ)
    # Make the package under test importable however it is installed (or not).
    src = str(Path(splitds_dask.__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [src, env.get("PYTHONPATH")]))
    return subprocess.run(
        [*splitds_command(), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        check=False,
    )


def test_command_demo_and_info(tmp_path: Path) -> None:
    proc = run_command("demo", str(tmp_path), "--size", "4MB", "--block-frames", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert "MB/s" in proc.stdout
    assert "Completed" not in proc.stdout  # stdout is not a terminal: no progress bar
    ds = SplitDataset(tmp_path / "demo")
    assert ds.shape == (3, *FRAME_SHAPE)
    assert ds.dtype == np.uint16
    assert png_size(tmp_path / "mean_projection.png") == PNG_SHAPE

    proc = run_command("info", str(tmp_path / "demo"), "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["shape"] == [3, *FRAME_SHAPE]


def test_command_processes_scheduler(tmp_path: Path) -> None:
    proc = run_command("demo", str(tmp_path), "--size", "3MB", "--scheduler", "processes")
    assert proc.returncode == 0, proc.stderr
    ds = SplitDataset(tmp_path / "demo")
    np.testing.assert_allclose(
        ds.to_dask().mean(axis=0).compute(), np.asarray(ds).mean(axis=0), rtol=1e-12
    )


def test_command_errors(tmp_path: Path) -> None:
    proc = run_command("demo", str(tmp_path), "--size", "huge")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [proc.stderr.strip()]
    assert "invalid size 'huge'" in proc.stderr
    assert "Traceback" not in proc.stderr

    proc = run_command("info", str(tmp_path))
    assert proc.returncode == 1
    assert len(proc.stderr.strip().splitlines()) == 1
    assert str(tmp_path) in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.skipif(shutil.which("splitds") is None, reason="the console script is not on PATH")
def test_console_script_on_path_runs() -> None:
    proc = subprocess.run(
        ["splitds", "--version"], capture_output=True, text=True, timeout=120, check=False
    )
    assert proc.returncode == 0
    assert proc.stdout.startswith("splitds ")

"""``splitds demo``: the dataset, mean, PNG and report it makes, and what it refuses to replace.

Runs through ``main`` (the ``demo`` fixture of ``conftest.py``) and through ``run_demo``.
"""

from __future__ import annotations

import io
import json
import shlex
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest

import splitds_dask
from splitds_dask import SplitDataset
from splitds_dask._cli.demo import run_demo
from splitds_dask._cli.images import mosaic, to_uint8
from splitds_dask._synthetic import FRAME_BYTES, FRAME_SHAPE
from tests.helpers.cli import (
    BLOCK_FRAMES,
    N_FRAMES,
    PNG_SHAPE,
    Run,
    assert_one_line_error,
    run_main,
)
from tests.helpers.png import decode_png, png_size

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


# --- physical metadata, and the files left behind -------------------------------------------------


def test_demo_records_its_physical_metadata(demo: tuple[Path, Run]) -> None:
    folder, run = demo
    ds = SplitDataset(folder / "demo")
    assert ds.axes == ("t", "z", "y", "x")
    assert ds.scale == (0.2, 7.0, 0.6, 0.6)  # 5 volumes/s, 7 µm planes, 0.6 µm pixels
    assert ds.units == ("second", "micrometer", "micrometer", "micrometer")
    stored = json.loads((folder / "demo" / "stack_metadata.json").read_text())
    assert stored["scale"] == [0.2, 7.0, 0.6, 0.6]
    assert stored["resolution"] == [0.2, 7.0, 0.6, 0.6]  # what the original package reads
    assert "0.2 s per volume, 7 µm between planes, 0.6 x 0.6 µm pixels" in run.out


def _labelled(out: str, label: str) -> str:
    (line,) = [line for line in out.splitlines() if line.split()[:1] == [label]]
    return line[len(label) :].strip()


def _remove(command: str) -> list[Path]:
    """What ``rm -r PATHS`` would remove, removed here."""
    words = shlex.split(command)
    assert words[:2] == ["rm", "-r"]
    paths = [Path(w) for w in words[2:]]
    for path in paths:
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    return paths


_UNITS = {"B": 1, "KB": 1e3, "MB": 1e6, "GB": 1e9}


def _assert_reported_size(kept: str, nbytes: int) -> None:
    """``"...: 7.9 MB on disk"`` is ``nbytes`` to its one decimal."""
    number, unit = kept.split(": ")[-1].removesuffix(" on disk").split()
    assert abs(float(number) - nbytes / _UNITS[unit]) <= 0.05, (kept, nbytes)


def _size_on_disk(paths: list[Path]) -> int:
    return sum(
        f.stat().st_size
        for p in paths
        for f in ([p] if p.is_file() else p.rglob("*"))
        if f.is_file()
    )


def test_demo_says_where_its_files_are_and_how_to_remove_them(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    run = run_main("demo", str(tmp_path), "--size", "2MB", "--no-progress")
    assert run.code == 0, run
    ours = [tmp_path / "demo", tmp_path / "mean_projection.png"]
    kept = _labelled(run.out, "kept")
    assert kept.startswith(f"{ours[0]} and {ours[1]}: ")
    _assert_reported_size(kept, _size_on_disk(ours))
    assert _remove(_labelled(run.out, "remove")) == ours  # the user's folder and files stay
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


def test_demo_in_a_new_temporary_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    run = run_main("demo", "--size", "2MB", "--no-progress")
    assert run.code == 0, run
    folder = Path(_labelled(run.out, "folder").removesuffix(" (new temporary folder)"))
    assert folder.parent == tmp_path
    assert SplitDataset(folder / "demo").scale == (0.2, 7.0, 0.6, 0.6)
    kept = _labelled(run.out, "kept")
    assert kept.startswith(f"{folder} (a new temporary folder): ")
    _assert_reported_size(kept, _size_on_disk([folder]))
    assert _remove(_labelled(run.out, "remove")) == [folder]
    assert list(tmp_path.iterdir()) == []

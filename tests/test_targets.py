"""What ``splitds convert`` and ``splitds project`` write to: names, the checks made before
anything is read or computed, and the size guard of PNG previews."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from dask.callbacks import Callback

import splitds_dask as sd
import splitds_dask._reader
from splitds_dask._cli.images import MAX_PNG_PLANES, mosaic_layout
from splitds_dask._cli.targets import parse_target
from tests.helpers.cli import assert_one_line_error, run_main
from tests.helpers.damage import spoil_chunks
from tests.helpers.png import png_size

SHAPE = (6, 2, 4, 3)


class Reads:
    """Block data read and dask tasks run while a command runs (the real ones, counted)."""

    def __init__(self) -> None:
        self.blocks: list[tuple[int, ...]] = []
        self.tasks = 0

    def _pretask(self, key, dsk, state) -> None:
        self.tasks += 1


@pytest.fixture
def reads(monkeypatch: pytest.MonkeyPatch) -> Iterator[Reads]:
    counted = Reads()
    read = splitds_dask._reader.read_block_region

    def counting(path, **kwargs):
        counted.blocks.append(tuple(kwargs["block"]))
        return read(path, **kwargs)

    monkeypatch.setattr(splitds_dask._reader, "read_block_region", counting)
    with Callback(pretask=counted._pretask):
        yield counted


@pytest.fixture
def source(tmp_path: Path, random_array) -> tuple[Path, np.ndarray]:
    a = random_array(SHAPE, "u2", seed=1)
    sd.to_split_dataset(a, tmp_path / "src", (2,))
    return tmp_path / "src", a


def _corrupt(folder: Path) -> None:
    """Overwrite every stored chunk of every block file: any read of data fails."""
    spoil_chunks(sorted(folder.glob("*.h5")))


# --- an existing output is refused before anything is read -----------------------------------

OUTPUTS = [
    ("convert", "out"),
    ("convert", "out.npy"),
    ("convert", "out.tif"),
    ("convert", "out.h5:/data"),
    ("convert", "out.zarr"),
    ("convert", "out.ome.zarr"),
    ("project", "p.npy"),
    ("project", "p.tif"),
    ("project", "p.png"),
]


@pytest.mark.parametrize(("command", "target"), OUTPUTS)
def test_an_existing_output_is_refused_before_any_read(
    command: str, target: str, source, tmp_path: Path, reads: Reads
) -> None:
    folder, _ = source
    out = str(tmp_path / target)
    first = run_main(command, str(folder), out, "--scheduler", "sync")
    assert first.code == 0, first
    # The counters see a real run.
    assert reads.tasks > 0
    assert reads.blocks
    before = (reads.tasks, len(reads.blocks))
    _corrupt(folder)  # a read of the data now fails: the refusal must come first
    again = run_main(command, str(folder), out, "--scheduler", "sync")
    assert_one_line_error(again, 1, "exists", "--overwrite")
    assert (reads.tasks, len(reads.blocks)) == before


@pytest.mark.parametrize(("command", "target"), [("convert", "o.npy"), ("project", "p.npy")])
def test_an_output_under_a_file_is_refused_before_any_read(
    command: str, target: str, source, tmp_path: Path, reads: Reads
) -> None:
    folder, _ = source
    (tmp_path / "notes.txt").write_text("a file, not a folder")
    run = run_main(command, str(folder), str(tmp_path / "notes.txt" / "sub" / target))
    assert_one_line_error(run, 1, "notes.txt is not a folder")
    assert reads.tasks == 0
    assert reads.blocks == []


# --- names ------------------------------------------------------------------------------------


def test_a_name_ending_in_a_slash_is_a_split_dataset_folder(source, tmp_path: Path) -> None:
    folder, a = source
    run = run_main("convert", str(folder), str(tmp_path / "run.2024-05") + "/")
    assert run.code == 0, run
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "run.2024-05")[...], a, strict=True)
    # Once it is a split dataset, its name needs no slash to be replaced.
    run = run_main("convert", str(folder), str(tmp_path / "run.2024-05"), "--overwrite")
    assert run.code == 0, run


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("out.zarr/", "zarr"),
        ("out.ome.zarr/", "ome-zarr"),
        ("run.2024-05/", "split"),
        ("run", "split"),
        ("a.b/run", "split"),
        ("OUT.TIFF", "tiff"),
        ("o.hdf5:/x/y", "hdf5"),
    ],
)
def test_target_kinds(name: str, kind: str) -> None:
    assert parse_target(name).kind == kind


@pytest.mark.parametrize("name", ["out.npz", "out.zar", "out.hdf5:", "out.h5:data", "o.png"])
def test_unknown_names_are_never_written(name: str, source, tmp_path: Path) -> None:
    folder, _ = source
    run = run_main("convert", str(folder), str(tmp_path / name))
    assert_one_line_error(run, 2, name.split(":")[0])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


# --- PNG previews have a size limit -----------------------------------------------------------


def test_a_png_of_too_many_planes_is_refused_before_computing(
    tmp_path: Path, random_array, reads: Reads
) -> None:
    planes = MAX_PNG_PLANES + 6
    np.save(tmp_path / "m.npy", random_array((3, planes, 4, 5), "u1"))
    run = run_main("project", str(tmp_path / "m.npy"), str(tmp_path / "p.png"))
    assert_one_line_error(
        run, 2, "p.png", f"{planes} planes", "--select ':, ::2'", ".tif", "--large-png"
    )
    assert reads.tasks == 0
    assert not (tmp_path / "p.png").exists()
    # Each way out the message names works.
    run = run_main(
        "project", str(tmp_path / "m.npy"), str(tmp_path / "p.png"), "--select", ":, ::2"
    )
    assert run.code == 0, run
    assert png_size(tmp_path / "p.png") == mosaic_layout((planes // 2, 4, 5))[2:]
    run = run_main("project", str(tmp_path / "m.npy"), str(tmp_path / "p.tif"))
    assert run.code == 0, run
    run = run_main(
        "project", str(tmp_path / "m.npy"), str(tmp_path / "p.png"), "--large-png", "--overwrite"
    )
    assert run.code == 0, run
    assert png_size(tmp_path / "p.png") == mosaic_layout((planes, 4, 5))[2:]


def test_a_png_of_too_many_pixels_is_refused_before_computing(tmp_path: Path, reads: Reads):
    # 8,200 x 8,200 = 67.2 megapixels in one plane; sparse on disk, never read.
    np.lib.format.open_memmap(tmp_path / "big.npy", mode="w+", dtype="u1", shape=(2, 8200, 8200))
    run = run_main("project", str(tmp_path / "big.npy"), str(tmp_path / "p.png"))
    assert_one_line_error(run, 2, "8200x8200 pixels", "64 megapixels", "--large-png")
    assert reads.tasks == 0
    assert not (tmp_path / "p.png").exists()

"""Outputs published whole: the one overwrite rule (``check_replaceable``), single files staged
under their owner's name, and a conversion killed mid-write, which leaves the previous output
and whose staging the next conversion removes."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import tifffile
import zarr

import splitds_dask as sd
from splitds_dask._format.metadata import is_split_dataset
from splitds_dask._storage.atomic import (
    check_replaceable,
    remove_stale_staging,
    staged_file,
    staging_path,
)
from tests.helpers.cli import package_env


@pytest.fixture(scope="module")
def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


# --- check_replaceable ------------------------------------------------------------------------


def _make(path: Path, what: str) -> None:
    if what == "file":
        path.write_bytes(b"mine")
    elif what == "empty folder":
        path.mkdir()
    elif what == "folder":
        path.mkdir()
        (path / "thesis.tex").write_text("precious")
    elif what == "dataset":
        sd.to_split_dataset(np.arange(4, dtype=np.uint8), path)


@pytest.mark.parametrize(
    ("there", "folder", "overwrite", "refused"),
    [
        ("nothing", True, False, None),
        ("empty folder", True, False, None),
        ("empty folder", False, True, "exists and is not a split dataset; not replacing it"),
        ("file", True, True, "exists and is not a split dataset; not replacing it"),
        ("folder", True, True, "exists and is not a split dataset; not replacing it"),
        (
            "dataset",
            True,
            False,
            "exists and is already a split dataset; pass overwrite=True to replace it",
        ),
        ("dataset", True, True, None),
    ],
)
def test_check_replaceable(
    tmp_path: Path, there: str, folder: bool, overwrite: bool, refused: str | None
) -> None:
    path = tmp_path / "out"
    _make(path, there)
    listing = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    def check() -> None:
        check_replaceable(path, overwrite=overwrite, replaceable=is_split_dataset, folder=folder)

    if refused is None:
        check()
    else:
        with pytest.raises(FileExistsError) as info:
            check()
        assert str(info.value) == f"{path} {refused}"
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == listing, "untouched"


def test_check_replaceable_words_and_refusal(tmp_path: Path) -> None:
    path = tmp_path / "out.npy"
    path.write_bytes(b"old output")
    with pytest.raises(FileExistsError) as info:
        check_replaceable(
            path,
            overwrite=False,
            replaceable=Path.is_file,
            what="a .npy output",
            hint="pass --overwrite",
            folder=False,
        )
    assert (
        str(info.value)
        == f"{path} exists and is already a .npy output; pass --overwrite to replace it"
    )
    with pytest.raises(FileExistsError) as info:
        check_replaceable(
            path,
            overwrite=True,
            replaceable=lambda p: False,
            refusal=lambda p: f"is a {p.suffix} file that this program did not write",
        )
    assert (
        str(info.value)
        == f"{path} is a .npy file that this program did not write; not replacing it"
    )


# --- single files staged under their owner's name ---------------------------------------------


def _write_and_fail(path: Path) -> None:
    with staged_file(path) as staging:
        staging.write_bytes(b"half")
        raise RuntimeError("boom")


@pytest.mark.parametrize("durable", [False, True])
def test_staged_file_publishes_whole_or_not_at_all(tmp_path: Path, durable: bool) -> None:
    path = tmp_path / "out.bin"
    path.write_bytes(b"old")
    with staged_file(path, durable=durable) as staging:
        assert staging.parent == tmp_path
        assert staging.name.startswith(".out.bin.")
        assert staging.name.endswith(f"-{os.getpid()}.partial")
        staging.write_bytes(b"new")
        assert path.read_bytes() == b"old"
    assert path.read_bytes() == b"new"
    with pytest.raises(RuntimeError, match="boom"):
        _write_and_fail(path)
    assert path.read_bytes() == b"new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.bin"]


def _staging_file_of(path: Path, pid: int, kind: str) -> Path:
    name = staging_path(path, kind).name
    stem, _, _ = name.rpartition(f"-{os.getpid()}.")
    staging = path.with_name(f"{stem}-{pid}.{kind}")
    staging.write_bytes(b"left by a writer")
    return staging


@pytest.mark.subprocess
def test_stale_staging_files_of_dead_writers_are_removed(tmp_path: Path, dead_pid: int) -> None:
    target = tmp_path / "out.npy"
    target.write_bytes(b"current")
    dead = [_staging_file_of(target, dead_pid, kind) for kind in ("partial", "trash", "old")]
    alive = _staging_file_of(target, os.getpid(), "partial")
    assert sorted(remove_stale_staging(target)) == sorted(dead)
    assert alive.read_bytes() == b"left by a writer"
    assert target.read_bytes() == b"current"


@pytest.mark.subprocess
def test_a_file_left_aside_is_put_back_when_the_target_is_missing(
    tmp_path: Path, dead_pid: int
) -> None:
    target = tmp_path / "out.tif"
    aside = _staging_file_of(target, dead_pid, "old")
    remove_stale_staging(target)
    assert target.read_bytes() == b"left by a writer"
    assert not aside.exists()


# --- a conversion killed mid-write ------------------------------------------------------------

# Runs write_array on the synchronous scheduler and kills its own process (SIGKILL: no cleanup
# of any kind runs) when the third task has finished: some of the output is written, the output
# is not complete, nothing is published.
_KILLED_MID_WRITE = """
import os, signal, sys

import dask
from dask.callbacks import Callback

from splitds_dask._cli.sources import open_source
from splitds_dask._cli.targets import write_array

source, target, slab_bytes = sys.argv[1], sys.argv[2], int(sys.argv[3])
finished = 0


def posttask(key, result, dsk, state, worker_id):
    global finished
    finished += 1
    if finished == 3:
        os.kill(os.getpid(), signal.SIGKILL)


with Callback(posttask=posttask), dask.config.set(scheduler="sync"):
    write_array(open_source(source), target, overwrite=True, slab_bytes=slab_bytes)
print("not killed: the conversion finished")
"""

SHAPE = (6, 8, 8)


def _read(path: Path, target: str) -> np.ndarray:
    """The array at ``target``, read with the format's own library."""
    if target.endswith(".npy"):
        return np.load(path / target)
    if target.endswith(".tif"):
        return tifffile.imread(path / target)
    if ".h5:" in target:
        name, key = target.split(":")
        with h5py.File(path / name, "r") as f:
            return f[key][()]
    if target.endswith(".zarr"):
        return zarr.open_array(store=str(path / target), mode="r")[...]
    # A split dataset, read with h5py: its block files hold one time point each, in name order.
    files = sorted((path / target).glob("*.h5"))
    assert len(files) == SHAPE[0]
    blocks = []
    for file in files:
        with h5py.File(file, "r") as f:
            blocks.append(f["stack_3D"][()])
    return np.concatenate(blocks)


@pytest.mark.subprocess
@pytest.mark.slow
@pytest.mark.parametrize("target", ["out", "out.npy", "out.tif", "out.h5:/data", "out.zarr"])
def test_a_conversion_killed_mid_write_leaves_the_previous_output(
    tmp_path: Path, target: str
) -> None:
    old = np.arange(np.prod(SHAPE), dtype=np.int32).reshape(SHAPE)
    new = -old
    sd.to_split_dataset(old, tmp_path / "old", (1, 8, 8))
    sd.to_split_dataset(new, tmp_path / "new", (1, 8, 8))
    env = package_env()
    cli = [sys.executable, "-m", "splitds_dask._cli", "convert"]
    subprocess.run([*cli, "old", target, "--no-progress"], cwd=tmp_path, env=env, check=True)
    name = target.split(":")[0]
    visible = sorted(p.name for p in tmp_path.iterdir())
    assert visible == sorted(["old", "new", name])

    slab_bytes = old[0].nbytes  # TIFF and HDF5: one time point per slab, six slabs
    killed = subprocess.Popen(
        [sys.executable, "-c", _KILLED_MID_WRITE, "new", target, str(slab_bytes)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    out, err = killed.communicate()
    assert killed.returncode == -signal.SIGKILL, (out, err)
    np.testing.assert_array_equal(_read(tmp_path, target), old, strict=True)
    entries = sorted(p.name for p in tmp_path.iterdir())
    assert [e for e in entries if not e.startswith(".")] == visible, "no partial output shows"
    # A killed split dataset writer also leaves its lock file (never locked by a dead process:
    # the next writer reuses it and deletes it).
    left = [e for e in entries if e.startswith(".") and e != f".{name}.splitds-lock"]
    assert left, "the killed conversion left its staging (else it was not killed mid-write)"
    assert all(e.startswith(f".{name}.") and e.endswith(f"-{killed.pid}.partial") for e in left)

    subprocess.run(
        [*cli, "new", target, "--overwrite", "--no-progress"], cwd=tmp_path, env=env, check=True
    )
    np.testing.assert_array_equal(_read(tmp_path, target), new, strict=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == visible, "the stale staging is gone"

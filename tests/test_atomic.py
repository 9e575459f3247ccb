"""Staging folders named after their owner, cleaned up only when the owner is dead; the folder
swap with and without the atomic exchange."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd
from splitds_dask._storage import atomic as _durable


@pytest.fixture(scope="module")
def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    )
    return int(proc.stdout)


def _staging_of(path: Path, pid: int, kind: str, host: str | None = None) -> Path:
    name = _durable.staging_path(path, kind).name
    stem, _, _ = name.rpartition(f".{_durable._host()}-")
    folder = path.with_name(f"{stem}.{host or _durable._host()}-{pid}.{kind}")
    folder.mkdir()
    (folder / "0000.h5").write_bytes(b"x")
    return folder


@pytest.mark.subprocess
def test_only_staging_of_dead_local_writers_is_removed(tmp_path: Path, dead_pid: int) -> None:
    target = tmp_path / "dataset"
    target.mkdir()
    dead = [_staging_of(target, dead_pid, kind) for kind in ("partial", "old", "trash")]
    alive = _staging_of(target, os.getpid(), "partial")
    foreign = _staging_of(target, dead_pid, "partial", host="0badf00d")
    other_target = _staging_of(tmp_path / "dataset2", dead_pid, "partial")
    not_ours = tmp_path / ".dataset.partial"
    not_ours.mkdir()
    removed = _durable.remove_stale_staging(target)
    assert sorted(removed) == sorted(dead)
    for kept in (alive, foreign, other_target, not_ours, target):
        assert kept.is_dir()


@pytest.mark.subprocess
def test_a_replaced_dataset_is_put_back_when_the_target_is_missing(
    tmp_path: Path, dead_pid: int
) -> None:
    target = tmp_path / "dataset"
    old = _staging_of(target, dead_pid, "old")
    trash = _staging_of(target, dead_pid, "trash")
    _durable.remove_stale_staging(target)
    assert (target / "0000.h5").read_bytes() == b"x"
    assert not old.exists()
    assert not trash.exists()


@pytest.mark.parametrize("atomic", [True, False])
def test_overwrite_with_and_without_the_atomic_exchange(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, atomic: bool
) -> None:
    if not atomic:  # what happens on NFS or macOS, where renameat2 is not available
        monkeypatch.setattr(_durable, "exchange", lambda a, b: False)
    sd.to_split_dataset(np.zeros((6, 2), np.int64), tmp_path / "d", 2)
    sd.to_split_dataset(np.ones((5, 3), np.int64), tmp_path / "d", 4, overwrite=True)
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "d")[...], np.ones((5, 3)))
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_exchange_swaps_two_folders(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "in_a").touch()
    (tmp_path / "b").mkdir()
    if not _durable.exchange(tmp_path / "a", tmp_path / "b"):
        pytest.fail("renameat2(RENAME_EXCHANGE) is not available on this Linux file system")
    assert (tmp_path / "b" / "in_a").exists()
    assert not (tmp_path / "a" / "in_a").exists()


@pytest.mark.subprocess
def test_a_dataset_left_aside_by_a_crash_is_put_back_before_writing(
    tmp_path: Path, dead_pid: int
) -> None:
    """Killed between the two renames of the fallback swap: ``d`` is missing, the old dataset
    sits under a hidden name. The next write puts it back rather than writing over it."""
    sd.to_split_dataset(np.full((4, 2), 7, np.uint8), tmp_path / "d")
    aside = _staging_of(tmp_path / "d", dead_pid, "old")
    shutil.rmtree(aside)
    (tmp_path / "d").rename(aside)
    with pytest.raises(FileExistsError, match="already a split dataset"):
        sd.to_split_dataset(np.zeros((4, 2), np.uint8), tmp_path / "d")
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "d")[...], 7)
    assert [p.name for p in tmp_path.iterdir()] == ["d"]


def test_discard_leaves_nothing_a_late_task_can_write_into(tmp_path):
    """A task still running after a failure cannot add a file to a discarded staging folder."""
    from splitds_dask._storage.atomic import discard, staging_path

    target = tmp_path / "out"
    staging = staging_path(target)
    staging.mkdir()
    (staging / "0000.h5").write_bytes(b"done")
    with open(staging / ".0001.h5.tmp.partial", "wb") as in_flight:  # a block being written
        discard(staging, target)
        in_flight.write(b"more")  # the open file still works, but it is in no folder now
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(FileNotFoundError):
        (staging / ".0002.h5.tmp.partial").write_bytes(b"late")  # a task starting later
    assert list(tmp_path.iterdir()) == []
    discard(staging, target)  # already gone: nothing to do


@pytest.mark.parametrize("target", ["folder", "missing"])
def test_a_symbolic_link_is_never_replaced(tmp_path: Path, target: str) -> None:
    real = tmp_path / "real"
    if target == "folder":
        real.mkdir()
        (real / "keep.txt").write_text("kept")
    link = tmp_path / "link"
    link.symlink_to(real)
    staging = _durable.staging_path(link)
    staging.mkdir()
    (staging / "new.txt").write_text("new")
    message = rf"{link} is a symbolic link to {real}; pass the target's path"
    with pytest.raises(FileExistsError, match=message):
        _durable.replace_folder(staging, link)
    with pytest.raises(FileExistsError, match=message):
        _durable.check_replaceable(link, overwrite=True, replaceable=lambda p: True)
    assert link.is_symlink()
    assert os.readlink(link) == str(real)
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == (
        ["link", "real"] if target == "folder" else ["link"]
    )
    if target == "folder":
        assert (link / "keep.txt").read_text() == "kept"

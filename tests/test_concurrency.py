"""Reading while a writer appends, in another process: every open sees a consistent prefix; HDF5
file locks held by other programs; the ``locking=`` option reaches every file opened."""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pytest

import splitds_dask as sd
from tests.helpers import crash as cs
from tests.helpers.timeouts import TIMEOUT

_HOLD = r"""
import sys, h5py
f = h5py.File(sys.argv[1], "r+")  # HDF5 takes an exclusive lock on files opened for writing
print("locked", flush=True)
sys.stdin.read()
f.close()
"""


@pytest.fixture
def hold_open():
    """``hold_open(path)``: another process keeps ``path`` open for writing (locked)."""
    procs = []

    def hold(path: Path) -> None:
        proc = subprocess.Popen(
            [sys.executable, "-c", _HOLD, str(path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        assert proc.stdout.readline().strip() == "locked"

    yield hold
    for proc in procs:
        proc.stdin.close()
        proc.wait(timeout=TIMEOUT)
        proc.stdout.close()


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.parametrize("locking", [None, False])
def test_readers_see_a_consistent_prefix_while_a_writer_appends(
    tmp_path: Path, locking: bool | None
) -> None:
    folder = tmp_path / "run"
    total = 80
    lengths = []
    with cs.Zygote() as zygote:
        pid = zygote.start("stream", folder=str(folder), n_frames=total, frame_interval=0.02)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                with warnings.catch_warnings():
                    # A block between its metadata and its rename (see _stream): not there yet.
                    warnings.simplefilter("ignore", sd.IncompleteDatasetWarning)
                    ds = sd.SplitDataset(folder, locking=locking)
            except sd.NotASplitDatasetError:
                assert not lengths, "the dataset disappeared"
                continue  # before the first block
            n = ds.shape[0]
            data = ds.to_dask().compute() if len(lengths) % 2 else ds[...]
            assert np.array_equal(data, cs.frames(0, n)), f"prefix of {n} frames differs"
            lengths.append(n)
            if n == total:
                break
        assert zygote.reap(pid) == 0
    assert lengths[-1] == total
    assert lengths == sorted(lengths)
    assert len(set(lengths)) >= 3, "reads must have happened during the writing"


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    sd.to_split_dataset(np.arange(12 * 5, dtype=np.int32).reshape(12, 5), tmp_path / "d", 4)
    return tmp_path / "d"


@pytest.mark.subprocess
def test_a_locked_block_fails_with_locking_and_reads_without(dataset: Path, hold_open) -> None:
    hold_open(dataset / "0001.h5")
    locked = sd.SplitDataset(dataset, locking=True)
    with pytest.raises(sd.BlockError, match=r"0001\.h5") as info:
        locked[4]
    assert info.value.block == (1, 0)
    assert locked[0].tolist() == [0, 1, 2, 3, 4], "other blocks are not locked"
    assert [p.kind for p in sd.verify(dataset, locking=True)] == ["unreadable"]

    unlocked = sd.SplitDataset(dataset, locking=False)
    expected = np.arange(60).reshape(12, 5)
    np.testing.assert_array_equal(unlocked[...], expected)
    np.testing.assert_array_equal(unlocked.to_dask().compute(scheduler="processes"), expected)
    assert sd.verify(dataset, locking=False) == []


@pytest.mark.subprocess
def test_locking_reaches_the_first_block_and_legacy_metadata(
    tmp_path: Path, write_plain, hold_open
) -> None:
    """The dtype probe (block 0), and the in-file metadata of legacy datasets (last block)."""
    folder = tmp_path / "legacy"
    data = np.arange(8 * 3, dtype=np.uint16).reshape(8, 3)
    write_plain(folder, data, (4,), metadata={})
    import h5py

    for name in ("0000.h5", "0001.h5"):
        with h5py.File(folder / name, "a") as f:
            group = f.create_group("stack_metadata")
            for key, values in (("full_size", (8, 3)), ("block_size", (4, 3))):
                node = group.create_group(key)
                for i, v in enumerate(values):
                    node.attrs[f"i{i}"] = np.int64(v)
    hold_open(folder / "0000.h5")
    hold_open(folder / "0001.h5")
    with pytest.raises(sd.MetadataError, match=r"0001\.h5"):
        sd.SplitDataset(folder, locking=True)
    np.testing.assert_array_equal(sd.SplitDataset(folder, locking=False)[...], data)

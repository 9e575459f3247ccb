"""A real LocalCluster loses a worker process (SIGKILL) in the middle of a computation: reading
still returns the right answer, and to_split_dataset still yields a complete, correct dataset."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import dask.array as da
import numpy as np
import pytest

import splitds_dask as sd
from tests.helpers.timeouts import TIMEOUT

pytestmark = [pytest.mark.slow, pytest.mark.cluster, pytest.mark.subprocess, pytest.mark.network]

distributed = pytest.importorskip("distributed")


def _slow(block: np.ndarray) -> np.ndarray:
    time.sleep(0.15)  # long enough for the kill to land while tasks run
    return block


def _kill_a_busy_worker(client, future) -> int:
    """SIGKILL the process of a worker that is running tasks of ``future``; return its pid."""
    pids = client.run(os.getpid)
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        busy = [addr for addr, tasks in client.processing().items() if tasks]
        done = sum(1 for _ in client.who_has().values())
        if busy and done >= 4:
            os.kill(pids[busy[0]], signal.SIGKILL)
            return pids[busy[0]]
        assert not future.done(), "the computation ended before a worker could be killed"
        time.sleep(0.01)
    raise AssertionError("no worker got busy")


def _wait_for_two_workers(client) -> None:
    client.wait_for_workers(2, timeout=TIMEOUT)


def test_reading_survives_a_killed_worker(client, tmp_path: Path, random_array) -> None:
    a = random_array((40, 3, 16, 16), "u2", seed=7)
    sd.to_split_dataset(a, tmp_path / "d", 2)
    x = sd.SplitDataset(tmp_path / "d").to_dask().map_blocks(_slow, dtype=a.dtype)
    total = x.astype(np.int64).sum(axis=(1, 2, 3))
    future = client.compute(total)
    killed = _kill_a_busy_worker(client, future)
    np.testing.assert_array_equal(future.result(timeout=TIMEOUT), a.astype(np.int64).sum((1, 2, 3)))
    _wait_for_two_workers(client)
    assert killed not in client.run(os.getpid).values(), "the worker really died"


def test_writing_survives_a_killed_worker(client, tmp_path: Path, random_array) -> None:
    a = random_array((40, 3, 16, 16), "u2", seed=8)
    source = da.from_array(a, chunks=(2, 3, 16, 16)).map_blocks(_slow, dtype=a.dtype)
    future = client.compute(sd.to_split_dataset(source, tmp_path / "out", compute=False))
    killed = _kill_a_busy_worker(client, future)
    ds = future.result(timeout=TIMEOUT)
    assert ds.root == tmp_path / "out"
    np.testing.assert_array_equal(sd.SplitDataset(tmp_path / "out")[...], a)
    assert sd.verify(tmp_path / "out") == []
    names = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert names == sorted([*ds.block_names, "stack_metadata.json"]), "temporary files published"
    assert [p.name for p in tmp_path.iterdir()] == ["out"]
    _wait_for_two_workers(client)
    assert killed not in client.run(os.getpid).values()

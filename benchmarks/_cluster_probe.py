"""What the cluster workload runs on the workers: the minimal reader and the counters.

Kept apart from ``_workloads`` so that a worker unpickling a task imports only this module
(and h5py), not the whole suite with its peers.
"""

from __future__ import annotations

import time
from typing import NamedTuple

import h5py
import numpy as np

__all__ = [
    "KEY",
    "WorkerCounters",
    "counters",
    "read_numbered",
    "scheduler_sent",
    "scheduler_tasks",
    "warm",
]

KEY = "stack_4D"


def read_numbered(root: str, width: int, block_id: tuple[int, ...] | None = None) -> np.ndarray:
    """The minimal reader's task: open block file number ``block_id[0]``, read it, close it.

    It carries only what finds its own file (folder and name width), never a list of all the
    names, so that the task's size does not grow with the number of blocks.
    """
    assert block_id is not None
    with h5py.File(f"{root}/{block_id[0]:0{width}d}.h5", "r") as f:
        return f[KEY][()]


class WorkerCounters(NamedTuple):
    """Cumulative counters of one worker process."""

    cpu: float
    """CPU time of the whole process (every thread), seconds."""
    executed: int
    """Tasks the worker has run."""
    hwm_mb: float
    """Peak RSS (VmHWM) of the process, MB."""
    rss_mb: float
    """Current RSS (VmRSS), MB."""


def _status_mb(field: str) -> float:
    with open("/proc/self/status") as f:
        return int(f.read().split(f"{field}:")[1].split()[0]) / 1024


def counters(dask_worker) -> WorkerCounters:
    # VmHWM, not getrusage's ru_maxrss: the worker process is forked (then exec'd) by its
    # nanny, and Linux carries the forking process's high-water mark into the child's
    # ru_maxrss, whereas VmHWM belongs to the worker's own address space.
    return WorkerCounters(
        cpu=time.process_time(),
        executed=dask_worker.state.executed_count,
        hwm_mb=_status_mb("VmHWM"),
        rss_mb=_status_mb("VmRSS"),
    )


def warm(path: str) -> None:
    """Import what the readers' tasks import and open one block file, outside the timing."""
    import splitds_dask  # noqa: F401  (registers hdf5plugin; unpickles our tasks' reader)

    with h5py.File(path, "r") as f:
        f[KEY][()]


def scheduler_sent(dask_scheduler) -> int:
    """Bytes the scheduler has sent its workers so far, over their batched streams."""
    return sum(bs.byte_count for bs in dask_scheduler.stream_comms.values())


def scheduler_tasks(dask_scheduler) -> int:
    """Tasks the scheduler still holds."""
    return len(dask_scheduler.tasks)

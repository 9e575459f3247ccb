"""The thread pool that reads blocks, and chunks of large block reads, in parallel.

Block reads release the GIL while they read and decompress (see
:mod:`splitds_dask._storage.blosc`), so a selection spanning several blocks, or many chunks of
one block, is read by one thread per core. One pool per process, created on first use and
forgotten in a forked child, whose copy of it would have no threads. Work running on the pool
never waits for the pool (:func:`in_pool`), so nested reads cannot deadlock.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = ["in_pool", "map_in_pool"]

_pool: ThreadPoolExecutor | None = None
_io_pool: ThreadPoolExecutor | None = None
# Remote block reads mostly wait on the store: more threads than cores keep more blocks' requests
# in flight (s3fs's connection pool, 10 by default, bounds them anyway).
IO_THREADS = 16
_local = threading.local()


def _mark_pool_thread() -> None:
    _local.in_pool = True


def in_pool() -> bool:
    """Whether this thread is one of the pool's (and so must not wait on the pool)."""
    return getattr(_local, "in_pool", False)


def read_pool() -> ThreadPoolExecutor:
    """The process's block-reading pool: one thread per core, at most 8."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=min(8, os.cpu_count() or 1),
            thread_name_prefix="splitds-read",
            initializer=_mark_pool_thread,
        )
    return _pool


def io_pool() -> ThreadPoolExecutor:
    """The process's pool for reads that wait on a remote store: ``IO_THREADS`` threads."""
    global _io_pool
    if _io_pool is None:
        _io_pool = ThreadPoolExecutor(
            max_workers=IO_THREADS,
            thread_name_prefix="splitds-io",
            initializer=_mark_pool_thread,
        )
    return _io_pool


def map_in_pool(function: Callable[..., T], *arguments: Sequence[Any], io: bool = False) -> list[T]:
    """``[function(*args) for args in zip(*arguments)]`` on the pool (``io``: the I/O pool),
    returning (or raising the first error) only once every call has finished, so that none
    still runs on shared state."""
    pool = io_pool() if io else read_pool()
    futures = [pool.submit(function, *args) for args in zip(*arguments, strict=True)]
    wait(futures)
    return [future.result() for future in futures]


def _forget_pool() -> None:
    global _pool, _io_pool
    _pool = _io_pool = None


if hasattr(os, "register_at_fork"):  # absent on Windows, which does not fork
    os.register_at_fork(after_in_child=_forget_pool)

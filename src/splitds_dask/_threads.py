"""The thread pool that reads the blocks of one selection in parallel.

Block reads release the GIL while they decompress (see :mod:`splitds_dask._blosc`), so a
selection spanning several blocks is read by one thread per core. One pool per process, created
on first use and forgotten in a forked child, whose copy of it would have no threads.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor

__all__ = ["read_pool"]

_pool: ThreadPoolExecutor | None = None


def read_pool() -> ThreadPoolExecutor:
    """The process's block-reading pool: one thread per core, at most 8."""
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(
            max_workers=min(8, os.cpu_count() or 1), thread_name_prefix="splitds-read"
        )
    return _pool


def _forget_pool() -> None:
    global _pool
    _pool = None


os.register_at_fork(after_in_child=_forget_pool)

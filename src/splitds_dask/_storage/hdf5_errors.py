"""System errors reported by HDF5 turned back into the ``OSError`` they are.

When a write fails in the operating system (a full disk, a file size limit), HDF5 puts the
``errno`` in its error message and h5py raises what its error stack maps to: an ``OSError``
without ``errno``, or a ``RuntimeError`` when the failure shows while the file is closed
("Can't decrement id ref count (unable to extend file properly, errno = 28, ...)"). Callers
must be able to catch a full disk as ``OSError`` and read ``errno.ENOSPC``.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["system_errors"]

_ERRNO = re.compile(r"errno = (?P<errno>[0-9]+)")


@contextmanager
def system_errors(path: str | os.PathLike[str]) -> Iterator[None]:
    """Re-raise an HDF5 error that carries a system ``errno`` as ``OSError(errno, ..., path)``.

    The HDF5 error is chained (``__cause__``); any other error passes unchanged.
    """
    try:
        yield
    except (OSError, RuntimeError) as exc:
        if isinstance(exc, OSError) and exc.errno is not None:
            raise
        found = _ERRNO.search(str(exc))
        if found is None:
            raise
        number = int(found["errno"])
        raise OSError(number, os.strerror(number), os.fspath(path)) from exc

"""The writer lock: one writer at a time per split dataset folder, whichever writer it is.

Every writer (``to_split_dataset``, ``splitds convert``, ``SplitDatasetWriter``, the original
package's ``EmptySplitDataset`` and ``save_to_split_dataset``) holds this lock while it may
change the folder, so that a writer can never replace or delete a folder another writer is
still appending to, nor two writers interleave their blocks.

The lock is an exclusive ``flock`` on ``.<name>.splitds-lock`` *beside* the folder, in its
parent: a lock file inside the folder would be replaced together with the folder when a writer
swaps in a new dataset, and the next writer would lock a different file. The kernel releases a
``flock`` when its holder dies, so a killed writer never leaves the folder locked; the file it
leaves is reused. The holder deletes the file when it releases the lock; a writer that opened
the file just before that deletion, then got the lock on the deleted file, notices that the
name no longer names the file it locked and tries again, so two writers never both hold it.

``flock`` is advisory (programs that ignore it are not stopped) and network file systems may not
honour it. Where Python has no ``fcntl`` (Windows) the batch writers run unlocked, as before,
and :class:`SplitDatasetWriter` refuses to start.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from splitds_dask._errors import WriterLockedError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "HAVE_FLOCK",
    "WriterLock",
    "WriterLockedError",
    "check_unlocked",
    "lock_path",
    "writer_lock",
]

HAVE_FLOCK = fcntl is not None


def lock_path(folder: Path) -> Path:
    """The lock file of the dataset folder ``folder``: ``.<name>.splitds-lock`` beside it."""
    return folder.with_name(f".{folder.name}.splitds-lock")


def _real(folder: str | os.PathLike[str]) -> Path:
    """The folder's real path: writers reaching one folder through different links share a lock."""
    return Path(os.path.realpath(folder))


def _holder(fd: int) -> int | None:
    """The pid the holder of the lock on ``fd`` wrote, if it does so within a moment.

    The holder writes its pid just after locking: a refused writer that looks in between
    finds the file empty, so it looks again for up to 0.2 s (only when refused).
    """
    for _ in range(20):
        try:
            text = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
        except OSError:
            return None
        if text.isdigit():
            return int(text)
        time.sleep(0.01)
    return None


class WriterLock:
    """The held writer lock of one dataset folder; :meth:`release` (or garbage collection) frees it.

    Not inherited by pickled copies: a copy in another process holds nothing.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = _real(folder)
        self._file = lock_path(self.folder)
        self._fd = -1
        if fcntl is None:
            return
        self._file.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self._file, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                pid = _holder(fd)
                os.close(fd)
                raise WriterLockedError(self.folder, pid) from None
            except BaseException:
                os.close(fd)
                raise
            if self._names_locked_file(fd):
                break
            os.close(fd)  # the holder deleted the file before we locked it: take the new one
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        self._pid = os.getpid()

    def _names_locked_file(self, fd: int) -> bool:
        try:
            named = os.stat(self._file, follow_symlinks=False)
        except FileNotFoundError:
            return False
        locked = os.fstat(fd)
        return (named.st_dev, named.st_ino) == (locked.st_dev, locked.st_ino)

    @property
    def held(self) -> bool:
        """Whether this object holds the lock (False after :meth:`release`, or without flock)."""
        return self._fd >= 0

    def release(self) -> None:
        """Free the lock (idempotent). The file is deleted while still locked (see the module)."""
        if self._fd < 0:
            return
        fd, self._fd = self._fd, -1
        if getattr(self, "_pid", None) != os.getpid():
            return  # a forked child's copy of the descriptor: the parent's lock, not ours
        with contextlib.suppress(OSError):
            os.unlink(self._file)
        os.close(fd)

    def __enter__(self) -> WriterLock:  # noqa: PYI034 - Self needs Python 3.11
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):
            self.release()

    def __reduce__(self) -> tuple[type[_Unheld], tuple[str]]:
        return (_Unheld, (str(self.folder),))

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<WriterLock {str(self.folder)!r} {state}>"


class _Unheld(WriterLock):
    """What a :class:`WriterLock` becomes when unpickled: the folder, without the lock."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = _real(folder)
        self._file = lock_path(self.folder)
        self._fd = -1


@contextmanager
def writer_lock(folder: str | os.PathLike[str]) -> Iterator[WriterLock]:
    """Hold the writer lock of ``folder`` for the ``with`` block.

    Raises
    ------
    WriterLockedError
        Another writer holds it (raised at once, never waits).
    """
    lock = WriterLock(folder)
    try:
        yield lock
    finally:
        lock.release()


def check_unlocked(folder: str | os.PathLike[str]) -> None:
    """Raise :class:`WriterLockedError` now if another writer holds ``folder``'s lock.

    Writers call it before refusing a target for what it holds, so that a folder being written
    is reported as busy. Without a lock file nobody holds the lock, and nothing is created.
    """
    if lock_path(_real(folder)).exists():
        WriterLock(folder).release()

"""Atomic and durable writes: one file or one folder published whole, fsync, stale staging.

A rename is atomic for readers, but after a power loss it only survives if the folder holding
the new name was fsynced, and the renamed file only holds its data if the file was fsynced
before the rename. The writers call these helpers at those points.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import hashlib
import os
import re
import shutil
import socket
import sys
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

__all__ = [
    "atomic_file",
    "check_not_symlink",
    "check_replaceable",
    "exchange",
    "discard",
    "fsync_dir",
    "fsync_file",
    "remove_stale_staging",
    "remove_temporaries",
    "replace_folder",
    "retire",
    "staged_file",
    "staging_path",
    "sync_folder",
]

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
# Staging names carry their owner, so that ownership exists from the instant the folder does:
# .<target>.<uuid>.<host hash>-<pid>.<kind>; kinds: partial (being written), old (a replaced
# dataset, put back if the target is missing), trash (being deleted, never put back).
_STAGING = re.compile(
    r"^\.(?P<target>.+)\.[0-9a-f]{32}\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)\."
    r"(?P<kind>partial|old|trash)$"
)
# The temporary files of atomic_file: .<name>.<uuid>.partial
_TEMPORARY = re.compile(r"^\..+\.[0-9a-f]{32}\.partial$")


def remove_temporaries(folder: Path) -> None:
    """Delete the temporary files that writers killed mid-file left in ``folder``.

    Only call it when no live writer uses ``folder``: their temporaries look the same.
    """
    for entry in os.scandir(folder):
        if _TEMPORARY.match(entry.name) and entry.is_file(follow_symlinks=False):
            os.unlink(entry.path)


@contextmanager
def atomic_file(path: Path, *, durable: bool = False) -> Iterator[Path]:
    """Yield a hidden temporary name beside ``path`` to write; it becomes ``path`` on success.

    Readers see the previous file or the complete new one, never a partial one. On an error the
    temporary file is removed and ``path`` is untouched. With ``durable``, the file's data is
    flushed to stable storage before the rename, so that after a power loss ``path`` never names
    a file without its data; callers fsync the folder where the new name itself must survive.
    """
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.partial")
    try:
        yield tmp
        if durable:
            fsync_file(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _host() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def staging_path(path: Path, kind: str = "partial") -> Path:
    """A hidden sibling of ``path`` named after this process (see :func:`remove_stale_staging`)."""
    return path.with_name(f".{path.name}.{uuid.uuid4().hex}.{_host()}-{os.getpid()}.{kind}")


def fsync_file(path: str | os.PathLike[str]) -> None:
    """Flush a file's data to stable storage (any descriptor of the inode will do)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: str | os.PathLike[str]) -> None:
    """Flush a folder's entries (the names created or renamed in it) to stable storage."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - platforms whose folders cannot be opened
        return
    try:
        os.fsync(fd)
    except OSError:  # pragma: no cover - some file systems refuse fsync on folders
        pass
    finally:
        os.close(fd)


def _libc_function(name: str) -> Any:
    """libc's function ``name``, or None where this system's C library lacks it (or on Windows,
    whose C runtime has neither renameat2 nor syncfs)."""
    if sys.platform == "win32":
        return None
    libc = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)
    return getattr(libc, name, None)


# renameat2 (Linux, glibc >= 2.28; its RENAME_EXCHANGE flag is Linux's) and syncfs.
_RENAMEAT2 = _libc_function("renameat2") if sys.platform.startswith("linux") else None
if _RENAMEAT2 is not None:
    _RENAMEAT2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
    _RENAMEAT2.argtypes += [ctypes.c_uint]
    _RENAMEAT2.restype = ctypes.c_int
_SYNCFS = _libc_function("syncfs")


def sync_folder(folder: Path) -> None:
    """Flush every file of ``folder`` (not recursive) and the folder itself to stable storage.

    One ``syncfs`` of the file system where available (one call instead of one fsync per block
    file, which costs more than writing a small block), else an fsync per file.
    """
    try:
        fd = os.open(folder, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    except OSError:  # pragma: no cover - Windows opens no folder: flush the files alone
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False):
                fsync_file(entry.path)
        return
    try:
        if _SYNCFS is not None and _SYNCFS(fd) == 0:
            return
        for entry in os.scandir(folder):
            if entry.is_file(follow_symlinks=False):
                fsync_file(entry.path)
        os.fsync(fd)
    finally:
        os.close(fd)


def exchange(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the system or file system cannot do it (NFS,
    macOS); the caller then falls back to two renames.
    """
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def _owner_is_dead(host: str, pid: int) -> bool:
    if host != _host():
        return False  # cannot tell whether a process on another machine is alive
    if sys.platform == "win32":
        return False  # os.kill(pid, 0) would terminate the process there, not probe it
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def remove_stale_staging(path: Path) -> list[Path]:
    """Clean up after writers of ``path`` that died (on this machine); return what was removed.

    Only hidden siblings named by :func:`staging_path` whose process no longer runs are touched,
    folders and single files alike: a half-written output or one being deleted is removed, a replaced dataset is put back at
    ``path`` if ``path`` is missing (a crash between the two renames of the fallback swap), and
    removed otherwise.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(path.parent))
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match is None or match["target"] != path.name:
            continue
        if not _owner_is_dead(match["host"], int(match["pid"])):
            continue
        candidate = Path(entry.path)
        if match["kind"] == "old" and not path.exists():
            os.rename(candidate, path)
            continue
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(candidate, ignore_errors=True)
        else:  # a single-file output (see staged_file)
            candidate.unlink(missing_ok=True)
        removed.append(candidate)
    return removed


def discard(staging: Path, target: Path) -> None:
    """Delete the unfinished ``staging`` folder of ``target``, which tasks may still write into.

    After a failed task dask returns while other tasks run on. Renamed aside first: they address
    their files by the old name, so none can add a file to the folder while it is deleted.
    """
    trash = staging_path(target, "trash")
    try:
        os.rename(staging, trash)
    except FileNotFoundError:
        return
    shutil.rmtree(trash, ignore_errors=True)


def retire(path: Path) -> None:
    """Delete the folder ``path``: renamed aside first, so no half-deleted folder is at ``path``."""
    trash = staging_path(path, "trash")
    os.rename(path, trash)
    fsync_dir(path.parent)
    shutil.rmtree(trash)


def check_not_symlink(path: Path) -> None:
    """Refuse to replace a symbolic link: the swap would replace the link, not what it names.

    Raises
    ------
    FileExistsError
        ``"<path> is a symbolic link to <target>; pass the target's path to replace it"``.
    """
    if path.is_symlink():
        raise FileExistsError(
            f"{path} is a symbolic link to {os.readlink(path)}; pass the target's path "
            "to replace it"
        )


def replace_folder(staging: Path, path: Path, *, durable: bool = True) -> None:
    """Put the complete folder ``staging`` at ``path``, replacing the folder there, if any.

    With ``durable``, the files of ``staging`` are flushed to stable storage first, so that
    after a power loss ``path`` is the old folder or the complete new one.

    With an atomic exchange readers see the old folder or the new one, nothing between. Without
    it (NFS, macOS) ``path`` is missing between two renames; a crash there leaves the old folder
    under a hidden name that :func:`remove_stale_staging` puts back.

    A symbolic link at ``path`` is refused before anything changes (:func:`check_not_symlink`).
    """
    check_not_symlink(path)
    if durable:
        sync_folder(staging)
    if not path.exists():
        os.rename(staging, path)
    elif exchange(staging, path):
        # ``staging`` now names the old folder, still marked as ours: removed if we die here.
        fsync_dir(path.parent)
        shutil.rmtree(staging)
    else:
        old = staging_path(path, "old")
        os.rename(path, old)
        os.rename(staging, path)
        trash = staging_path(path, "trash")
        os.rename(old, trash)
        fsync_dir(path.parent)
        shutil.rmtree(trash)
    fsync_dir(path.parent)


@contextmanager
def staged_file(path: Path, *, durable: bool = True) -> Iterator[Path]:
    """Yield a staging name beside ``path`` to write one file; it becomes ``path`` on success.

    Like :func:`atomic_file`, but the staging name carries this process (:func:`staging_path`),
    so that what a killed writer leaves is removed by :func:`remove_stale_staging`. With
    ``durable`` the file is flushed before the rename and the folder after it, so that after a
    power loss ``path`` is the old file or the complete new one.
    """
    staging = staging_path(path)
    try:
        yield staging
        if durable:
            fsync_file(staging)
        os.replace(staging, path)
        if durable:
            fsync_dir(path.parent)
    finally:
        staging.unlink(missing_ok=True)


def check_replaceable(
    path: Path,
    *,
    overwrite: bool,
    replaceable: Callable[[Path], bool],
    what: str = "a split dataset",
    hint: str = "pass overwrite=True",
    folder: bool = True,
    refusal: Callable[[Path], str] | None = None,
) -> None:
    """Refuse to put a new output at ``path`` unless what is there may be replaced.

    Nothing at ``path``, or an empty folder where a folder is to be written: allowed.
    Something ``replaceable`` rejects (a user's own file or folder): never replaced, whatever
    ``overwrite`` says. An earlier output that ``replaceable`` accepts: replaced only with
    ``overwrite``.

    Parameters
    ----------
    path : Path
        The output.
    overwrite : bool
        Whether an earlier output may be replaced.
    replaceable : callable
        True for what may be replaced at ``path`` (e.g. ``is_split_dataset``).
    what : str, optional
        What ``replaceable`` accepts, for the messages (``"a split dataset"``).
    hint : str, optional
        How to ask for a replacement (``"pass --overwrite"`` on the command line).
    folder : bool, optional
        The output is a folder, so an empty folder at ``path`` is taken as the target.
    refusal : callable, optional
        Why ``path`` is refused, where the caller can say more than "exists and is not
        {what}".

    Raises
    ------
    FileExistsError
        ``path`` holds something else (``"<path> exists and is not <what>; not replacing
        it"``) or an earlier output while ``overwrite`` is false (``"<path> exists and is
        already <what>; <hint> to replace it"``), or is a symbolic link (what it names is
        never replaced through it: pass its target).
    """
    check_not_symlink(path)
    if not path.exists():
        return
    if replaceable(path):
        if not overwrite:
            raise FileExistsError(f"{path} exists and is already {what}; {hint} to replace it")
        return
    if folder and path.is_dir() and not any(path.iterdir()):
        return
    reason = f"exists and is not {what}" if refusal is None else refusal(path)
    raise FileExistsError(f"{path} {reason}; not replacing it")

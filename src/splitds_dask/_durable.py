"""Durable file-system steps: fsync of files and folders, atomic folder swap, stale staging.

A rename is atomic for readers, but after a power loss it only survives if the folder holding
the new name was fsynced, and the renamed file only holds its data if the file was fsynced
before the rename. The writers call these helpers at those points.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import shutil
import socket
import uuid
from pathlib import Path

__all__ = [
    "OWNER_NAME",
    "claim_staging",
    "exchange",
    "fsync_dir",
    "fsync_file",
    "remove_stale_staging",
    "replace_folder",
    "retire",
]

# Written into every staging folder: "<host> <pid>" of the process that owns it.
OWNER_NAME = ".splitds-owner"

_RENAME_EXCHANGE = 2
_AT_FDCWD = -100


def fsync_file(path: Path | str) -> None:
    """Flush a file's data to stable storage (any descriptor of the inode will do)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_dir(path: Path | str) -> None:
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


def _renameat2() -> object | None:
    name = ctypes.util.find_library("c")
    if name is None:  # pragma: no cover - no C library found
        return None
    libc = ctypes.CDLL(name, use_errno=True)
    func = getattr(libc, "renameat2", None)
    if func is not None:
        func.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p]
        func.argtypes += [ctypes.c_uint]
        func.restype = ctypes.c_int
    return func


_RENAMEAT2 = _renameat2() if os.uname().sysname == "Linux" else None


def exchange(a: Path | str, b: Path | str) -> bool:
    """Atomically swap two existing paths (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the system or file system cannot do it (NFS,
    macOS); the caller then falls back to two renames.
    """
    if _RENAMEAT2 is None:
        return False
    result = _RENAMEAT2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE)
    return result == 0


def claim_staging(folder: Path) -> None:
    """Mark a new staging folder as owned by this process (see :func:`remove_stale_staging`)."""
    (folder / OWNER_NAME).write_text(f"{socket.gethostname()} {os.getpid()}")


def _owner_is_dead(folder: Path) -> bool:
    try:
        host, pid = (folder / OWNER_NAME).read_text().split()
        pid_number = int(pid)
    except (OSError, ValueError):
        return False  # no owner file (not ours, or not yet written): leave it alone
    if host != socket.gethostname():
        return False  # cannot tell whether a process on another machine is alive
    try:
        os.kill(pid_number, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, someone else's
    return False


def remove_stale_staging(path: Path) -> list[Path]:
    """Delete the staging folders of ``path`` whose writer process died; return them.

    Only hidden folders named like our staging (``.<name>.<hex>.partial`` and retired
    ``.<name>.<hex>.old``) that carry an owner file naming a process of this machine that no
    longer runs are removed. A retired old dataset is put back at ``path`` instead when ``path``
    is missing (a crash between the two renames of the fallback swap).
    """
    removed: list[Path] = []
    parent = path.parent
    prefix = f".{path.name}."
    try:
        entries = [e for e in os.scandir(parent) if e.name.startswith(prefix) and e.is_dir()]
    except OSError:
        return removed
    for entry in entries:
        candidate = Path(entry.path)
        if not entry.name.endswith((".partial", ".old")) or not _owner_is_dead(candidate):
            continue
        if entry.name.endswith(".old") and not path.exists():
            (candidate / OWNER_NAME).unlink(missing_ok=True)
            os.rename(candidate, path)
            continue
        shutil.rmtree(candidate, ignore_errors=True)
        removed.append(candidate)
    return removed


def retire(path: Path) -> None:
    """Delete the folder ``path``: first renamed aside (a crash leaves it whole), then removed."""
    retired = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
    claim_staging(path)
    os.rename(path, retired)
    fsync_dir(path.parent)
    shutil.rmtree(retired)


def replace_folder(staging: Path, path: Path) -> None:
    """Put the complete folder ``staging`` at ``path``, replacing the folder there, if any.

    With an atomic exchange readers see the old folder or the new one, nothing between. Without
    it (NFS, macOS) ``path`` is missing between two renames; a crash there leaves the old folder
    under a hidden name that :func:`remove_stale_staging` puts back.
    """
    fsync_dir(staging)
    if not path.exists():
        os.rename(staging, path)
    else:
        claim_staging(path)  # the old folder is owned by us from here on, for clean-up
        if exchange(staging, path):
            old = staging
        else:
            old = path.with_name(f".{path.name}.{uuid.uuid4().hex}.old")
            os.rename(path, old)
            os.rename(staging, path)
        fsync_dir(path.parent)
        shutil.rmtree(old)
    (path / OWNER_NAME).unlink(missing_ok=True)
    fsync_dir(path.parent)

"""What a read may touch: the dataset folder's own regular files, and nothing outside it.

A block file is refused, with a :class:`BlockError` naming it and where it points, when

- it is not a regular file (a FIFO, device or socket would block or misbehave when opened),
  checked with ``stat`` before anything opens it;
- it is a symbolic link resolving outside the dataset folder;
- its array is an HDF5 external link, a virtual dataset (VDS), or a dataset whose raw data is
  stored in external files: all read data from other files than the block file.

``allow_external=True`` lifts the last two rules (never the first): links and external files are
then followed, but a FIFO behind them is still refused before it is opened, and a virtual
dataset whose source file is missing is an error instead of silently reading its fill value.

The folder itself is identified by ``(st_dev, st_ino)`` when a dataset is opened;
:func:`check_folder` tells a reader when the folder was replaced (``to_split_dataset(...,
overwrite=True)`` swaps folders by rename), so that a computation sees one version of the
dataset or fails.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

import h5py

from splitds_dask._errors import (
    BlockError,
    MetadataError,
    OutsideFolderError,
    SplitDatasetError,
)

__all__ = [
    "NotARegularFile",
    "OutsideFolderError",
    "check_block_file",
    "check_dataset",
    "check_folder",
    "check_metadata_file",
    "folder_identity",
    "is_external_link",
    "require_regular",
    "resolve_in_file",
]

_OPT_IN = "pass allow_external=True to read data outside the dataset folder"

# Soft links followed while resolving one name (HDF5's own limit is 16 nested links).
_MAX_SOFT_LINKS = 16


class NotARegularFile(OSError):
    """A path names a FIFO, device, socket or folder: opening it could block forever."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    if stat.S_ISDIR(mode):
        return "a folder"
    return "not a regular file"


def require_regular(path: str | os.PathLike[str]) -> os.stat_result:
    """``stat(path)``, raising :class:`NotARegularFile` unless it is a regular file.

    A missing file raises :class:`FileNotFoundError`, as opening it would.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        kind = _kind(st.st_mode)
        raise NotARegularFile(f"{path} is {kind}, not a regular file")
    return st


def _inside(target: str, folder: str) -> bool:
    return target.startswith(folder.rstrip(os.sep) + os.sep)


def check_block_file(
    path: str | os.PathLike[str],
    *,
    block: tuple[int, ...],
    allow_external: bool = False,
    missing_ok: bool = False,
) -> os.stat_result | None:
    """Refuse a block file that is not a regular file, or a link leading outside its folder.

    One ``lstat`` for the usual plain file; links cost a ``realpath`` each. Returns the stat
    of the file itself (links followed). A missing file raises :class:`FileNotFoundError`, or
    returns None with ``missing_ok`` (for callers whose open names the problem).
    """
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        if missing_ok:
            return None
        raise
    if stat.S_ISLNK(st.st_mode):
        if not allow_external:
            target = os.path.realpath(path)
            folder = os.path.realpath(os.path.dirname(os.path.abspath(path)))
            if not _inside(target, folder):
                raise OutsideFolderError(
                    f"block {block} ({path}): the file is a link to {target}, outside the "
                    f"dataset folder; {_OPT_IN}",
                    path=path,
                    block=block,
                )
        try:
            st = os.stat(path)
        except FileNotFoundError:  # a dangling link
            if missing_ok:
                return None
            raise
    if not stat.S_ISREG(st.st_mode):
        raise BlockError(
            f"block {block} ({path}): the file is {_kind(st.st_mode)}, not a regular file",
            path=path,
            block=block,
        )
    return st


def check_metadata_file(path: str | os.PathLike[str], root: str | os.PathLike[str]) -> None:
    """Refuse a metadata file that is a link leading outside the dataset folder ``root``."""
    if not os.path.islink(path):
        return
    target = os.path.realpath(path)
    if not _inside(target, os.path.realpath(root)):
        raise MetadataError(
            f"{path}: the metadata file is a link to {target}, outside the dataset folder; "
            f"{_OPT_IN}"
        )


# --- links and storage inside one HDF5 file ------------------------------------------------------


class Located(NamedTuple):
    """Where a name of an HDF5 file leads, found without leaving the file."""

    path: str | None
    """The object's path made of hard links only; None when it is missing or leaves the file."""
    external: h5py.ExternalLink | None
    """The external link met on the way, if any."""


def resolve_in_file(f: h5py.File, name: str) -> Located:
    """Follow ``name`` link by link, never opening another file.

    Soft links are followed inside the file; an external link anywhere on the way stops the walk
    (reading through it would open the file it names, which may be anything anywhere).
    """
    return _walk(f, [], name, _MAX_SOFT_LINKS)


def _walk(f: h5py.File, base: list[str], name: str, budget: int) -> Located:
    parts = [] if name.startswith("/") else list(base)
    for part in name.split("/"):
        if part in ("", "."):
            continue
        here = "/" + "/".join([*parts, part])
        # Every component before this one is a hard link: getlink opens nothing else.
        link = f.get(here, getlink=True)
        if link is None:
            return Located(None, None)
        if isinstance(link, h5py.ExternalLink):
            return Located(None, link)
        if isinstance(link, h5py.SoftLink):
            if budget == 0:
                return Located(None, None)
            found = _walk(f, parts, link.path, budget - 1)
            if found.path is None:
                return found
            parts = [p for p in found.path.split("/") if p]
            continue
        if not isinstance(link, h5py.HardLink):  # user-defined links: nothing to follow
            return Located(None, None)
        parts.append(part)
    return Located("/" + "/".join(parts), None)


def is_external_link(f: h5py.File, name: str) -> bool:
    """Whether ``name`` leads out of the file through an external link."""
    return resolve_in_file(f, name).external is not None


class Checked(NamedTuple):
    """A block's array, checked: the dataset object, and whether its data lies in this file."""

    dataset: h5py.Dataset
    in_file: bool
    """False for an external link, a virtual dataset or external raw storage (allowed by the
    caller): read through h5py only, never by byte offsets in the block file."""


def check_dataset(
    f: h5py.File,
    name: str,
    *,
    path: str | os.PathLike[str],
    block: tuple[int, ...],
    allow_external: bool,
) -> Checked | None:
    """The dataset ``name`` of the block file ``f``, refused if its data lies elsewhere.

    Returns None when ``name`` is not a dataset. Raises :class:`BlockError` naming the file and
    where the data lies, unless ``allow_external``; even then, a FIFO or device behind a link
    or external file, and a missing source of a virtual dataset, are errors.
    """
    where = f"block {block} ({path}): '{name}'"
    located = resolve_in_file(f, name)
    in_file = True
    if located.external is not None:
        link = located.external
        target = _existing(link.filename, os.path.dirname(os.path.abspath(path)))
        if not allow_external:
            raise OutsideFolderError(
                f"{where} is an external link to {target or link.filename}:{link.path}; {_OPT_IN}",
                path=path,
                block=block,
            )
        if target is not None:
            _refuse_irregular(target, where, "links to", path, block)
        in_file = False
        node = f.get(name)
    else:
        node = f.get(located.path) if located.path is not None else None
    if not isinstance(node, h5py.Dataset):
        return None
    if in_file and node.file.id.fileno != f.id.fileno:  # defence: the walk above forbids it
        in_file = False
    plist = node.id.get_create_plist()
    if plist.get_layout() == h5py.h5d.VIRTUAL:
        _check_virtual(plist, where, path, block, allow_external)
        in_file = False
    if plist.get_external_count() > 0:
        _check_external_storage(node, plist, where, path, block, allow_external)
        in_file = False
    return Checked(node, in_file)


def _existing(name: str, folder: str) -> str | None:
    """The file another HDF5 file names: absolute, else beside that file, else from the cwd."""
    candidates = [name] if os.path.isabs(name) else [os.path.join(folder, name), name]
    for candidate in candidates:
        if os.path.lexists(candidate):
            return os.path.abspath(candidate)
    return None


def _refuse_irregular(
    target: str, where: str, verb: str, path: str | os.PathLike[str], block: tuple[int, ...]
) -> None:
    try:
        require_regular(target)
    except NotARegularFile as exc:
        raise BlockError(f"{where} {verb} {exc}", path=path, block=block) from None
    except OSError:
        pass  # missing: HDF5 reports it when reading


def _check_virtual(
    plist: h5py.h5p.PropDCID,
    where: str,
    path: str | os.PathLike[str],
    block: tuple[int, ...],
    allow_external: bool,
) -> None:
    sources = [plist.get_virtual_filename(i) for i in range(plist.get_virtual_count())]
    outside = [s for s in sources if s != "."]
    if not allow_external:
        names = ", ".join(sorted(set(outside))) or "this file"
        raise OutsideFolderError(
            f"{where} is a virtual dataset reading {names}; {_OPT_IN}", path=path, block=block
        )
    folder = os.path.dirname(os.path.abspath(path))
    for source in outside:
        target = _existing(source, folder)
        if target is None:
            if "%" in source:  # a printf-like pattern of many files: HDF5 expands it
                continue
            # HDF5 would read the fill value where the source is missing, silently.
            raise BlockError(
                f"{where} is a virtual dataset whose source file {source} is missing",
                path=path,
                block=block,
            )
        _refuse_irregular(target, where, "is a virtual dataset reading", path, block)


def _check_external_storage(
    node: h5py.Dataset,
    plist: h5py.h5p.PropDCID,
    where: str,
    path: str | os.PathLike[str],
    block: tuple[int, ...],
    allow_external: bool,
) -> None:
    files = [plist.get_external(i)[0] for i in range(plist.get_external_count())]
    names = [n.decode(errors="replace") if isinstance(n, bytes) else str(n) for n in files]
    if not allow_external:
        raise OutsideFolderError(
            f"{where} stores its data in external files: {', '.join(names)}; {_OPT_IN}",
            path=path,
            block=block,
        )
    folder = _efile_folder(node, path)
    for name in names:
        target = name if os.path.isabs(name) else os.path.join(folder, name)
        _refuse_irregular(target, where, "stores its data in", path, block)


def _efile_folder(node: h5py.Dataset, path: str | os.PathLike[str]) -> str:
    """Where HDF5 looks for relative external files: the prefix set, else the cwd."""
    prefix = os.environ.get("HDF5_EXTFILE_PREFIX") or node.id.get_access_plist().get_efile_prefix()
    prefix = prefix.decode() if isinstance(prefix, bytes) else prefix
    origin = os.path.dirname(os.path.abspath(path))
    return prefix.replace("${ORIGIN}", origin) if prefix else os.getcwd()


# --- the folder -------------------------------------------------------------------------------


def folder_identity(root: str | os.PathLike[str]) -> tuple[int, int]:
    """``(st_dev, st_ino)`` of the folder ``root`` names now (links followed)."""
    st = os.stat(root)
    return (st.st_dev, st.st_ino)


def check_folder(root: str, identity: tuple[int, int]) -> None:
    """Fail unless ``root`` still names the folder whose identity was recorded at opening.

    Only the inode number is compared: the device number of a network mount differs from one
    machine to the next, and a reader travels to cluster workers. A writer replacing a folder
    creates the new one before removing the old, so the two never share an inode number.
    """
    try:
        now = folder_identity(root)
    except OSError:
        now = None
    if now is None or now[1] != identity[1]:
        raise SplitDatasetError(
            f"the dataset at {root} was replaced since it was opened; open it again"
            if now is not None
            else f"the dataset at {root} was removed since it was opened"
        )

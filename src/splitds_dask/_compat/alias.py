"""Enabling, disabling and describing the ``split_dataset`` alias of an environment.

The alias is one ``.pth`` file in the environment's site-packages (:data:`PTH_NAME`): Python
runs its line at every interpreter start, so that joblib, multiprocessing and dask workers
started from the environment answer ``import split_dataset`` with splitds-dask as the main
process does (see :mod:`_splitds_dask_alias`). Enabling is refused while a real split-dataset
can be imported; disabling removes the file. Nothing else of the environment is touched.
"""

from __future__ import annotations

import importlib.metadata
import sys
import sysconfig
from pathlib import Path
from typing import NamedTuple

import _splitds_dask_alias as hook
from splitds_dask._errors import SplitDatasetError
from splitds_dask._storage.atomic import atomic_file

__all__ = [
    "PTH_LINE",
    "PTH_NAME",
    "AliasError",
    "AliasStatus",
    "Original",
    "alias_status",
    "disable_alias",
    "enable_alias",
]

#: The file written. Site-packages' ``.pth`` files run in the order of their names: this one
#: comes after an editable install's, which puts the hook's folder on ``sys.path``.
PTH_NAME = "splitds_dask_alias.pth"

#: Its one line. Lines starting with ``import`` are run; this one does nothing (rather than
#: print an error at every start) once splitds-dask is uninstalled and the file left behind.
#: A ``.pth`` line is one statement: the ``try`` it needs is compiled from a string.
PTH_LINE = (
    "import sys; exec("
    + repr(
        f"try:\n    import {hook.__name__}\nexcept ImportError:\n    pass\n"
        f"else:\n    {hook.__name__}.install()\n"
    )
    + ")\n"
)


class AliasError(SplitDatasetError):
    """The alias cannot be enabled or disabled (a real split-dataset, an unwritable folder)."""


class Original(NamedTuple):
    """A real split-dataset that this environment can import."""

    #: Where ``import split_dataset`` finds it (its ``__init__.py``, or a folder).
    location: str
    #: The installed distribution's version, or None for code on ``sys.path`` not installed.
    version: str | None


class AliasStatus(NamedTuple):
    """What ``import split_dataset`` gives in a new interpreter of the environment."""

    #: The ``.pth`` file (present when enabled).
    pth_file: Path
    #: Whether the ``.pth`` file is there.
    enabled: bool
    #: A real split-dataset that can be imported, if any: it wins over the alias.
    original: Original | None

    @property
    def active(self) -> bool:
        """Whether ``import split_dataset`` gives splitds-dask."""
        return self.enabled and self.original is None

    def describe(self) -> str:
        """One line saying what ``import split_dataset`` gives, and where the alias lives."""
        if self.original is not None:
            version = f" {self.original.version}" if self.original.version else ""
            found = f"the real split-dataset{version} ({self.original.location})"
            if self.enabled:
                return (
                    f"import split_dataset gives {found}: it wins over the alias ({self.pth_file})"
                )
            return f"import split_dataset gives {found}; the alias is disabled"
        if self.enabled:
            return f"import split_dataset gives splitds-dask in every process ({self.pth_file})"
        return "the alias is disabled: import split_dataset fails (no split-dataset is installed)"


def _site_dir(site_dir: str | Path | None) -> Path:
    return Path(site_dir) if site_dir is not None else Path(sysconfig.get_path("purelib"))


def _original() -> Original | None:
    spec = hook.find_original()
    if spec is None:
        return None
    try:
        version: str | None = importlib.metadata.version("split-dataset")
    except importlib.metadata.PackageNotFoundError:
        version = None
    locations = spec.submodule_search_locations
    where = spec.origin if spec.has_location and spec.origin else None
    return Original(
        location=where or (next(iter(locations)) if locations else "?"), version=version
    )


def alias_status(*, site_dir: str | Path | None = None) -> AliasStatus:
    """Whether the alias is enabled, and what ``import split_dataset`` gives.

    Parameters
    ----------
    site_dir : str or Path, optional
        The site-packages folder of the environment (default: this interpreter's).

    Returns
    -------
    AliasStatus
    """
    pth = _site_dir(site_dir) / PTH_NAME
    return AliasStatus(pth_file=pth, enabled=pth.is_file(), original=_original())


def enable_alias(*, site_dir: str | Path | None = None) -> AliasStatus:
    """Make every interpreter of the environment answer ``import split_dataset``.

    Parameters
    ----------
    site_dir : str or Path, optional
        The site-packages folder of the environment (default: this interpreter's).

    Returns
    -------
    AliasStatus
        The new status (enabling twice is enabling once).

    Raises
    ------
    AliasError
        A real split-dataset can be imported (the alias never shadows it), or the folder
        cannot be written.
    """
    status = alias_status(site_dir=site_dir)
    if status.original is not None:
        version = f" {status.original.version}" if status.original.version else ""
        raise AliasError(
            f"split-dataset{version} is importable ({status.original.location}): the alias "
            f"never shadows it; 'pip uninstall split-dataset' first to use splitds-dask"
        )
    pth = status.pth_file
    if not pth.parent.is_dir():
        raise AliasError(f"{pth.parent}: no such site-packages folder")
    try:
        with atomic_file(pth) as tmp:
            tmp.write_text(PTH_LINE, encoding="utf-8")
    except OSError as exc:
        raise AliasError(f"{pth}: cannot write the alias: {exc.strerror or exc}") from exc
    # This interpreter too, so that a notebook that enabled it can import at once.
    hook.install()
    return status._replace(enabled=True)


def disable_alias(*, site_dir: str | Path | None = None) -> AliasStatus:
    """Remove the alias from the environment (new interpreters no longer answer).

    Parameters
    ----------
    site_dir : str or Path, optional
        The site-packages folder of the environment (default: this interpreter's).

    Returns
    -------
    AliasStatus
        The new status (disabling when disabled changes nothing).

    Raises
    ------
    AliasError
        The file cannot be removed.
    """
    status = alias_status(site_dir=site_dir)
    try:
        status.pth_file.unlink(missing_ok=True)
    except OSError as exc:
        raise AliasError(
            f"{status.pth_file}: cannot remove the alias: {exc.strerror or exc}"
        ) from exc
    # Modules already imported in this interpreter stay as they are; new imports fail.
    sys.meta_path[:] = [f for f in sys.meta_path if type(f).__module__ != hook.__name__]
    return status._replace(enabled=False)

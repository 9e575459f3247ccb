"""Answers ``import split_dataset`` with splitds-dask, in every interpreter of an environment.

``splitds alias enable`` writes a ``.pth`` file into the environment's site-packages that
imports this module and calls :func:`install` when any interpreter of the environment starts:
the main program, joblib/loky and multiprocessing workers, dask workers. :func:`install` puts
an import finder in front of :data:`sys.meta_path`. When code then imports ``split_dataset``,
``split_dataset.blocks`` or ``split_dataset.split_dataset`` (the original package's modules),
the finder answers with modules holding splitds-dask's objects of the same names.

It never shadows a real split-dataset: when another finder can import ``split_dataset``
(an installed split-dataset, or one on ``PYTHONPATH``), that one is imported and the finder
warns once, naming where it is and how to choose.

This module is top-level, and imports only what the interpreter has loaded before it, because
it is imported at every interpreter start: :mod:`splitds_dask` (numpy, dask, h5py) is imported
only when ``split_dataset`` is, and so are :mod:`importlib` and :mod:`warnings`. Its finder and
loader are plain classes, as the import system allows: ``importlib.abc`` alone would cost an
interpreter start several milliseconds (it imports ``importlib.resources``, ``pathlib``...).
"""

from __future__ import annotations

import sys
from importlib.machinery import ModuleSpec

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from importlib.abc import Loader as _Loader
    from types import ModuleType
else:
    _Loader = object  # the protocol only, for the type checker

__all__ = [
    "ALIAS",
    "ALIAS_MODULES",
    "ALIAS_VERSION",
    "SplitDatasetAliasWarning",
    "find_original",
    "install",
    "is_alias",
]

#: The name answered.
ALIAS = "split_dataset"

#: Each module of the original package (0.4.4) that code imports, and the names it takes from
#: it; every name is the splitds-dask object of the same name.
ALIAS_MODULES: dict[str, tuple[str, ...]] = {
    ALIAS: ("Blocks", "EmptySplitDataset", "SplitDataset", "save_to_split_dataset"),
    f"{ALIAS}.blocks": ("Blocks",),
    f"{ALIAS}.split_dataset": (
        "Blocks",
        "EmptySplitDataset",
        "SplitDataset",
        "save_to_split_dataset",
    ),
}

#: ``split_dataset.__version__`` under the alias: the original API it answers for (so that
#: version checks of code written for 0.4.4 pass), with a local label saying who answers.
ALIAS_VERSION = "0.4.4+splitds.dask"

# Set on every module the finder makes, so that anyone can tell them from the original's.
_MARK = "__splitds_dask_alias__"


class SplitDatasetAliasWarning(UserWarning):
    """A real split-dataset is imported although the splitds-dask alias is enabled."""


def is_alias(module: ModuleType) -> bool:
    """Whether ``module`` was made by the alias (not the original package)."""
    return bool(getattr(module, _MARK, False))


def find_original(fullname: str = ALIAS, path: Sequence[str] | None = None) -> ModuleSpec | None:
    """The spec another import finder gives ``fullname`` (a real split-dataset), or None.

    A folder named ``split_dataset`` without ``__init__.py`` on ``sys.path`` (a data folder in
    the working directory, say) would import as an empty namespace package: it is not a
    split-dataset and does not count.
    """
    for finder in list(sys.meta_path):
        if isinstance(finder, _AliasFinder):
            continue
        find_spec = getattr(finder, "find_spec", None)
        if find_spec is None:
            continue
        spec = find_spec(fullname, path)
        if spec is not None and spec.origin not in (None, "namespace"):
            return spec
    return None


class _AliasLoader(_Loader):
    """Fills a module of :data:`ALIAS_MODULES` with splitds-dask's objects."""

    def create_module(self, spec: ModuleSpec) -> ModuleType | None:
        return None  # the default module

    def exec_module(self, module: ModuleType) -> None:
        import importlib

        import splitds_dask

        for name in ALIAS_MODULES[module.__name__]:
            setattr(module, name, getattr(splitds_dask, name))
        setattr(module, _MARK, True)
        module.__doc__ = (
            f"The original package's module {module.__name__}, answered by splitds-dask "
            f"{splitds_dask.__version__} (splitds alias enable)."
        )
        if module.__name__ == ALIAS:
            module.__version__ = ALIAS_VERSION  # type: ignore[attr-defined]
            # As the original's __init__ does, which leaves its submodules as attributes.
            for submodule in ALIAS_MODULES:
                if submodule != ALIAS:
                    importlib.import_module(submodule)


class _AliasFinder:
    """Finds the modules of :data:`ALIAS_MODULES` when no other finder does."""

    def find_spec(
        self,
        fullname: str,
        path: Sequence[str] | None = None,
        target: ModuleType | None = None,
    ) -> ModuleSpec | None:
        if fullname not in ALIAS_MODULES:
            return None
        if fullname != ALIAS:
            parent = sys.modules.get(ALIAS)
            if parent is None or not is_alias(parent):
                return None  # a submodule of the real package: its own finders answer
        else:
            original = find_original(fullname, path)
            if original is not None:
                import warnings

                warnings.warn(
                    f"import split_dataset: the installed split-dataset at "
                    f"{original.origin} is imported, not splitds-dask, although the "
                    f"splitds-dask alias is enabled; 'pip uninstall split-dataset' to use "
                    f"splitds-dask, or 'splitds alias disable' to keep it",
                    SplitDatasetAliasWarning,
                    stacklevel=2,
                )
                return None
        return ModuleSpec(
            fullname, _AliasLoader(), origin="splitds-dask alias", is_package=fullname == ALIAS
        )


def install() -> None:
    """Put the alias's finder in front of :data:`sys.meta_path` (once per interpreter)."""
    if not any(isinstance(finder, _AliasFinder) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AliasFinder())

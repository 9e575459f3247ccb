"""The documentation's own checks: every docstring example is collected as a test, and the API
reference shows every public name.

``pytest`` runs the library's docstring examples with ``--doctest-modules``, which collects a
docstring from the module that ``__module__`` names. The public objects are renamed into
``splitds_dask`` (``__init__.py``), so an example could fall between two modules and never run.
"""

from __future__ import annotations

import doctest
import importlib
import inspect
import pkgutil
import re
from pathlib import Path
from types import ModuleType

import splitds_dask


def _modules() -> list[ModuleType]:
    names = [splitds_dask.__name__]
    names += [
        info.name
        for info in pkgutil.walk_packages(splitds_dask.__path__, f"{splitds_dask.__name__}.")
        if not info.name.endswith("__main__")  # running it is the command line
    ]
    return [importlib.import_module(name) for name in names]


def _docstrings_with_examples(modules: list[ModuleType]) -> dict[str, str]:
    """Every docstring holding ``>>>`` of the modules, their classes and their members."""
    found: dict[str, str] = {}
    for module in modules:
        objects: list[tuple[str, object]] = [(module.__name__, module)]
        for name, value in vars(module).items():
            if (inspect.isclass(value) or inspect.isfunction(value)) and (
                value.__module__ in (module.__name__, splitds_dask.__name__)
            ):
                objects.append((f"{module.__name__}.{name}", value))
                if inspect.isclass(value):  # its methods and properties, not inherited values
                    objects += [
                        (f"{module.__name__}.{name}.{key}", member)
                        for key, member in vars(value).items()
                        if isinstance(member, (property, staticmethod, classmethod))
                        or inspect.isfunction(member)
                    ]
        for name, value in objects:
            doc = getattr(value, "__doc__", None)
            if isinstance(doc, str) and ">>>" in doc:
                found[inspect.cleandoc(doc)] = name
    return found


def test_every_docstring_example_is_collected() -> None:
    modules = _modules()
    expected = _docstrings_with_examples(modules)
    finder = doctest.DocTestFinder()
    collected = {
        inspect.cleandoc(test.docstring or "")
        for module in modules
        for test in finder.find(module)
        if test.examples
    }
    missing = sorted(name for doc, name in expected.items() if doc not in collected)
    assert not missing, f"docstring examples that pytest --doctest-modules never runs: {missing}"
    assert len(expected) >= 5


DOCS = Path(__file__).parents[1] / "docs"


def test_api_reference_shows_every_public_name() -> None:
    """Each name of ``splitds_dask.__all__`` has its entry (``::: splitds_dask.NAME``) on a page
    of the API reference, and each page is in the navigation of mkdocs.yml."""
    pages = sorted((DOCS / "api").glob("*.md"))
    shown = {
        name
        for page in pages
        for name in re.findall(r"^::: splitds_dask\.(\w+)$", page.read_text(), flags=re.MULTILINE)
    }
    public = set(splitds_dask.__all__) - {"__version__"}
    assert public <= shown, sorted(public - shown)
    assert shown <= public, sorted(shown - public)
    nav = (DOCS.parent / "mkdocs.yml").read_text()
    assert all(f"api/{page.name}" in nav for page in pages)
